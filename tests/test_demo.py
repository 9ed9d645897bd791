"""`upah demo`, run as a new user runs it: the whole pilot story, on the embedded default and
on PostgreSQL + Redis, and again on the database it left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from ledger import reports
from payments.payout_states import PayoutStatus
from payments.tables import PayoutRow
from tests.conftest import ADMIN_URL

ROOT = Path(__file__).resolve().parent.parent
UPAH = Path(sys.executable).parent / "upah"
STORY = (
    "1. Buyers, intermediaries and twelve homeworkers",
    "lem belepotan",
    "The maker tries to approve her own run: forbidden",
    "failed: limit_exceeded",
    "unknown (send)",
    "The sandbox delivered 6 callbacks for 3 events",
    "Masukkan PIN Anda",
    "Laporan diterima.",
    "paid this month",
    "Ledger verified",
    "6. The pilot report",
    "The pilot story ran in",
)


def demo(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("UPAH_", "DATABASE_", "REDIS_"))}
    return subprocess.run(  # noqa: S603
        [str(UPAH), "demo", *args],
        cwd=cwd,
        env={**clean, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_story_told(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for line in STORY:
        assert line in result.stdout, line


def assert_books_hold(url: str) -> None:
    engine = create_engine(url)
    with Session(engine) as s:
        statuses = set(s.execute(select(PayoutRow.status)).scalars())
        assert statuses == {PayoutStatus.SUCCEEDED.value, PayoutStatus.FAILED.value}
        assert reports.check_integrity(s) == []
        assert reports.verify_chain(s).problems == []
    engine.dispose()


@pytest.mark.slow
def test_the_demo_tells_the_pilot_story_on_the_embedded_default_and_runs_again(tmp_path: Path) -> None:
    first = demo(tmp_path)
    assert_story_told(first)
    assert (tmp_path / "upah.db").exists() and (tmp_path / "upah-demo.beancount").exists()
    assert_books_hold(f"sqlite:///{tmp_path / 'upah.db'}")
    again = demo(tmp_path)
    assert_story_told(again)
    assert "starting over" in again.stdout
    assert_books_hold(f"sqlite:///{tmp_path / 'upah.db'}")


def test_the_demo_will_not_wipe_a_database_it_did_not_make(tmp_path: Path) -> None:
    subprocess.run([str(UPAH), "db", "upgrade"], cwd=tmp_path, check=True, capture_output=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        [str(UPAH), "org", "create", "Koperasi Sejahtera", "--kind", "buyer"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    refused = demo(tmp_path)
    assert refused.returncode == 1
    assert "already holds other organisations" in refused.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_the_demo_runs_on_postgresql_and_redis(tmp_path: Path) -> None:
    name = f"upah_demo_{uuid.uuid4().hex[:8]}"
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        result = demo(
            tmp_path,
            "--postgres",
            DATABASE_URL=url,
            REDIS_URL=os.environ.get("UPAH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
            UPAH_QUEUE=f"upah-demo-{name}",
        )
        assert_story_told(result)
        assert "queue: Redis" in result.stdout
        assert_books_hold(url)
    finally:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
