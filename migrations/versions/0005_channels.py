"""channels: USSD sessions (PIN verdict once per session) and the record of every SMS sent

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

``ussd_sessions`` caches, per gateway session, whose session it is, whether her PIN was
right (bound to that PIN by a keyed hash, never the PIN), the dispute it opened and when it
was last seen (sessions time out). ``sms_messages`` records each outbound SMS once per
dedupe key — recipient and text sealed with the personal-data keys — so a retried task
never sends the same notice twice once it went out.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ussd_sessions",
        sa.Column("session_id", sa.String(length=100), nullable=False),
        sa.Column("homeworker_id", sa.BigInteger(), nullable=False),
        sa.Column("pin_ok", sa.Boolean(), nullable=True),
        sa.Column("pin_tag", sa.String(length=100), nullable=True),
        sa.Column("dispute_ref", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["homeworker_id"], ["homeworkers.id"], name=op.f("fk_ussd_sessions_homeworker_id_homeworkers")
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_ussd_sessions")),
    )
    with op.batch_alter_table("ussd_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ussd_sessions_homeworker_id"), ["homeworker_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ussd_sessions_last_seen_at"), ["last_seen_at"], unique=False)

    op.create_table(
        "sms_messages",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("homeworker_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("to_enc", sa.Text(), nullable=True),
        sa.Column("to_masked", sa.String(length=32), nullable=True),
        sa.Column("text_enc", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_message_id", sa.String(length=64), nullable=True),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending','sent','failed','skipped')", name=op.f("ck_sms_messages_status")
        ),
        sa.ForeignKeyConstraint(
            ["homeworker_id"], ["homeworkers.id"], name=op.f("fk_sms_messages_homeworker_id_homeworkers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_messages")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_sms_messages_dedupe_key")),
    )
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_messages_homeworker_id"), ["homeworker_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_messages_homeworker_id"))
    op.drop_table("sms_messages")
    with op.batch_alter_table("ussd_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ussd_sessions_last_seen_at"))
        batch_op.drop_index(batch_op.f("ix_ussd_sessions_homeworker_id"))
    op.drop_table("ussd_sessions")
