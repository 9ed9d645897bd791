"""Ledger on SQLite: a balance that would leave the 64-bit range is refused, never stored as a float.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

SQLite turns an integer sum that overflows 64 bits into a REAL: two postings of the largest
amount made an account's balance 1.8446744073709552e+19, a float in the books, and the
integrity check then failed on its own sums. PostgreSQL's bigint refuses such an update
(numeric_value_out_of_range); this trigger makes SQLite refuse it too, whatever statement
sets the balance or the held amount.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

MESSAGE = "a ledger balance would leave the 64-bit integer range"

_SQLITE_TRIGGER = f"""
CREATE TRIGGER ledger_accounts_integer_balances BEFORE UPDATE OF balance, held ON ledger_accounts
WHEN typeof(NEW.balance) <> 'integer' OR typeof(NEW.held) <> 'integer'
BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER ledger_accounts_integer_balances")
