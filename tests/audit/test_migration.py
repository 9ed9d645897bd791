"""Revision 0006 goes down and up again, on both databases, and guards its append-only rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import create_pg_database, drop_pg_database
from upah.migrate import alembic_config, upgrade

TABLES = {"reconciliation_runs", "reconciliation_exceptions", "reconciliation_notes"}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0006_downgrades_and_upgrades_again(kind: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}" if kind == "sqlite" else create_pg_database("upah_mig")
    try:
        upgrade(url)
        command.downgrade(alembic_config(url), "0005")
        engine = create_engine(url)
        assert not TABLES & set(inspect(engine).get_table_names())
        engine.dispose()
        upgrade(url)
        engine = create_engine(url)
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO reconciliation_runs (provider, statement_format, input_sha256, input_bytes,"
                    " lines, source, window_seconds, summary, matches, report_sha256, created_at)"
                    " VALUES ('sandbox', 'sandbox', 'x', 0, 0, 'cli', 0, '{}', '[]', 'y', CURRENT_TIMESTAMP)"
                )
            )
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text("UPDATE reconciliation_runs SET lines = 5"))
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text("DELETE FROM reconciliation_runs"))
        engine.dispose()
    finally:
        if kind == "postgresql":
            drop_pg_database(url)
