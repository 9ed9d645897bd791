"""Payouts per second from run creation to all succeeded — through Redis and Celery (two
worker processes) to the sandbox provider over HTTP on loopback — next to the same provider
called directly in a loop from one process, measured in the same run.

Run: .venv/bin/python bench/dispatch.py [--payouts 5000] [--runs 1]
Everything (PostgreSQL, Redis, workers, the sandbox provider, this driver) shares the
machine's cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
from sqlalchemy import func, select, update

from bench.common import fmt, scratch_database
from integrations.providers.base import TransferRequest
from integrations.providers.sandbox import SandboxProvider
from ledger import chain
from payments import deliveries, orders, parties, payouts, pii, rates
from payments.parties import OrganizationKind, Principal, Role
from payments.tables import HomeworkerRow, PayoutRow
from upah.db import make_engine, make_session_factory, transaction

ROOT = Path(__file__).resolve().parent.parent
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


def seed(url: str, keyring: pii.Keyring, count: int) -> Principal:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    admin = Principal(key_id=0, role=Role.ADMIN, organization_id=None)
    with transaction(factory) as s:
        org = parties.create_organization(s, name="bench buyer", kind=OrganizationKind.BUYER, now=now)
        parties.record_deposit(
            s, principal=admin, organization_id=org.id, amount=10**13, reference="bench", now=now
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
                phone=f"+628201{i:07d}",
                region="ID-JK",
                wallet_provider="dana",
                wallet_account=f"+628201{i:07d}",
                nik=None,
                consent_at=now,
                language="id",
                now=now,
            ).id
            for i in range(count)
        ]
        order = orders.post(
            s,
            principal=buyer,
            reference="bench",
            product="bench",
            rate=Decimal(1),
            unit=rates.Unit.PIECE,
            minutes_per_piece=Decimal("0.01"),
            quantity=count * 20_000,
            deadline=(now + timedelta(days=9)).date(),
            region="ID-JK",
            intermediary_id=None,
            commission=None,
            assignments=[orders.AssignmentRequest(w, 20_000) for w in workers],
            policy=rates.FairRatePolicy.OFF,
            now=now,
        )
        for w in workers:
            d = deliveries.record(
                s, principal=buyer, order_id=order.id, homeworker_id=w, pieces=20_000, now=now
            )
            deliveries.confirm(
                s, principal=buyer, delivery_id=d.id, accepted=20_000, rejected=0, reason=None, now=now
            )
        # wallets already verified, as after a first payout: the baseline validates nothing either
        s.execute(update(HomeworkerRow).values(wallet_verified_at=now))
    engine.dispose()
    return buyer


def through_workers(url: str, env: dict[str, str], buyer: Principal, count: int) -> float:
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app:celery_app",
            "worker",
            "--beat",
            "--loglevel=WARNING",
            "--pool=prefork",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        time.sleep(3)  # let the worker come up before the clock starts
        policy = payouts.RunPolicy(
            provider="sandbox", minimum_payout=1, approval_threshold=10**15, fee_per_payout=0
        )
        start = time.perf_counter()
        with transaction(factory) as s:
            run = payouts.create_run(s, principal=buyer, policy=policy, now=datetime.now(UTC))
        while True:
            with factory() as s:
                done = s.execute(
                    select(func.count()).where(PayoutRow.run_id == run.id, PayoutRow.status == "succeeded")
                ).scalar_one()
            if done >= count:
                break
            time.sleep(0.05)
        return count / (time.perf_counter() - start)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payouts", type=int, default=5000)
    args = parser.parse_args()
    count = args.payouts
    print(f"Dispatch benchmark: {count} payouts (PostgreSQL, Redis, 2 Celery worker processes,")
    print("the sandbox provider over HTTP; all share this machine's cores)")
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
            base = baseline("http://127.0.0.1:8199", count)
            print(
                f"baseline: provider called directly from one process: {fmt((base, base, base), 'payouts/s')}"
            )
            buyer = seed(url, pii.Keyring.from_string(keys), count)
            upah = through_workers(url, env, buyer, count)
            print(f"upah: run created → all succeeded            : {fmt((upah, upah, upah), 'payouts/s')}")
            print(f"ratio to baseline: {upah / base:.2f}  (target ≥ 0.5)")
        finally:
            for proc in (api, sandbox):
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
