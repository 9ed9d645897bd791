"""Delivery confirmations per second through the HTTP stack, next to the ledger's own
single-entry posting rate measured in the same run.

Run: .venv/bin/python bench/api.py [--seconds 10] [--runs 3] [--clients 16] [--server-workers 2]

- Server: ``upah serve --workers`` (uvicorn with uvloop and httptools, each process on its
  own ``SO_REUSEPORT`` socket; one JSON log line per request) with ``--server-workers``
  processes on a scratch PostgreSQL database.
  Two, one per core, is what a deployment on this machine would run: interleaved runs with
  1, 3 and 4 workers did no better, as PostgreSQL and the clients need the same two cores.
- Figure: ``--clients`` concurrent keep-alive clients (threads with ``http.client`` in one
  separate process) each confirming deliveries awaiting confirmation:
  ``POST /v1/deliveries/{id}/confirm`` with ``{"accepted": 1, "rejected": 0}`` and the buyer's
  API key. Every confirmation authenticates the key, locks the order, delivery and
  assignment, computes the earning and posts it to the ledger (one entry: the order's
  held funds → the homeworker's earnings), then answers the delivery — one use-case, one
  commit. Only 200 answers count; anything else is reported.
- Baseline: the ledger alone — ``bench/ledger.py``'s "post(), 8 workers, 10,000 accounts"
  (8 processes looping ``retrying(journal.post)``, one two-posting entry per commit): the
  unit of work a confirmation runs in, with nothing else in it. The ledger's leaner
  ``post_alone`` (one entry and its commit in one round trip, no ORM session) is about 1.3x
  that rate in ``bench/ledger.py``; a confirmation cannot use it, as it writes more than
  the entry in its transaction.

- Floor: the cheapest authenticated request, ``GET /v1/deliveries/{id}`` by the same clients
  and key (authenticate, read the delivery, check that its order is the buyer's, answer it).
  A confirmation does all of that and posts an entry besides, so with every process sharing
  the same saturated cores it costs at least a read's machine time plus a bare post's; the
  ratio can then be no higher than ``1 / (1 + ledger rate / read rate)``, printed as the
  ceiling of the ratio on this machine and stack.

Each repetition measures the baseline, the figure and the floor back to back; the ratio is
taken per repetition, and medians and ranges are printed. Target: ratio ≥ 0.4. Everything
(PostgreSQL, the API's processes, the client process, the baseline's workers) shares the
machine's 2 cores.

Seeding goes through the domain functions (parties, orders, deliveries), like
``bench/dispatch.py``: one buyer, 100 homeworkers, one order each (no intermediary, so no
commission account that every confirmation would touch), and enough 1-piece deliveries
recorded and awaiting confirmation for every repetition.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fmt, scratch_database, spread
from bench.ledger import setup_accounts, upah_tps
from ledger import chain
from payments import deliveries, orders, parties, pii, rates
from payments.parties import OrganizationKind, Principal, Role
from upah.db import make_engine, make_session_factory, transaction

ROOT = Path(__file__).resolve().parent.parent
HOMEWORKERS = 100


def seed(url: str, keyring: pii.Keyring, count: int) -> tuple[str, list[int]]:
    """A buyer's API key and ``count`` 1-piece deliveries awaiting its confirmation."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    admin = Principal(key_id=0, role=Role.ADMIN, organization_id=None)
    per_order = -(-count // HOMEWORKERS)
    with transaction(factory) as s:
        org = parties.create_organization(s, name="bench buyer", kind=OrganizationKind.BUYER, now=now)
        parties.record_deposit(
            s, principal=admin, organization_id=org.id, amount=10**13, reference="bench", now=now
        )
        token = parties.create_api_key(s, organization_id=org.id, role=Role.BUYER, now=now)
        buyer = parties.authenticate(s, token)
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
            for i in range(HOMEWORKERS)
        ]
        order_ids = [
            orders.post(
                s,
                principal=buyer,
                reference=f"bench-{w}",
                product="bench",
                rate=Decimal(1500),
                unit=rates.Unit.PIECE,
                minutes_per_piece=Decimal(1),
                quantity=per_order,
                deadline=(now + timedelta(days=9)).date(),
                region="ID-JK",
                intermediary_id=None,
                commission=None,
                assignments=[orders.AssignmentRequest(w, per_order)],
                policy=rates.FairRatePolicy.OFF,
                now=now,
            ).id
            for w in workers
        ]
    delivery_ids: list[int] = []
    pairs = [(o, w) for o, w in zip(order_ids, workers, strict=True) for _ in range(per_order)]
    for start in range(0, len(pairs), 500):
        with transaction(factory) as s:
            for order_id, worker in pairs[start : start + 500]:
                delivery_ids.append(
                    deliveries.record(
                        s, principal=buyer, order_id=order_id, homeworker_id=worker, pieces=1, now=now
                    ).id
                )
    engine.dispose()
    random.shuffle(delivery_ids)
    return token, delivery_ids


def start_server(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "upah.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(300):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError("the API did not start")


CONFIRM = ("POST", "/v1/deliveries/{}/confirm")
READ = ("GET", "/v1/deliveries/{}")


def _clients(
    port: int,
    token: str,
    ids: list[int],
    clients: int,
    warmup: int,
    seconds: float,
    queue: mp.Queue[tuple[int, int, dict[int, int], bool]],
    request: tuple[str, str] = CONFIRM,
) -> None:
    """In its own process: ``clients`` threads sending ``request`` (a method and a path with
    a place for the delivery id) for ``ids`` in turn over keep-alive connections; the first
    ``warmup`` answers are not counted. Also says whether ``ids`` ran out before the time was
    up (then the clients idled and the rate is too low)."""
    lock = threading.Lock()
    todo = iter(ids)
    started = threading.Event()
    stop = threading.Event()
    counted = [0]
    others: dict[int, int] = {}
    taken = [0]
    ran_out = threading.Event()
    method, path = request
    body = json.dumps({"accepted": 1, "rejected": 0}) if method == "POST" else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            with lock:
                delivery_id = next(todo, None)
                taken[0] += 1
                if taken[0] == warmup:
                    started.set()
            if delivery_id is None:
                ran_out.set()
                started.set()
                break
            conn.request(method, path.format(delivery_id), body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if started.is_set() and not stop.is_set():
                with lock:
                    if response.status == 200:
                        counted[0] += 1
                    else:
                        others[response.status] = others.get(response.status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    started.wait()
    with lock:
        counted[0] = 0
        others.clear()
    began = time.perf_counter()
    time.sleep(seconds)
    with lock:
        done, elapsed = counted[0], time.perf_counter() - began
        errors = dict(others)
        stop.set()
    for t in threads:
        t.join()
    queue.put((done, round(elapsed * 1e6), errors, ran_out.is_set()))


def requests_per_second(
    port: int, token: str, ids: list[int], clients: int, seconds: float, request: tuple[str, str] = CONFIRM
) -> tuple[float, dict[int, int], bool]:
    """The rate, non-200 answers by status, and whether the deliveries ran out too early."""
    queue: mp.Queue[tuple[int, int, dict[int, int], bool]] = mp.Queue()
    proc = mp.Process(target=_clients, args=(port, token, ids, clients, 4 * clients, seconds, queue, request))
    proc.start()
    done, elapsed_us, errors, ran_out = queue.get()
    proc.join()
    return done / (elapsed_us / 1e6), errors, ran_out


def ceiling(ledger_rate: float, read_rate: float) -> float:
    """The highest ratio a confirmation could reach, were it to cost no more than an
    authenticated read and a bare ledger post: machine time per confirmation at least
    1/read_rate + 1/ledger_rate, with every process sharing the same saturated cores."""
    return 1 / (1 + ledger_rate / read_rate)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--expected-rate", type=int, default=600, help="confirmations/s, to size the seed")
    args = parser.parse_args()
    print(
        f"API benchmark: delivery confirmations through uvicorn ({args.server_workers} worker processes) "
        f"from {args.clients} concurrent clients,"
    )
    print("next to the ledger's own post() at 8 workers; all on PostgreSQL, sharing the machine's 2 cores")
    needed = args.expected_rate * (args.seconds + 3) * args.runs
    with scratch_database("upah_bench_api") as url, tempfile.TemporaryDirectory() as tmp:
        keys = pii.generate_key()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            "UPAH_QUEUE": f"upah-bench-{uuid.uuid4().hex[:6]}",
            "UPAH_SECRET_KEYS": keys,
            "UPAH_SIGNING_KEY": chain.generate_private_key_text(),
            "UPAH_SANDBOX_PROVIDER_URL": "http://127.0.0.1:9",
            "UPAH_SANDBOX_CALLBACK_SECRET": "bench-callback-secret",
            "UPAH_DATA_DIR": tmp,
            "PYTHONPATH": str(ROOT),
        }
        print(f"seeding {needed:,} deliveries awaiting confirmation ...", flush=True)
        token, ids = seed(url, pii.Keyring.from_keys([keys]), needed)
        accounts = setup_accounts(url, 10_000)
        port = random.randrange(20_000, 30_000)
        server = start_server(env, port, args.server_workers)
        baselines: list[float] = []
        figures: list[float] = []
        ratios: list[float] = []
        reads: list[float] = []
        ceilings: list[float] = []
        errors: dict[int, int] = {}
        try:
            cursor = 0
            for run in range(1, args.runs + 1):
                baselines.append(upah_tps(url, accounts, 8, args.seconds))
                share = ids[cursor : cursor + len(ids) // args.runs]
                cursor += len(share)
                figure, run_errors, ran_out = requests_per_second(
                    port, token, share, args.clients, args.seconds
                )
                figures.append(figure)
                ratios.append(figure / baselines[-1])
                read, read_errors, _ = requests_per_second(port, token, ids, args.clients, args.seconds, READ)
                reads.append(read)
                ceilings.append(ceiling(baselines[-1], read))
                for status, n in [*run_errors.items(), *read_errors.items()]:
                    errors[status] = errors.get(status, 0) + n
                print(
                    f"  repetition {run}/{args.runs}: ledger {baselines[-1]:,.0f}, confirmations"
                    f" {figure:,.0f}, reads {read:,.0f}",
                    flush=True,
                )
                if ran_out:
                    print(
                        "  the seeded deliveries ran out before the time was up: this figure is a lower"
                        " bound; run again with a higher --expected-rate",
                        flush=True,
                    )
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    med, lo, hi = spread(ratios)
    print(f"{'baseline: ledger post(), 8 workers':<44}: {fmt(spread(baselines), 'entries/s')}")
    label = f"HTTP confirmations, {args.clients} clients"
    print(f"{label:<44}: {fmt(spread(figures), 'confirmations/s')}")
    print(f"{'authenticated reads (GET delivery)':<44}: {fmt(spread(reads), 'reads/s')}")
    print(f"ratio to the ledger's own rate: {med:.2f} (range {lo:.2f}–{hi:.2f}); target >= 0.4")
    c_med, c_lo, c_hi = spread(ceilings)
    print(
        f"ceiling of that ratio (a read and a bare post per confirmation): {c_med:.2f}"
        f" (range {c_lo:.2f}–{c_hi:.2f})"
    )
    if errors:
        print(f"non-200 answers (not counted): {errors}")


if __name__ == "__main__":
    main()
