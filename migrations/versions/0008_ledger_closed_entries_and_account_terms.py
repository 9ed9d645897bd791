"""Ledger: an entry's postings are all written with it; an account's terms never change.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

Two gaps in the guards of migrations 0001 and 0007, both reachable by raw SQL:

- A balanced pair of postings added to an old entry passed every check (each statement's
  postings summed to zero), and with the balances adjusted to match it moved money inside
  an entry that was already committed; before the sealer reached that entry, ``ledger
  verify`` could not tell. The postings check now also refuses postings for an entry that
  already has postings from another statement: an entry's postings are written together
  with it (as both posting functions do), and a correction is a reversal. One index probe
  per entry a statement names, the same as the entries' own check.
- An account's type, currency, code, owner and overdraft flag could be rewritten, changing
  the meaning of every posting on it (an IDR account turned into USD, a liability into an
  asset with its balance negated) without any check noticing. They are fixed when the
  account is opened; only status, balance and held ever change. The trigger fires only for
  statements that set one of those columns, so balance updates pay nothing for it.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Migration 0001's postings check, with a slot for this migration's added_later probe: the
# downgrade writes it back without.
_CHECK_TEMPLATE = r"""
CREATE OR REPLACE FUNCTION ledger_postings_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT (SELECT n.entry_id FROM new_postings n
             GROUP BY n.entry_id, n.currency HAVING sum(n.amount) <> 0 LIMIT 1) AS unbalanced,
           (SELECT d.entry_id FROM (SELECT DISTINCT entry_id FROM new_postings) d
             WHERE (SELECT e.id FROM ledger_entries e WHERE e.id = d.entry_id) IS NULL LIMIT 1) AS no_entry,{probe}
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
    END IF;{refusal}
    IF bad.wrong_account IS NOT NULL THEN
        RAISE EXCEPTION 'a posting names an account that does not exist or holds another currency: %',
            bad.wrong_account
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$
"""

_ADDED_LATER_PROBE = r"""
           (SELECT d.entry_id FROM (SELECT entry_id, count(*) AS n FROM new_postings GROUP BY entry_id) d
             WHERE (SELECT count(*) FROM ledger_postings p WHERE p.entry_id = d.entry_id) <> d.n
             LIMIT 1) AS added_later,"""

_ADDED_LATER_REFUSAL = r"""
    IF bad.added_later IS NOT NULL THEN
        RAISE EXCEPTION 'entry % already has its postings: an entry is written whole, and corrected by a reversal',
            bad.added_later
            USING ERRCODE = 'check_violation';
    END IF;"""

_CHECK = _CHECK_TEMPLATE.format(probe=_ADDED_LATER_PROBE, refusal=_ADDED_LATER_REFUSAL)
_PREVIOUS_CHECK = _CHECK_TEMPLATE.format(probe="", refusal="")

_TERMS = ("type", "currency", "code", "owner", "no_overdraft")
_CHANGED = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in _TERMS)
_SQLITE_CHANGED = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _TERMS)
_MESSAGE = "the type, currency, code, owner and overdraft flag of an account are fixed when it is opened"

_PG_TERMS = [
    f"""
    CREATE FUNCTION ledger_account_terms_kept() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{_MESSAGE}: account % refused', OLD.id USING ERRCODE = 'restrict_violation';
    END $$
    """,
    f"""
    CREATE TRIGGER ledger_accounts_terms_kept BEFORE UPDATE OF {", ".join(_TERMS)} ON ledger_accounts
        FOR EACH ROW WHEN ({_CHANGED}) EXECUTE FUNCTION ledger_account_terms_kept()
    """,
]

_SQLITE_TERMS = f"""
CREATE TRIGGER ledger_accounts_terms_kept BEFORE UPDATE OF {", ".join(_TERMS)} ON ledger_accounts
WHEN {_SQLITE_CHANGED}
BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CHECK)
        for statement in _PG_TERMS:
            op.execute(statement)
    else:
        op.execute(_SQLITE_TERMS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_accounts_terms_kept ON ledger_accounts")
        op.execute("DROP FUNCTION IF EXISTS ledger_account_terms_kept()")
        op.execute(_PREVIOUS_CHECK)
    else:
        op.execute("DROP TRIGGER IF EXISTS ledger_accounts_terms_kept")
