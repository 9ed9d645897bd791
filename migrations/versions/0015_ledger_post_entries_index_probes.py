"""Ledger: ledger_post_entries finds its accounts by primary key whatever the statistics say.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01

Two statements of migration 0007's ``ledger_post_entries`` named the batch's accounts by a
join with the unnested arrays: the lock (``id IN (SELECT DISTINCT … FROM unnest(…))``) and
the balance update (``FROM unnest(…) WHERE x.id = u.a``). While ``ledger_accounts``'s
statistics lag behind its size (after thousands of homeworkers are registered in one
transaction, until autovacuum analyses it) the planner hashed the arrays and scanned the whole
table for every batch: a quarter more time per batch of 25 entries over 6,000 accounts, and
growing with the table. Here both name them with ``id = ANY(array)``, an index probe per
account under any statistics. Nothing else changes; the downgrade restores 0007's text.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _text_of_0007() -> str:
    """Migration 0007's function, read from its file beside this one (by path: the migrations
    folder is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "upah_migration_0007", Path(__file__).with_name("0007_ledger_statement_checks.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.POST_ENTRIES)


_PREVIOUS = _text_of_0007()

_LOCK_BY_JOIN = """FROM (SELECT * FROM ledger_accounts WHERE id IN (SELECT DISTINCT a FROM unnest(f_accounts) AS a)
             ORDER BY id FOR NO KEY UPDATE) x;"""
_LOCK_BY_PROBES = """FROM (SELECT * FROM ledger_accounts WHERE id = ANY(f_accounts)
             ORDER BY id FOR NO KEY UPDATE) x;"""
_UPDATE_BY_JOIN = """      FROM unnest(u_ids, u_deltas) AS u(a, d)
     WHERE x.id = u.a;"""
_UPDATE_BY_PROBES = """      FROM unnest(u_ids, u_deltas) AS u(a, d)
     WHERE x.id = u.a AND x.id = ANY(u_ids);"""


def _post_entries() -> str:
    for old in (_LOCK_BY_JOIN, _UPDATE_BY_JOIN):
        if _PREVIOUS.count(old) != 1:
            raise RuntimeError("migration 0007's ledger_post_entries is not the text this migration edits")
    return _PREVIOUS.replace(_LOCK_BY_JOIN, _LOCK_BY_PROBES).replace(_UPDATE_BY_JOIN, _UPDATE_BY_PROBES)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_post_entries())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PREVIOUS)
