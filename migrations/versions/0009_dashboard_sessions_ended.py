"""dashboard: signed-out sessions, refused until their cookie expires

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

The dashboard's session cookie is sealed and stateless: it names the API key, the time it
was issued and a random session id. Signing out records that id here with the cookie's own
expiry, so a copy of the cookie is refused from then on; the page checks it with one
primary-key read. Rows past their expiry are purged by the beat (the cookie is refused by
its age then anyway).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions_ended",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_dashboard_sessions_ended")),
    )
    with op.batch_alter_table("dashboard_sessions_ended", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dashboard_sessions_ended_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dashboard_sessions_ended", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dashboard_sessions_ended_expires_at"))
    op.drop_table("dashboard_sessions_ended")
