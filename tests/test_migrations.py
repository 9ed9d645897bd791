"""The migrated schema is exactly what the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from ledger.tables import Base


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_migrated_postgresql_schema_matches_the_models(pg_engine: Engine) -> None:
    assert _diff(pg_engine) == []


def test_migrated_sqlite_schema_matches_the_models(sqlite_engine: Engine) -> None:
    assert _diff(sqlite_engine) == []
