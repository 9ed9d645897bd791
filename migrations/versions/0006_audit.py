"""audit: reconciliation runs and exceptions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

Runs and notes are append-only (triggers refuse UPDATE and DELETE): a resolved exception
keeps its history as notes; only an exception's own status changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
APPEND_ONLY = ("reconciliation_runs", "reconciliation_notes")


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("statement_format", sa.String(length=16), nullable=False),
        sa.Column("input_sha256", sa.String(length=64), nullable=False),
        sa.Column("input_bytes", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("period_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("summary", Json, nullable=False),
        sa.Column("matches", sa.Text(), nullable=False),
        sa.Column("report_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('api','cli','nightly')", name=op.f("ck_reconciliation_runs_source")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["api_keys.id"], name=op.f("fk_reconciliation_runs_created_by_api_keys")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_reconciliation_runs_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
    )
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reconciliation_runs_input_sha256"), ["input_sha256"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_reconciliation_runs_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "reconciliation_exceptions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("payout_id", sa.BigInteger(), nullable=True),
        sa.Column("buyer_id", sa.BigInteger(), nullable=True),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("provider_reference", sa.String(length=200), nullable=True),
        sa.Column("ledger_amount", sa.BigInteger(), nullable=True),
        sa.Column("provider_amount", sa.BigInteger(), nullable=True),
        sa.Column("ledger_status", sa.String(length=16), nullable=True),
        sa.Column("provider_status", sa.String(length=16), nullable=True),
        sa.Column("detail", Json, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('missing_at_provider','unknown_at_provider','amount_mismatch','duplicate',"
            "'status_mismatch')",
            name=op.f("ck_reconciliation_exceptions_kind"),
        ),
        sa.CheckConstraint("status IN ('open','resolved')", name=op.f("ck_reconciliation_exceptions_status")),
        sa.ForeignKeyConstraint(
            ["buyer_id"],
            ["organizations.id"],
            name=op.f("fk_reconciliation_exceptions_buyer_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["payout_id"], ["payouts.id"], name=op.f("fk_reconciliation_exceptions_payout_id_payouts")
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by"], ["api_keys.id"], name=op.f("fk_reconciliation_exceptions_resolved_by_api_keys")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_exceptions_run_id_reconciliation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_exceptions")),
    )
    with op.batch_alter_table("reconciliation_exceptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reconciliation_exceptions_payout_id"), ["payout_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_reconciliation_exceptions_run_id"), ["run_id"], unique=False)

    op.create_table(
        "reconciliation_notes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("exception_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("key_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "action IN ('note','resolve','reopen')", name=op.f("ck_reconciliation_notes_action")
        ),
        sa.ForeignKeyConstraint(
            ["exception_id"],
            ["reconciliation_exceptions.id"],
            name=op.f("fk_reconciliation_notes_exception_id_reconciliation_exceptions"),
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_reconciliation_notes_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_notes")),
    )
    with op.batch_alter_table("reconciliation_notes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reconciliation_notes_exception_id"), ["exception_id"], unique=False
        )

    _install_guards()


def downgrade() -> None:
    _remove_guards()
    with op.batch_alter_table("reconciliation_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconciliation_notes_exception_id"))
    op.drop_table("reconciliation_notes")
    with op.batch_alter_table("reconciliation_exceptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconciliation_exceptions_run_id"))
        batch_op.drop_index(batch_op.f("ix_reconciliation_exceptions_payout_id"))
    op.drop_table("reconciliation_exceptions")
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconciliation_runs_organization_id"))
        batch_op.drop_index(batch_op.f("ix_reconciliation_runs_input_sha256"))
    op.drop_table("reconciliation_runs")


def _install_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME
                    USING ERRCODE = 'restrict_violation';
            END $$
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
            )
    else:
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'audit rows are append-only: {action} on {table} refused'); END"
                )


def _remove_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS audit_refuse_change()")
    else:
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
