"""Ledger core: accounts, append-only entries and postings, holds, the hash chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 07:23:22.089904
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("code", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("no_overdraft", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('open','frozen','closed')", name=op.f("ck_ledger_accounts_status")),
        sa.CheckConstraint(
            "type IN ('asset','liability','equity','income','expense')", name=op.f("ck_ledger_accounts_type")
        ),
        sa.CheckConstraint("held >= 0", name=op.f("ck_ledger_accounts_held_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("code", name=op.f("uq_ledger_accounts_code")),
    )
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_accounts_owner"), ["owner"], unique=False)

    op.create_table(
        "ledger_checkpoints",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_checkpoints")),
    )
    with op.batch_alter_table("ledger_checkpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_checkpoints_seq"), ["seq"], unique=False)

    op.create_table(
        "ledger_entries",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reverses_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "content",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"], ["ledger_entries.id"], name=op.f("fk_ledger_entries_reverses_id_ledger_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("key", name=op.f("uq_ledger_entries_key")),
        sa.UniqueConstraint("reverses_id", name=op.f("uq_ledger_entries_reverses_id")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_entries_effective_at"), ["effective_at"], unique=False)

    op.create_table(
        "ledger_rejections",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "content",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_ledger_rejections")),
    )
    op.create_table(
        "ledger_holds",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("captured_amount", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending','captured','voided','expired')", name=op.f("ck_ledger_holds_status")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_holds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_accounts.id"], name=op.f("fk_ledger_holds_account_id_ledger_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entries.id"], name=op.f("fk_ledger_holds_entry_id_ledger_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_holds")),
        sa.UniqueConstraint("key", name=op.f("uq_ledger_holds_key")),
    )
    with op.batch_alter_table("ledger_holds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_holds_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_holds_status"), ["status"], unique=False)

    op.create_table(
        "ledger_postings",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_postings_amount_not_zero")),
        # No foreign keys on this hot table: the guards below check every posting's entry and
        # account (and its currency) once per statement, and refuse removing what they name.
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_postings")),
    )
    with op.batch_alter_table("ledger_postings", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_postings_account_entry", ["account_id", "entry_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_postings_entry_id"), ["entry_id"], unique=False)

    op.create_table(
        "ledger_seals",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entries.id"], name=op.f("fk_ledger_seals_entry_id_ledger_entries")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_ledger_seals")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_ledger_seals_entry_id")),
    )

    install_guards()


def downgrade() -> None:
    remove_guards()
    op.drop_table("ledger_seals")
    with op.batch_alter_table("ledger_postings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_postings_entry_id"))
        batch_op.drop_index("ix_ledger_postings_account_entry")

    op.drop_table("ledger_postings")
    with op.batch_alter_table("ledger_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_holds_status"))
        batch_op.drop_index(batch_op.f("ix_ledger_holds_account_id"))

    op.drop_table("ledger_holds")
    op.drop_table("ledger_rejections")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_effective_at"))

    op.drop_table("ledger_entries")
    with op.batch_alter_table("ledger_checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_checkpoints_seq"))

    op.drop_table("ledger_checkpoints")
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_accounts_owner"))

    op.drop_table("ledger_accounts")


APPEND_ONLY = ("ledger_entries", "ledger_postings", "ledger_seals", "ledger_checkpoints")

PG_GUARDS = [
    """
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END $$
    """,
    # One deferred check per entry, at commit: at least two postings, zero sum per currency.
    # The common single-currency entry needs one index scan and a plain aggregate.
    """
    CREATE FUNCTION ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        n bigint;
        total numeric;
        lowest text;
        highest text;
    BEGIN
        SELECT count(*), sum(amount), min(currency), max(currency) INTO n, total, lowest, highest
          FROM ledger_postings WHERE entry_id = NEW.id;
        IF n < 2 THEN
            RAISE EXCEPTION 'entry % has fewer than two postings', NEW.id USING ERRCODE = 'check_violation';
        END IF;
        IF (lowest = highest AND total <> 0) OR (lowest <> highest AND EXISTS (
                SELECT 1 FROM ledger_postings WHERE entry_id = NEW.id GROUP BY currency HAVING sum(amount) <> 0)) THEN
            RAISE EXCEPTION 'entry % does not sum to zero per currency', NEW.id USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced()
    """,
    # Once per INSERT statement on postings, set-based over the rows it added:
    # - they sum to zero per entry and currency, so every entry — new or old — still sums to
    #   zero after every statement (postings are never updated or deleted); a posting added
    #   to an old entry by raw SQL is refused at once;
    # - each names an existing entry and an existing account in the posting's currency. This
    #   stands in for foreign keys, which cost a locking lookup per key per row on the
    #   hottest table; entries are append-only and accounts are never removed (below), so
    #   what a posting names stays there.
    # One statement without parameters, so planned once per connection; its lookups are
    # scalar subqueries, so that this one plan probes the indexes whatever the statement's size.
    """
    CREATE FUNCTION ledger_postings_checked() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        bad record;
    BEGIN
        SELECT (SELECT n.entry_id FROM new_postings n
                 GROUP BY n.entry_id, n.currency HAVING sum(n.amount) <> 0 LIMIT 1) AS unbalanced,
               (SELECT d.entry_id FROM (SELECT DISTINCT entry_id FROM new_postings) d
                 WHERE (SELECT e.id FROM ledger_entries e WHERE e.id = d.entry_id) IS NULL LIMIT 1) AS no_entry,
               (SELECT row(d.account_id, d.currency, d.held)::text
                  FROM (SELECT n.account_id, n.currency,
                               (SELECT a.currency FROM ledger_accounts a WHERE a.id = n.account_id) AS held
                          FROM (SELECT DISTINCT account_id, currency FROM new_postings) n) d
                 WHERE d.held IS DISTINCT FROM d.currency LIMIT 1) AS wrong_account
          INTO bad;
        IF bad.unbalanced IS NOT NULL THEN
            RAISE EXCEPTION 'entry % does not sum to zero per currency', bad.unbalanced
                USING ERRCODE = 'check_violation';
        END IF;
        IF bad.no_entry IS NOT NULL THEN
            RAISE EXCEPTION 'a posting names entry %, which does not exist', bad.no_entry
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        IF bad.wrong_account IS NOT NULL THEN
            RAISE EXCEPTION 'a posting names an account that does not exist or holds another currency: %',
                bad.wrong_account
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER ledger_postings_checked AFTER INSERT ON ledger_postings
        REFERENCING NEW TABLE AS new_postings
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_postings_checked()
    """,
    # Accounts are closed, never removed or renumbered: postings (which carry no foreign key)
    # and the other ledger rows keep naming them.
    """
    CREATE FUNCTION ledger_account_kept() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger accounts are closed, never removed or renumbered: % refused', TG_OP
            USING ERRCODE = 'restrict_violation';
    END $$
    """,
    """
    CREATE TRIGGER ledger_accounts_kept BEFORE DELETE ON ledger_accounts
        FOR EACH ROW EXECUTE FUNCTION ledger_account_kept()
    """,
    """
    CREATE TRIGGER ledger_accounts_id_kept BEFORE UPDATE OF id ON ledger_accounts
        FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION ledger_account_kept()
    """,
    """
    CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_account_kept()
    """,
    # Balances are rewritten on every posting: leave room on each page so that the update
    # stays on its page (HOT) and touches no index.
    "ALTER TABLE ledger_accounts SET (fillfactor = 70)",
]

SQLITE_GUARDS = [
    """
    CREATE TRIGGER ledger_postings_references BEFORE INSERT ON ledger_postings
    WHEN NOT EXISTS (SELECT 1 FROM ledger_entries WHERE id = NEW.entry_id)
      OR NOT EXISTS (SELECT 1 FROM ledger_accounts WHERE id = NEW.account_id AND currency = NEW.currency)
    BEGIN SELECT RAISE(ABORT, 'a posting must name an existing entry and an account in its currency'); END
    """,
    """
    CREATE TRIGGER ledger_accounts_kept BEFORE DELETE ON ledger_accounts
    BEGIN SELECT RAISE(ABORT, 'ledger accounts are closed, never removed or renumbered: DELETE refused'); END
    """,
    """
    CREATE TRIGGER ledger_accounts_id_kept BEFORE UPDATE OF id ON ledger_accounts WHEN NEW.id IS NOT OLD.id
    BEGIN SELECT RAISE(ABORT, 'ledger accounts are closed, never removed or renumbered: UPDATE refused'); END
    """,
]


def install_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in PG_GUARDS:
            op.execute(statement)
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
            )
    else:
        for statement in SQLITE_GUARDS:
            op.execute(statement)
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only: {action} on {table} refused'); END"
                )


def remove_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        for trigger in ("ledger_accounts_kept", "ledger_accounts_id_kept", "ledger_accounts_no_truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON ledger_accounts")
        op.execute("DROP TRIGGER IF EXISTS ledger_postings_checked ON ledger_postings")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_balanced ON ledger_entries")
        op.execute("DROP FUNCTION IF EXISTS ledger_account_kept()")
        op.execute("DROP FUNCTION IF EXISTS ledger_postings_checked()")
        op.execute("DROP FUNCTION IF EXISTS ledger_entry_balanced()")
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
    else:
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
        for trigger in ("ledger_postings_references", "ledger_accounts_kept", "ledger_accounts_id_kept"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
