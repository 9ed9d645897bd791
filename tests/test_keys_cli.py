"""`upah keys status` and `upah keys rotate`, run as an operator runs them, on a database of
their own (a rotation reads whole tables)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from ledger import chain
from payments import pii
from payments.tables import HomeworkerRow
from tests.conftest import create_pg_database, drop_pg_database
from tests.payments.scenario import make_buyer, make_worker
from upah import cli
from upah.db import make_engine, make_session_factory
from upah.migrate import upgrade
from upah.settings import get_settings

K1, K2 = pii.generate_key(), pii.generate_key()
SIGNING_KEY = chain.generate_private_key_text()


@dataclass
class Db:
    url: str
    sessions: sessionmaker[Session]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    postgres = request.param == "postgresql"
    url = create_pg_database("upah_keys") if postgres else f"sqlite:///{tmp_path / 'keys.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield Db(url, make_session_factory(engine))
    engine.dispose()
    if postgres:
        drop_pg_database(url)


def upah(db: Db, tmp_path: Path, keys: str, *args: str) -> Result:
    env = {
        "DATABASE_URL": db.url,
        "UPAH_SECRET_KEYS": keys,
        "UPAH_SIGNING_KEY": SIGNING_KEY,
        "UPAH_DATA_DIR": str(tmp_path),
        "COLUMNS": "200",
    }
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli.app, list(args), env=env)
    finally:
        get_settings.cache_clear()


def workers_on(db: Db, keys: str, count: int) -> None:
    keyring = pii.Keyring.from_string(keys)
    buyer = make_buyer(db.sessions)
    for _ in range(count):
        make_worker(db.sessions, buyer, keyring=keyring)


def row_of(output: str, table: str) -> list[int]:
    """The figures in a table's row of the printed report (│ homeworkers │ 3 │ 1 │ 0 │)."""
    line = next(line for line in output.splitlines() if re.match(rf"│ {table} ", line))
    return [int(n) for n in re.findall(r"\b\d+\b", line)]


def test_rotate_prints_each_tables_progress_and_counts(db: Db, tmp_path: Path) -> None:
    workers_on(db, K1, 3)
    workers_on(db, f"{K2},{K1}", 1)
    result = upah(db, tmp_path, f"{K2},{K1}", "keys", "rotate", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert re.search(r"homeworkers\s.*3/3", result.output), result.output  # the progress bar
    assert row_of(result.output, "homeworkers") == [3, 1, 0]  # rewritten, already current, unreadable
    assert "rewritten 3 rows" in result.output


def test_rotate_leaves_no_row_on_the_old_key(db: Db, tmp_path: Path) -> None:
    workers_on(db, K1, 3)
    upah(db, tmp_path, f"{K2},{K1}", "keys", "rotate", "--batch-size", "2")
    with db.sessions() as s:
        indexes = s.execute(select(HomeworkerRow.phone_index)).scalars().all()
    assert {pii.index_key_id(i) for i in indexes} == {pii.Keyring.from_string(K2).primary_key_id}


def test_rotate_run_twice_rewrites_nothing_the_second_time(db: Db, tmp_path: Path) -> None:
    workers_on(db, K1, 2)
    upah(db, tmp_path, f"{K2},{K1}", "keys", "rotate")
    again = upah(db, tmp_path, f"{K2},{K1}", "keys", "rotate")
    assert again.exit_code == 0, again.output
    assert row_of(again.output, "homeworkers") == [0, 2, 0]
    assert "rewritten 0 rows" in again.output


def test_rotate_exits_1_when_a_value_opens_with_no_key(db: Db, tmp_path: Path) -> None:
    workers_on(db, pii.generate_key(), 1)
    workers_on(db, K1, 1)
    result = upah(db, tmp_path, f"{K2},{K1}", "keys", "rotate")
    assert result.exit_code == 1, result.output
    assert row_of(result.output, "homeworkers") == [1, 0, 1]


def test_status_exits_1_while_rows_are_on_an_older_key(db: Db, tmp_path: Path) -> None:
    workers_on(db, K1, 2)
    result = upah(db, tmp_path, f"{K2},{K1}", "keys", "status")
    assert result.exit_code == 1, result.output
    assert row_of(result.output, "homeworkers") == [2, 2]  # rows, on older keys
    assert "upah keys rotate" in result.output


def test_status_exits_0_once_rotated(db: Db, tmp_path: Path) -> None:
    workers_on(db, K1, 2)
    upah(db, tmp_path, f"{K2},{K1}", "keys", "rotate")
    result = upah(db, tmp_path, f"{K2},{K1}", "keys", "status")
    assert result.exit_code == 0, result.output
    assert row_of(result.output, "homeworkers") == [2, 0]
