"""A payout run that was rejected before approval says so: status ``rejected``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01

A rejected run used to end ``completed``, the word for a run whose payouts all have an
outcome, which read as paid. Runs already rejected are found by their payouts, every one
failed ``run_rejected``, and given the new status; the downgrade turns them back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

BEFORE = "status IN ('created','awaiting_approval','dispatching','completed')"
AFTER = "status IN ('created','awaiting_approval','dispatching','completed','rejected')"
REJECTED_RUNS = (
    "id IN (SELECT run_id FROM payouts WHERE failure_code = 'run_rejected')"
    " AND id NOT IN (SELECT run_id FROM payouts WHERE failure_code IS NULL"
    " OR failure_code <> 'run_rejected')"
)


def _check(condition: str) -> None:
    with op.batch_alter_table("payout_runs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payout_runs_status"), type_="check")
        batch_op.create_check_constraint("status", sa.text(condition))


def upgrade() -> None:
    _check(AFTER)
    op.execute(f"UPDATE payout_runs SET status = 'rejected' WHERE status = 'completed' AND {REJECTED_RUNS}")


def downgrade() -> None:
    op.execute("UPDATE payout_runs SET status = 'completed' WHERE status = 'rejected'")
    _check(BEFORE)
