"""Idempotency keys: an index on their age, for the hourly purge.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

The beat forgets Idempotency-Key records after ``UPAH_IDEMPOTENCY_RETENTION_DAYS``
(``payments.idempotency.purge``). Without an index on ``created_at`` each hourly purge read
the whole table, a month of every POST sent with a key.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))
