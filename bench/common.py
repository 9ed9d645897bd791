"""Shared helpers for the benchmarks: throwaway PostgreSQL databases, pgbench as a baseline,
median-of-3."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, make_url, text

from upah.migrate import upgrade

ADMIN_URL = os.environ.get("UPAH_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def scratch_database(prefix: str = "upah_bench", *, migrate: bool = True) -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def to_libpq(url: str) -> str:
    """The SQLAlchemy URL as a connection string for psycopg itself."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, float, float]:
    """Median, min and max of ``runs`` measurements."""
    values = [measure() for _ in range(runs)]
    return statistics.median(values), min(values), max(values)


def fmt(result: tuple[float, float, float], unit: str) -> str:
    med, lo, hi = result
    return f"{med:>10,.0f} {unit}  (range {lo:,.0f}–{hi:,.0f})"


@contextmanager
def pgbench_database(scale: int = 10) -> Iterator[str]:
    """A scratch database initialised by ``pgbench -i`` (the baseline's tables)."""
    with scratch_database("upah_pgbench", migrate=False) as url:
        subprocess.run(
            [
                "pgbench",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-i",
                "-q",
                "-s",
                str(scale),
                url.rsplit("/", 1)[1],
            ],
            check=True,
            capture_output=True,
        )
        yield url


def pgbench_tps(url: str, clients: int, seconds: float, script: str = "tpcb-like") -> float:
    """pgbench's transactions per second on ``url`` (durable commits, as the server is set up)."""
    out = subprocess.run(
        [
            "pgbench",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-n",
            "-b",
            script,
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(max(1, round(seconds))),
            url.rsplit("/", 1)[1],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"tps = ([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


def spread(values: list[float]) -> tuple[float, float, float]:
    """Median, min and max of measurements already taken."""
    return statistics.median(values), min(values), max(values)
