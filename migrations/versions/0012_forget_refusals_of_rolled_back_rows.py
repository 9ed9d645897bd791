"""Forget refusals remembered under keys made from rows that were rolled back with them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

An order's hold (``order:<id>:hold``) and an adjustment's entry (``adjustment:<id>``) are
posted in the unit of work that creates the order or adjustment. When that posting was
refused for lack of funds, the refusal was remembered under the key while the row itself
rolled back; SQLite then gives the same id to the next order or adjustment, whose posting met
the remembered refusal and was refused as a conflicting reuse of the key, again and again.
Such keys are no longer remembered (``journal.post(remember_refusal=False)``); this removes
the ones already stored. None of them names a request that can be retried.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "DELETE FROM ledger_rejections WHERE (key LIKE :hold OR key LIKE :adjustment)"
            " AND key NOT IN (SELECT key FROM ledger_entries)"
        ).bindparams(hold="order:%:hold", adjustment="adjustment:%")
    )


def downgrade() -> None:
    """Nothing to restore: the forgotten refusals named no request."""
