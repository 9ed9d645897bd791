"""USSD sessions doing PIN + balance through uvicorn on PostgreSQL, next to a bare FastAPI
endpoint reading one row by primary key, measured in the same run.

Run: .venv/bin/python bench/ussd.py [--homeworkers 10000] [--sessions 200] [--seconds 15] [--runs 3]

Seeds a scratch database with N homeworkers (each with a PIN and an allowance on her earned
account), then alternates two phases, each against its own uvicorn (``--workers 2``, uvloop,
httptools, no access log) started for the phase:

- **baseline**: ``GET /row/{id}`` on a bare FastAPI app (one sync endpoint, the same engine
  settings) reading one homeworker row by primary key;
- **ussd**: the real app (``api.main.create_app``: signature check, Redis rate limiter, PIN
  verdict cached per session). Each simulated phone dials: first screen (``text=""``), her
  PIN (Argon2 check, once per session), then ``PIN*1`` (the balance from the ledger).

``--sessions`` clients run concurrently over keep-alive connections (a small raw HTTP/1.1
client on asyncio, so the load generator stays cheap). Every figure is the median of
``--runs`` phases with the range; client, servers, PostgreSQL and Redis share the machine's
cores (say so beside the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI
from sqlalchemy import select, update

from bench.common import scratch_database
from integrations import phones, signatures
from ledger import atomic, chain
from payments import adjustments, parties, pii, pins
from payments.parties import OrganizationKind, Principal, Role
from payments.tables import HomeworkerRow
from upah.db import make_engine, make_session_factory

ROOT = Path(__file__).resolve().parent.parent
PIN = "583927"
GATEWAY_SECRET = "bench-ussd-gateway-secret"  # noqa: S105 - a throwaway benchmark secret
ALLOWANCE = 25_000


# --- the two apps (uvicorn factories) --------------------------------------------------------------


def ussd_app() -> FastAPI:
    """The real API, configured from the environment this script sets."""
    from api.main import create_app
    from upah.settings import Settings

    return create_app(Settings())


def baseline_app() -> FastAPI:
    """A bare FastAPI app: one sync endpoint reading one row by primary key."""
    engine = make_engine(os.environ["DATABASE_URL"])
    sessions = make_session_factory(engine)
    workers = HomeworkerRow.__table__
    app = FastAPI()

    @app.get("/row/{homeworker_id}")
    def row(homeworker_id: int) -> dict[str, object]:
        with sessions() as s:
            found = s.execute(
                select(workers.c.id, workers.c.region, workers.c.language).where(
                    workers.c.id == homeworker_id
                )
            ).one()
        return {"id": found.id, "region": found.region, "language": found.language}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


# --- seeding ----------------------------------------------------------------------------------------


def seed(url: str, keyring: pii.Keyring, count: int) -> list[tuple[int, str]]:
    """N homeworkers registered by one buyer, each with a PIN and an allowance: (id, phone)."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    admin = Principal(key_id=0, role=Role.ADMIN, organization_id=None)
    with atomic(factory) as s:
        org = parties.create_organization(s, name="bench buyer", kind=OrganizationKind.BUYER, now=now)
        parties.record_deposit(
            s,
            principal=admin,
            organization_id=org.id,
            amount=count * ALLOWANCE * 2,
            reference="seed",
            now=now,
        )
        buyer = parties.authenticate(
            s, parties.create_api_key(s, organization_id=org.id, role=Role.BUYER, now=now)
        )
    workers: list[tuple[int, str]] = []
    started = time.perf_counter()
    for first in range(0, count, 500):
        with atomic(factory) as s:
            for i in range(first, min(first + 500, count)):
                phone = phones.demo_number(i)
                worker = parties.register_homeworker(
                    s,
                    principal=buyer,
                    keyring=keyring,
                    name=f"Pekerja {i}",
                    phone=phone,
                    region="ID-JK",
                    wallet_provider="dana",
                    wallet_account=phone,
                    nik=None,
                    consent_at=now,
                    language="id",
                    now=now,
                )
                adjustments.add(
                    s,
                    principal=buyer,
                    homeworker_id=worker.id,
                    kind=adjustments.AdjustmentKind.ALLOWANCE,
                    amount=ALLOWANCE + i % 1000,
                    memo="tunjangan listrik",
                    now=now,
                )
                workers.append((worker.id, phone))
        print(f"\r  seeded {len(workers):,}/{count:,} homeworkers", end="", flush=True)
    with atomic(factory) as s:  # one Argon2 hash for everyone: hashing 10,000 PINs is not the point
        s.execute(update(HomeworkerRow).values(pin_hash=pins.hash_pin(PIN, keyring=keyring)))
    print(f" in {time.perf_counter() - started:.0f} s")
    engine.dispose()
    return workers


# --- servers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(factory: str, env: dict[str, str], workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            factory,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, _ = asyncio.run(_one_get(port, "/healthz"))
            if status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"{factory} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --- a small HTTP/1.1 keep-alive client -----------------------------------------------------------


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """One request; a keep-alive connection the server closed while idle is reopened once."""
        fresh = self.writer is None
        try:
            return await self._exchange(method, path, body, headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.close()
            if fresh:
                raise
            return await self._exchange(method, path, body, headers)

    async def _exchange(
        self, method: str, path: str, body: bytes, headers: dict[str, str] | None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _one_get(port: int, path: str) -> tuple[int, bytes]:
    conn = Connection(port)
    try:
        return await conn.request("GET", path)
    finally:
        conn.close()


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    by_step: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    started: float = 0.0
    finished: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / (self.finished - self.started)

    def pct(self, q: float, values: list[float] | None = None) -> float:
        data = sorted(values if values is not None else self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000


async def drive(
    port: int,
    *,
    kind: str,
    clients: int,
    seconds: float,
    warmup: float,
    workers: list[tuple[int, str]],
    think: float = 0.0,
) -> Phase:
    phase = Phase()
    cursor = iter(range(10**9))
    measuring = False

    async def one_client() -> None:
        conn = Connection(port)
        if think:  # people do not all dial in the same second
            await asyncio.sleep(random.uniform(0, 3 * think))
        try:
            while time.perf_counter() < end:
                if kind == "baseline":
                    worker_id = random.choice(workers)[0]
                    began = time.perf_counter()
                    status, body = await conn.request("GET", f"/row/{worker_id}")
                    if measuring:
                        phase.latencies.append(time.perf_counter() - began)
                        phase.errors += status != 200
                    continue
                _, phone = workers[next(cursor) % len(workers)]
                session_id = f"bench-{uuid.uuid4().hex}"
                for step, text in (("first screen", ""), ("PIN", PIN), ("balance", f"{PIN}*1")):
                    form = urlencode(
                        {
                            "sessionId": session_id,
                            "serviceCode": "*384*1#",
                            "phoneNumber": phone,
                            "text": text,
                        }
                    ).encode()
                    headers = {
                        "Content-Type": "application/x-www-form-urlencoded",
                        "X-Upah-Signature": signatures.sign(
                            GATEWAY_SECRET.encode(), form, timestamp=int(time.time())
                        ),
                    }
                    began = time.perf_counter()
                    status, body = await conn.request("POST", "/v1/gateway/ussd", form, headers)
                    elapsed = time.perf_counter() - began
                    ok = status == 200 and body.startswith(b"CON ") and (step != "balance" or b"Rp" in body)
                    if measuring:
                        phase.latencies.append(elapsed)
                        phase.by_step.setdefault(step, []).append(elapsed)
                        phase.errors += not ok
                    if not ok:
                        break
                    if think:
                        await asyncio.sleep(random.uniform(0.5 * think, 1.5 * think))
        finally:
            conn.close()

    end = time.perf_counter() + warmup + seconds
    tasks = [asyncio.create_task(one_client()) for _ in range(clients)]
    await asyncio.sleep(warmup)
    measuring = True
    phase.started = time.perf_counter()
    await asyncio.gather(*tasks)
    phase.finished = time.perf_counter()
    return phase


def spread(values: list[float], unit: str, digits: int = 0) -> str:
    low, high = min(values), max(values)
    return f"{statistics.median(values):>8,.{digits}f} {unit} (range {low:,.{digits}f}–{high:,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--homeworkers", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument(
        "--think", type=float, default=0.0, help="seconds a person takes per key press (0: closed loop)"
    )
    args = parser.parse_args()

    key = pii.generate_key()
    keyring = pii.Keyring.from_keys([key])
    with scratch_database("upah_bench_ussd") as url, tempfile.TemporaryDirectory() as tmp:
        print(f"seeding {args.homeworkers:,} homeworkers into a scratch PostgreSQL database")
        workers = seed(url, keyring, args.homeworkers)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": url,
            "REDIS_URL": os.environ.get("UPAH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
            "UPAH_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
            "UPAH_SECRET_KEYS": key,
            "UPAH_SIGNING_KEY": chain.generate_private_key_text(),
            "UPAH_DATA_DIR": tmp,
            "UPAH_USSD_GATEWAY_SECRET": GATEWAY_SECRET,
            "UPAH_USSD_REQUESTS_PER_MINUTE": "60",
        }
        results: dict[str, list[Phase]] = {"baseline": [], "ussd": []}
        for run in range(1, args.runs + 1):
            for kind, factory in (("baseline", "bench.ussd:baseline_app"), ("ussd", "bench.ussd:ussd_app")):
                proc, port = serve(factory, env, args.server_workers)
                try:
                    phase = asyncio.run(
                        drive(
                            port,
                            kind=kind,
                            clients=args.sessions,
                            seconds=args.seconds,
                            warmup=args.warmup,
                            workers=workers,
                            think=args.think if kind == "ussd" else 0.0,
                        )
                    )
                finally:
                    stop(proc)
                results[kind].append(phase)
                print(
                    f"  run {run} {kind:<8} {phase.rps:>7,.0f} req/s  p50 {phase.pct(0.5):6.1f} ms  "
                    f"p99 {phase.pct(0.99):6.1f} ms  errors {phase.errors}"
                )

    base, ussd = results["baseline"], results["ussd"]
    print()
    print(
        f"USSD PIN + balance, {args.sessions} concurrent sessions (think time {args.think:g} s), "
        f"{args.homeworkers:,} homeworkers, PostgreSQL, uvicorn --workers {args.server_workers} "
        f"(uvloop, httptools); client, servers, PostgreSQL and Redis share {os.cpu_count()} cores; "
        f"median of {args.runs} runs of {args.seconds:.0f} s"
    )
    print(f"  baseline (GET one row by PK)  {spread([p.rps for p in base], 'req/s')}")
    print(f"      p50 {spread([p.pct(0.5) for p in base], 'ms', 1)}")
    print(f"      p99 {spread([p.pct(0.99) for p in base], 'ms', 1)}")
    print(f"  ussd (3 requests a session)   {spread([p.rps for p in ussd], 'req/s')}")
    print(f"      sessions/s {spread([p.rps / 3 for p in ussd], '')}")
    print(f"      p50 {spread([p.pct(0.5) for p in ussd], 'ms', 1)}")
    print(f"      p99 {spread([p.pct(0.99) for p in ussd], 'ms', 1)}")
    for step in ("first screen", "PIN", "balance"):
        p50 = [p.pct(0.5, p.by_step.get(step, [0.0])) for p in ussd]
        p99 = [p.pct(0.99, p.by_step.get(step, [0.0])) for p in ussd]
        print(f"      {step:<13} p50 {statistics.median(p50):6.1f} ms   p99 {statistics.median(p99):6.1f} ms")
    ratios = [u.rps / b.rps for u, b in zip(ussd, base, strict=True)]
    note = "(target >= 0.5)" if not args.think else "(not comparable: the ussd phase had think time)"
    print(f"  ratio ussd/baseline req/s      {spread(ratios, '', 2)}   {note}")
    p99 = statistics.median([p.pct(0.99) for p in ussd])
    print(f"  ussd p99 target < 300 ms: {'met' if p99 < 300 else 'NOT met'}")
    print(f"  errors: baseline {sum(p.errors for p in base)}, ussd {sum(p.errors for p in ussd)}")


if __name__ == "__main__":
    main()
