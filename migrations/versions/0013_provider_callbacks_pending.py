"""Provider callbacks are applied by a worker: an index of those not applied yet.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

The callback endpoint now records a callback (outcome ``pending``) and leaves applying it to
a worker task; the sweep queues again any whose task was lost. This partial index keeps that
question to the few pending rows of an ever-growing table. Callbacks recorded before this
revision were applied when they arrived, so none is pending.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provider_callbacks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_provider_callbacks_pending",
            ["received_at"],
            unique=False,
            postgresql_where=sa.text("outcome = 'pending'"),
            sqlite_where=sa.text("outcome = 'pending'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("provider_callbacks", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_callbacks_pending")
