"""Payouts per second from run creation to all succeeded — through Redis and Celery (two
worker processes) to the sandbox provider over HTTP on loopback — next to the same provider
called directly in a loop from one process, measured in the same run.

Run: .venv/bin/python bench/dispatch.py [--payouts 5000] [--runs 1]
Everything (PostgreSQL, Redis, workers, the sandbox provider, the API receiving its
callbacks, this driver) shares the machine's cores. Besides the two figures it prints where
the time went (when the last payout was submitted, when the last one settled) and the CPU
each process spent per payout, read from /proc.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
from celery import Celery
from sqlalchemy import func, select, update

from bench.common import fmt, scratch_database
from integrations.providers.base import TransferRequest
from integrations.providers.sandbox import SandboxProvider
from ledger import chain
from payments import deliveries, orders, parties, payouts, pii, rates
from payments.parties import OrganizationKind, Principal, Role
from payments.tables import HomeworkerRow, OutboxRow, PayoutEventRow, PayoutRow
from upah import bootstrap
from upah.db import make_engine, make_session_factory, transaction

ROOT = Path(__file__).resolve().parent.parent
SEED_ORDER_SIZE = 50
SECRET = "bench-callback-secret"  # noqa: S105 - a throwaway sandbox secret


def start(env: dict[str, str], command: str, port: int) -> subprocess.Popen[bytes]:
    """``upah sandbox-provider`` or ``upah serve`` in its own process, once it answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "upah.cli", command, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(200):
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
            return proc
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{command} did not start")


def baseline(url: str, count: int) -> float:
    provider = SandboxProvider(url, SECRET.encode(), timeout=(2.0, 10.0))
    tag = uuid.uuid4().hex[:8]
    start = time.perf_counter()
    for i in range(count):
        provider.send(
            TransferRequest(
                idempotency_key=f"base-{tag}-{i}",
                reference=f"B{tag}{i}",
                amount=10_000 + i,
                currency="IDR",
                channel="ID_DANA",
                account=f"+628200{i:07d}",
                account_holder_name="Siti",
                description="baseline",
            )
        )
    return count / (time.perf_counter() - start)


def seed(url: str, keyring: pii.Keyring, count: int, *, tag: str = "0") -> Principal:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    admin = Principal(key_id=0, role=Role.ADMIN, organization_id=None)
    with transaction(factory) as s:
        org = parties.create_organization(s, name=f"bench buyer {tag}", kind=OrganizationKind.BUYER, now=now)
        parties.record_deposit(
            s, principal=admin, organization_id=org.id, amount=10**13, reference=f"bench-{tag}", now=now
        )
        buyer = parties.authenticate(
            s, parties.create_api_key(s, organization_id=org.id, role=Role.BUYER, now=now)
        )
        workers = [
            parties.register_homeworker(
                s,
                principal=buyer,
                keyring=keyring,
                name=f"Pekerja {i}",
                phone=f"+62820{tag}{i:07d}",
                region="ID-JK",
                wallet_provider="dana",
                wallet_account=f"+62820{tag}{i:07d}",
                nik=None,
                consent_at=now,
                language="id",
                now=now,
            ).id
            for i in range(count)
        ]
        for first in range(0, count, SEED_ORDER_SIZE):  # small orders: each step reads its order whole
            group = workers[first : first + SEED_ORDER_SIZE]
            order = orders.post(
                s,
                principal=buyer,
                reference=f"bench-{first}",
                product="bench",
                rate=Decimal(1),
                unit=rates.Unit.PIECE,
                minutes_per_piece=Decimal("0.01"),
                quantity=len(group) * 20_000,
                deadline=(now + timedelta(days=9)).date(),
                region="ID-JK",
                intermediary_id=None,
                commission=None,
                assignments=[orders.AssignmentRequest(w, 20_000) for w in group],
                policy=rates.FairRatePolicy.OFF,
                now=now,
            )
            for w in group:
                d = deliveries.record(
                    s, principal=buyer, order_id=order.id, homeworker_id=w, pieces=20_000, now=now
                )
                deliveries.confirm(
                    s, principal=buyer, delivery_id=d.id, accepted=20_000, rejected=0, reason=None, now=now
                )
        # wallets already verified, as after a first payout: the baseline validates nothing either
        s.execute(update(HomeworkerRow).values(wallet_verified_at=now))
        # the seed's own work (an SMS per assigned order) is not what is measured: set it aside
        s.execute(update(OutboxRow).where(OutboxRow.relayed_at.is_(None)).values(relayed_at=now))
    engine.dispose()
    return buyer


def _cpu_seconds(match: Callable[[int, int, str], bool]) -> float:
    """User + system CPU of the live processes ``match(pid, pgid, cmdline)`` selects."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if match(int(entry), int(fields[2]), cmdline):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _in_group(pgid: int) -> Callable[[int, int, str], bool]:
    return lambda _pid, group, _cmdline: group == pgid


def _cpu_by_part(groups: dict[str, int], database: str) -> dict[str, float]:
    parts = {name: _cpu_seconds(_in_group(pgid)) for name, pgid in groups.items()}
    parts["postgres"] = _cpu_seconds(lambda _p, _g, c: c.startswith("postgres:") and f" {database} " in c)
    parts["redis"] = _cpu_seconds(lambda _p, _g, c: c.startswith("redis-server"))
    parts["driver"] = _cpu_seconds(lambda p, _g, _c: p == os.getpid())
    return parts


def _wait_for_worker(client: Celery) -> None:
    """Until the worker answers a ping (its pool is up), so the clock starts on a ready worker."""
    for _ in range(120):
        if client.control.ping(timeout=0.5):
            return
    raise RuntimeError("the Celery worker did not come up")


@dataclass
class Measured:
    rate: float
    seconds: float
    all_submitted: float
    settle_lag: tuple[float, float]
    settled_by: dict[str, int]
    cpu: dict[str, float]


def through_workers(
    url: str, env: dict[str, str], buyer: Principal, count: int, servers: dict[str, int]
) -> Measured:
    worker = subprocess.Popen(
        bootstrap.worker_command(
            beat=True, pool="prefork", concurrency=2, loglevel="WARNING", heartbeat=False
        ),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    engine = make_engine(url)
    factory = make_session_factory(engine)
    database = url.rsplit("/", 1)[1]
    client = Celery("bench", broker=env["REDIS_URL"])
    try:
        _wait_for_worker(client)
        policy = payouts.RunPolicy(
            provider="sandbox", minimum_payout=1, approval_threshold=10**15, fee_per_payout=0
        )
        groups = {**servers, "workers": worker.pid}
        cpu_before = _cpu_by_part(groups, database)
        start = time.perf_counter()
        started_at = datetime.now(UTC)
        with transaction(factory) as s:
            run = payouts.create_run(s, principal=buyer, policy=policy, now=started_at)
        # as POST /v1/payout-runs does: ask the workers to relay the outbox now, not at the next beat
        # (the relay's route: the callbacks queue, see bootstrap.celery_config)
        client.send_task("outbox.relay", queue=f"{env['UPAH_QUEUE']}.callbacks")
        while True:
            with factory() as s:
                done = s.execute(
                    select(func.count()).where(PayoutRow.run_id == run.id, PayoutRow.status == "succeeded")
                ).scalar_one()
            if done >= count:
                break
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        cpu_after = _cpu_by_part(groups, database)
        with factory() as s:
            times = s.execute(
                select(PayoutRow.submitted_at, PayoutRow.settled_at).where(PayoutRow.run_id == run.id)
            ).all()
            settled_by = {
                str(source): int(n)
                for source, n in s.execute(
                    select(PayoutEventRow.source, func.count())
                    .join(PayoutRow, PayoutRow.id == PayoutEventRow.payout_id)
                    .where(PayoutRow.run_id == run.id, PayoutEventRow.to_status == "succeeded")
                    .group_by(PayoutEventRow.source)
                )
            }
        last_submitted = max(t.submitted_at for t in times)
        lags = sorted((t.settled_at - t.submitted_at).total_seconds() for t in times)
        return Measured(
            rate=count / seconds,
            seconds=seconds,
            all_submitted=(last_submitted - started_at).total_seconds(),
            settle_lag=(lags[len(lags) // 2], lags[len(lags) * 9 // 10]),
            settled_by=settled_by,
            cpu={k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after},
        )
    finally:
        client.close()
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payouts", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=1, help="repetitions; each seeds its own homeworkers")
    args = parser.parse_args()
    count = args.payouts
    print(f"Dispatch benchmark: {count} payouts (PostgreSQL, Redis, 2 Celery worker processes,")
    print("the sandbox provider over HTTP, the API receiving its callbacks; all share this machine's")
    print(f"{os.cpu_count()} cores)")
    with scratch_database("upah_bench_dispatch") as url, tempfile.TemporaryDirectory() as tmp:
        keys = pii.generate_key()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "UPAH_QUEUE": f"upah-bench-{uuid.uuid4().hex[:6]}",
            "UPAH_SECRET_KEYS": keys,
            "UPAH_SIGNING_KEY": chain.generate_private_key_text(),
            "UPAH_SANDBOX_CALLBACK_SECRET": SECRET,
            "UPAH_SANDBOX_PROVIDER_URL": "http://127.0.0.1:8199",
            "UPAH_PUBLIC_URL": "http://127.0.0.1:8198",
            "UPAH_DATA_DIR": tmp,
            "UPAH_PROVIDER_RATE_PER_SECOND": "100000",
            "PYTHONPATH": str(ROOT),
        }
        sandbox = start(env, "sandbox-provider", 8199)
        api = start(env, "serve", 8198)  # receives the provider's callbacks
        try:
            bases: list[float] = []
            rates: list[Measured] = []
            for run in range(args.runs):
                bases.append(baseline("http://127.0.0.1:8199", count))
                seeded = time.perf_counter()
                buyer = seed(url, pii.Keyring.from_string(keys), count, tag=str(run))
                took = time.perf_counter() - seeded
                print(f"  (run {run + 1}: seeded {count} homeworkers in {took:.0f} s)")
                rates.append(
                    through_workers(url, env, buyer, count, {"sandbox": sandbox.pid, "api": api.pid})
                )
            base = _spread(bases)
            upah = _spread([m.rate for m in rates])
            print(f"baseline: provider called directly from one process: {fmt(base, 'payouts/s')}")
            print(f"upah: run created → all succeeded            : {fmt(upah, 'payouts/s')}")
            for m in rates:
                cpu = ", ".join(f"{k} {v / count * 1000:.1f}" for k, v in m.cpu.items())
                print(
                    f"  {count} payouts in {m.seconds:.1f} s; last submitted at {m.all_submitted:.1f} s;"
                    f" submitted → succeeded p50 {m.settle_lag[0]:.2f} s, p90 {m.settle_lag[1]:.2f} s"
                    f" (settled by {m.settled_by});"
                    f" CPU ms per payout: {cpu} (total {sum(m.cpu.values()) / count * 1000:.1f})"
                )
            cores = os.cpu_count() or 1
            print(
                f"the target's CPU budget: {cores} cores at 0.5 of the baseline allow"
                f" {cores * 1000 / (0.5 * base[0]):.1f} ms of CPU per payout, for every process above"
            )
            ratios = [m.rate / b for m, b in zip(rates, bases, strict=True)]
            print(
                f"ratio to baseline: {statistics.median(ratios):.2f}"
                f" (range {min(ratios):.2f}–{max(ratios):.2f}; target ≥ 0.5)"
            )
        finally:
            for proc in (api, sandbox):
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)


def _spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


if __name__ == "__main__":
    main()
