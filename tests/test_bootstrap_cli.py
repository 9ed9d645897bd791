"""`upah org create` and `upah key create` set up a fresh embedded database, as an operator
runs them first: nothing to create or migrate beforehand, and only the key on stdout."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from tests.conftest import create_pg_database, drop_pg_database
from upah import cli
from upah.settings import get_settings

KEY = re.compile(r"upah_[0-9a-f]{16}_[A-Za-z0-9_-]+")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The embedded default in an empty directory: no database file yet."""
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "UPAH_SECRET_KEYS", "UPAH_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UPAH_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_the_first_admin_key_is_minted_on_a_database_that_does_not_exist_yet(fresh: Path) -> None:
    result = CliRunner().invoke(cli.app, ["key", "create", "--role", "admin"])
    assert result.exit_code == 0, result.output
    assert KEY.fullmatch(result.stdout.strip())


def test_an_organisation_and_its_key_on_a_fresh_database(fresh: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(cli.app, ["org", "create", "Pabrik Sepatu", "--kind", "buyer"])
    assert made.exit_code == 0, made.output
    org_id = made.stdout.strip()
    assert org_id.isdigit()
    key = runner.invoke(cli.app, ["key", "create", "--role", "buyer", "--org", org_id])
    assert key.exit_code == 0, key.output
    assert KEY.fullmatch(key.stdout.strip())


def test_a_server_database_is_never_migrated_by_these_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Its schema is the operator's (``upah db upgrade``), even in a shell without REDIS_URL."""
    url = create_pg_database("upah_bootstrap")
    try:
        for name in ("REDIS_URL", "CELERY_BROKER_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("UPAH_DATA_DIR", str(tmp_path))
        get_settings.cache_clear()
        result = CliRunner().invoke(cli.app, ["org", "create", "Pabrik", "--kind", "buyer"])
        assert result.exit_code != 0
        engine = create_engine(url)
        try:
            assert inspect(engine).get_table_names() == []
        finally:
            engine.dispose()
    finally:
        get_settings.cache_clear()
        drop_pg_database(url)
