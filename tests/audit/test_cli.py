"""`upah reconcile` and `upah export beancount`, run as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from ledger import chain
from payments import pii
from tests.audit.statements import sandbox_csv, sandbox_row

UPAH = Path(sys.executable).parent / "upah"
BEAN_CHECK = Path(sys.executable).parent / "bean-check"
LONG_AGO = datetime(2001, 1, 1, 3, 0, tzinfo=UTC)


def upah(pg_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "UPAH_SECRET_KEYS": pii.generate_key(),
        "UPAH_SIGNING_KEY": chain.generate_private_key_text(),
        "UPAH_DATA_DIR": str(tmp_path),
        "COLUMNS": "200",
    }
    return subprocess.run(  # noqa: S603
        [str(UPAH), *args], capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120
    )


def test_reconcile_exits_0_when_everything_matches(pg_url: str, tmp_path: Path) -> None:
    statement = tmp_path / "empty.csv"
    statement.write_text(sandbox_csv([]))
    result = upah(
        pg_url,
        tmp_path,
        "reconcile",
        "--provider",
        "sandbox",
        "--from",
        "2001-01-01",
        "--to",
        "2001-01-02",
        str(statement),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matched" in result.stdout and "report sha256" in result.stdout


def test_reconcile_exits_1_and_lists_the_exceptions(pg_url: str, tmp_path: Path) -> None:
    statement = tmp_path / "stranger.csv"
    statement.write_text(sandbox_csv([sandbox_row("UPHCLISTRANGER", "k-cli", 4_200, at=LONG_AGO)]))
    result = upah(pg_url, tmp_path, "reconcile", "--provider", "sandbox", str(statement))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "unknown_at_provider (line 2)" in result.stdout


def test_reconcile_exits_2_naming_the_bad_line(pg_url: str, tmp_path: Path) -> None:
    statement = tmp_path / "bad.csv"
    statement.write_text(sandbox_csv([sandbox_row("UPH1", "k1", 5), sandbox_row("UPH2", "k2", "3.14")]))
    result = upah(pg_url, tmp_path, "reconcile", "--provider", "sandbox", str(statement))
    assert result.returncode == 2
    assert "line 3" in result.stderr


def test_export_beancount_writes_a_book_bean_check_accepts(pg_url: str, tmp_path: Path) -> None:
    result = upah(pg_url, tmp_path, "export", "beancount")
    assert result.returncode == 0, result.stderr
    books = tmp_path / "books.beancount"
    books.write_text(result.stdout)
    check = subprocess.run([str(BEAN_CHECK), str(books)], capture_output=True, text=True, check=False)  # noqa: S603
    assert check.returncode == 0, (check.stdout + check.stderr)[:2000]
