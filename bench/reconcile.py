"""Reconciliation speed: a 100,000-line provider statement against 100,000 payouts on PostgreSQL.

Measures, in the same run, (a) merely reading and parsing the CSV (``csv.reader`` over the
file) and (b) the whole reconciliation to the stored report: read, strict parse, load the
payouts, match, store the run with its exceptions, commit. Target: (b) at most 5 × (a).

The statement holds every exception class: 99,700 lines matched by reference (100 of them
with a wrong amount, 100 reversed at the provider), 100 duplicate lines, 100 lines the
ledger does not know, 100 lines without identifiers matched by amount + wallet + date; so
200 paid payouts are missing from it.

Run: .venv/bin/python bench/reconcile.py [--payouts 100000] [--runs 5]
PostgreSQL and this process share the machine's cores.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from bench.common import fmt, scratch_database
from ledger import AccountType, atomic, journal
from payments import parties, pii, reconciliation
from payments.parties import OrganizationKind, Role
from upah.db import make_engine, make_session_factory

HEADER = ("reference", "idempotency_key", "account", "amount", "currency", "status", "settled_at")
WALLET = "+6282000012345"
BASE = datetime(2026, 11, 1, tzinfo=UTC)


def seed(url: str, count: int, keyring: pii.Keyring) -> None:
    """One buyer, 1,000 homeworkers and ``count`` succeeded payouts, inserted set-based."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    with atomic(factory) as s:
        org = parties.create_organization(s, name="bench buyer", kind=OrganizationKind.BUYER, now=now)
        parties.create_api_key(s, organization_id=org.id, role=Role.BUYER, now=now)
        account = journal.open_account(
            s, code="bench:earned", type=AccountType.LIABILITY, currency="IDR", owner="bench", now=now
        )
        token = pii.encrypt(keyring, WALLET, context="homeworker.wallet")
        params = {"org": org.id, "token": token, "now": now, "base": BASE, "account": account.id, "n": count}
        s.execute(
            text(
                "INSERT INTO homeworkers (name_enc, phone_enc, phone_index, phone_masked, region,"
                " wallet_provider, wallet_channel, wallet_account_enc, wallet_registered, language,"
                " pin_failures, registered_by, created_at)"
                " SELECT :token, :token, 'bench-' || i, '+62***', 'ID-JK', 'dana', 'ID_DANA', :token, true,"
                " 'id', 0, :org, :now FROM generate_series(1, 1000) AS i"
            ),
            params,
        )
        s.execute(
            text(
                "INSERT INTO payout_runs (buyer_id, status, count, total, fee, created_by, created_at)"
                " SELECT :org, 'completed', :n, 0, 0, min(id), :now FROM api_keys"
            ),
            params,
        )
        s.execute(
            text(
                "INSERT INTO payouts (run_id, buyer_id, homeworker_id, amount, currency, fee, status,"
                " idempotency_key, reference, provider, channel, account_enc, earned_account_id, pieces,"
                " attempts, created_at, submitted_at, settled_at, updated_at)"
                " SELECT (SELECT max(id) FROM payout_runs), :org,"
                " (SELECT min(id) FROM homeworkers) + (i % 1000), 10000 + i, 'IDR', 0, 'succeeded',"
                " 'upah-payout-bench-' || i, 'UPHB' || lpad(i::text, 9, '0'), 'sandbox', 'ID_DANA', :token,"
                " :account, 1, 1, :base + make_interval(secs => i), :base + make_interval(secs => i),"
                " :base + make_interval(secs => i + 5), :now"
                " FROM generate_series(1, :n) AS i"
            ),
            params,
        )
    with engine.connect() as conn:
        conn.execute(text("ANALYZE payouts"))
    engine.dispose()


def write_statement(path: Path, count: int) -> None:
    """``count`` lines with 100 of each exception class (see the module docstring)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        plain = count - 300
        for i in range(1, count - 200 + 1):
            at = (BASE + timedelta(seconds=i + 5)).isoformat().replace("+00:00", "Z")
            amount, status = 10_000 + i, "succeeded"
            if i > plain:
                writer.writerow(["", "", WALLET, amount, "IDR", status, at])  # no identifiers
                continue
            if i % 997 == 1 and i <= 997 * 100:
                amount += 1  # amount_mismatch
            elif i % 991 == 2 and i <= 991 * 100:
                status = "reversed"  # status_mismatch
            row = [f"UPHB{i:09d}", f"upah-payout-bench-{i}", WALLET, amount, "IDR", status, at]
            writer.writerow(row)
            if i % 983 == 3 and i <= 983 * 100:
                writer.writerow(row)  # duplicate
        for n in range(100):
            at = (BASE + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")
            writer.writerow(
                [f"UPHX{n:09d}", f"upah-payout-stranger-{n}", WALLET, 5_000 + n, "IDR", "succeeded", at]
            )


def bare_parse(path: Path) -> float:
    started = time.perf_counter()
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) > 1
    return time.perf_counter() - started


def strict_parse(path: Path) -> float:
    started = time.perf_counter()
    reconciliation.parse_statement(path.read_bytes(), provider="sandbox")
    return time.perf_counter() - started


def to_stored_report(url: str, path: Path, keyring: pii.Keyring, summaries: list[dict[str, int]]) -> float:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as first, factory() as second:  # warm pooled connections, as a running service has
        first.execute(text("SELECT 1"))
        second.execute(text("SELECT 1"))
    started = time.perf_counter()
    with atomic(factory) as s:
        run = reconciliation.reconcile_statement(
            s,
            data=path.read_bytes(),
            provider="sandbox",
            principal=None,
            source=reconciliation.Source.CLI,
            keyring=keyring,
            now=datetime.now(UTC),
            period_from=BASE,
            period_to=BASE + timedelta(days=30),
        )
    elapsed = time.perf_counter() - started
    engine.dispose()
    summaries.append(run.summary)
    return elapsed


def _ms(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values) * 1000, min(values) * 1000, max(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--payouts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    keyring = pii.Keyring.from_keys([pii.generate_key()])
    with scratch_database("upah_bench_recon") as url, tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        seed(url, args.payouts, keyring)
        statement = Path(folder) / "statement.csv"
        write_statement(statement, args.payouts)
        lines = sum(1 for _ in statement.open()) - 1
        size = statement.stat().st_size
        print(f"seeded {args.payouts:,} payouts and a {lines:,}-line statement ({size:,} bytes)")
        print(f"  in {time.perf_counter() - started:.1f} s (set-based inserts)")
        print(
            "PostgreSQL and this process share the machine's cores. Each repetition measures the\n"
            "baseline, the strict parse and the full reconciliation back to back, so that the\n"
            f"machine's drift touches all three alike; median (and range) of {args.runs} repetitions.\n"
        )
        summaries: list[dict[str, int]] = []
        bare: list[float] = []
        strict: list[float] = []
        full: list[float] = []
        for _ in range(args.runs):
            bare.append(bare_parse(statement))
            strict.append(strict_parse(statement))
            full.append(to_stored_report(url, statement, keyring, summaries))
        for name, values in (
            ("read + csv.reader (baseline)", bare),
            ("read + strict parse", strict),
            ("to the stored report", full),
        ):
            print(f"{name:<33}{fmt(_ms(values), 'ms')}")
        print()
        for name, base in (("the baseline parse", bare), ("the strict parse", strict)):
            ratios = [f / b for f, b in zip(full, base, strict=True)]
            target = "  (target ≤ 5 ×)" if base is bare else ""
            print(
                f"ratio to {name + ':':<24}{statistics.median(ratios):.2f} ×"
                f"  (range {min(ratios):.2f}–{max(ratios):.2f}){target}"
            )
        print(f"summary: {summaries[-1]}")
        assert all(s == summaries[0] for s in summaries), "the same file gave different reports"


if __name__ == "__main__":
    main()
