"""The sandbox mobile-money provider: a real, persistent provider we run ourselves.

It behaves like a disbursement aggregator (Xendit, Flip, Midtrans Payouts) paying
Indonesian e-wallets, so the whole product — dispatch, status polling, callbacks,
reconciliation — can be exercised without real money and without a mock:

* ``POST /v1/payouts`` takes one payment instruction under a required ``Idempotency-Key``.
  The same key with the same body answers the first response again (and counts the
  repeat in ``received_count``); the same key with a different body answers 409
  ``IDEMPOTENCY_CONFLICT``. A key is paid at most once, whatever happens.
* The outcome is decided at receipt, deterministically, from the wallet's state
  (Bank Indonesia e-money rules): an unregistered wallet may hold at most
  Rp 2,000,000, a registered one Rp 20,000,000 with Rp 40,000,000 a month incoming; a
  payout that would break a limit fails ``LIMIT_EXCEEDED``. Accounts that are not
  ``+62…`` E.164 numbers, or that the fault plan marks invalid, fail ``INVALID_ACCOUNT``;
  a holder name differing from a known wallet's fails ``NAME_MISMATCH``; a payout larger
  than the provider float (when one is set) fails ``INSUFFICIENT_BALANCE``. The POST
  answers ``accepted``; the status endpoints and a signed callback give the outcome.
* Every instruction stays in a SQLite file (WAL, one lock, ``BEGIN IMMEDIATE``), so the
  record survives restarts and auditors can prove nobody was paid twice with
  ``GET /v1/payouts`` and ``GET /v1/statement.csv``.
* Callbacks are POSTed to the instruction's ``callback_url`` from background threads
  (several payouts' callbacks at once, one payout's in order), signed with
  :func:`integrations.signatures.sign` in ``X-Sandbox-Signature``, and retried a few
  times on failure. Each carries an ``event_id``; duplicates share it.
* A :class:`FaultPlan` injects the failures real providers show — timeouts after paying
  or before recording, 503s, 429s, duplicate and out-of-order callbacks, later reversals
  — drawn from one seeded ``random.Random`` so a run can be replayed.
* Helpers for tests and the demo: ``POST /v1/wallets`` (register or upgrade a wallet,
  optionally with a starting balance), ``GET /v1/wallets/{account}``, ``POST
  /v1/accounts/validate`` (the name inquiry), ``POST /v1/payouts/{id}/reverse``, ``GET|PUT
  /v1/faults``, ``GET|PUT /v1/float`` (provider balance, unlimited unless set), ``GET
  /v1/callbacks`` (delivery log) and ``GET /healthz``. None is authenticated: bind the
  sandbox to 127.0.0.1 and never expose it.

A key whose payout failed stays spent — replaying it answers the failure again; paying
her after, say, a wallet upgrade is a new instruction under a new key.

Mounted under ``/sandbox`` inside the API its lifespan does not run: whoever mounts it
calls ``sandbox_service(app).close()`` at shutdown. Timestamps come from the injected
clock; delays (stalls, retries, reversals) are real time.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import heapq
import io
import itertools
import json
import logging
import math
import os
import random
import re
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import anyio
import urllib3
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integrations import signatures

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "FaultPlan",
    "SandboxService",
    "SandboxStore",
    "create_sandbox_app",
    "create_sandbox_app_from_env",
    "sandbox_service",
]

logger = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8100
SIGNATURE_HEADER: Final = "X-Sandbox-Signature"
FAULTS_ENV: Final = "UPAH_SANDBOX_FAULTS"

CURRENCY: Final = "IDR"
CHANNELS: Final = frozenset({"ID_DANA", "ID_OVO", "ID_GOPAY", "ID_LINKAJA", "ID_SHOPEEPAY"})
UNREGISTERED_BALANCE_LIMIT: Final = 2_000_000
REGISTERED_BALANCE_LIMIT: Final = 20_000_000
REGISTERED_MONTHLY_INCOMING_LIMIT: Final = 40_000_000
MAX_BODY_BYTES: Final = 64 * 1024
MAX_KEY_LENGTH: Final = 100
MAX_TEXT_LENGTH: Final = 255
_E164_ID: Final = re.compile(r"\+62[0-9]{8,13}")

STATEMENT_COLUMNS: Final = (
    "reference",
    "idempotency_key",
    "account",
    "amount",
    "currency",
    "status",
    "settled_at",
)

Clock = Callable[[], datetime]
JSONObject = dict[str, object]


def _utcnow() -> datetime:
    """The real clock, used unless a test injects its own."""
    return datetime.now(UTC)


def _new_id(prefix: str) -> str:
    """A fresh opaque identifier such as ``po_3f2a…``."""
    return f"{prefix}_{uuid.uuid4().hex}"


def _iso(moment: datetime) -> str:
    """UTC timestamp text as stored and served, e.g. ``2025-01-31T08:00:00Z``."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- fault plan

_PROBABILITIES: Final = (
    "timeout_paid",
    "timeout_unpaid",
    "error_5xx",
    "error_5xx_paid",
    "rate_limit",
    "duplicate_callback",
    "out_of_order_callback",
    "reverse",
)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """How often the sandbox misbehaves, and how; all probabilities are in [0, 1]."""

    timeout_paid: float = 0.0
    timeout_unpaid: float = 0.0
    error_5xx: float = 0.0
    error_5xx_paid: float = 0.0
    rate_limit: float = 0.0
    duplicate_callback: float = 0.0
    out_of_order_callback: float = 0.0
    reverse: float = 0.0
    stall_seconds: float = 3.0
    reverse_after_seconds: float = 1.0
    seed: int | None = None
    invalid_accounts: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        """Refuse a plan that cannot be drawn from."""
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1")
        request_total = (
            self.timeout_paid + self.timeout_unpaid + self.error_5xx + self.error_5xx_paid + self.rate_limit
        )
        if request_total > 1.0 + 1e-9:
            raise ValueError("request fault probabilities add up to more than 1")
        for name in ("stall_seconds", "reverse_after_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number of seconds")

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """Read ``"timeout_paid=0.05,rate_limit=0.05,seed=42"``; accounts joined by ``|``."""
        values: JSONObject = {}
        for part in text.split(","):
            if not part.strip():
                continue
            key, sep, raw = part.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep:
                raise ValueError(f"fault setting {key!r} needs a value")
            if key == "seed":
                values[key] = int(raw)
            elif key == "invalid_accounts":
                values[key] = [item for item in raw.split("|") if item]
            else:
                values[key] = float(raw)
        return cls.from_json(values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FaultPlan:
        """The plan in ``UPAH_SANDBOX_FAULTS``, or no faults at all."""
        return cls.parse(environ.get(FAULTS_ENV, ""))

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> FaultPlan:
        """Build a plan from a JSON object, refusing unknown or mistyped settings."""
        known = {item.name for item in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        plan = cls()
        changes: dict[str, object] = {}
        for key, value in data.items():
            if key == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError("seed must be an integer")
                changes[key] = value
            elif key == "invalid_accounts":
                if not isinstance(value, list | tuple | set | frozenset) or not all(
                    isinstance(item, str) for item in value
                ):
                    raise ValueError("invalid_accounts must be a list of account numbers")
                changes[key] = frozenset(value)
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{key} must be a number")
                changes[key] = float(value)
        return replace(plan, **changes)  # type: ignore[arg-type]

    def to_json(self) -> JSONObject:
        """The plan as served by ``GET /v1/faults``."""
        data = asdict(self)
        data["invalid_accounts"] = sorted(self.invalid_accounts)
        return data


# --------------------------------------------------------------------------- store


@dataclass(frozen=True, slots=True)
class PayoutInstruction:
    """A validated ``POST /v1/payouts`` body with its idempotency key."""

    idempotency_key: str
    reference: str
    amount: int
    currency: str
    channel: str
    account: str
    account_holder_name: str
    description: str
    callback_url: str | None

    def fingerprint(self) -> str:
        """Hash of everything the instruction says, to tell a replay from a conflict."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Outbound:
    """A callback to deliver once the transaction that produced it has committed."""

    event_id: str
    url: str | None
    body: bytes
    payout_id: str = ""


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS payouts (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    reference TEXT NOT NULL,
    channel TEXT NOT NULL,
    account TEXT NOT NULL,
    account_holder_name TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    description TEXT NOT NULL,
    callback_url TEXT,
    status TEXT NOT NULL,
    failure_code TEXT,
    received_count INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    settled_at TEXT,
    reversed_at TEXT,
    response TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payouts_account ON payouts (account, status);
CREATE TABLE IF NOT EXISTS wallets (
    account TEXT PRIMARY KEY,
    holder_name TEXT,
    registered INTEGER NOT NULL DEFAULT 0,
    balance INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS callbacks (
    event_id TEXT PRIMARY KEY,
    payout_id TEXT NOT NULL,
    status TEXT NOT NULL,
    url TEXT,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at TEXT
);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT
);
"""


class SandboxStore:
    """The sandbox's SQLite record; one connection shared under a lock, WAL on disk."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # every commit waits for the disk, unless told
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading so concurrent writers serialise.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL``): a
        process crash loses nothing, a power cut may lose the last such commits, and the next
        durable commit makes them durable too. For the callback delivery log only, where the
        disk wait cost as much as the delivery's other bookkeeping; what was paid is always
        committed durably."""
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def read(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """Run one read-only query."""
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    def close(self) -> None:
        """Release the file."""
        with self._lock:
            self._db.close()


# --------------------------------------------------------------------------- callbacks


class CallbackDispatcher:
    """Background threads that run due jobs: callback deliveries and later reversals.

    Jobs run on ``lanes`` threads, a job's lane chosen by its key (the payout id): the
    callbacks of different payouts are delivered concurrently, as a real provider's are,
    while those about one payout keep the order they were produced in.
    """

    def __init__(
        self,
        *,
        secret: bytes,
        clock: Clock,
        enabled: bool,
        retry_delays: Sequence[float],
        timeout: tuple[float, float],
        on_attempt: Callable[[str, bool, str | None], None],
        lanes: int = 4,
    ) -> None:
        self._secret = secret
        self._clock = clock
        self._enabled = enabled
        self._retry_delays = tuple(retry_delays)
        self._on_attempt = on_attempt
        self._lanes = max(1, lanes)
        # urllib3 itself, not requests: a callback is one POST with its signature, and requests'
        # session machinery (cookies, hooks, environment) cost more CPU than the POST (0.8 ms a
        # callback against 0.37 ms measured). A pool is thread-safe, keeps a connection alive per
        # lane, takes nothing from the environment (no proxy, no ~/.netrc credentials) and
        # reconnects when the receiver closed an idle one; retries are this dispatcher's own.
        self._http = urllib3.PoolManager(
            maxsize=self._lanes,
            retries=False,
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
        )
        self._jobs: list[list[tuple[float, int, Callable[[], None]]]] = [[] for _ in range(self._lanes)]
        self._sequence = itertools.count()
        lock = threading.Lock()
        self._condition = threading.Condition(lock)  # idle or closed: for wait_idle and close
        # one per lane, on the same lock: a new job wakes its own lane's thread, not every lane's
        self._wakeups = [threading.Condition(lock) for _ in range(self._lanes)]
        self._running_jobs = 0
        self._closed = False
        self._threads: list[threading.Thread | None] = [None] * self._lanes

    def schedule(self, delay: float, job: Callable[[], None], *, key: str = "") -> None:
        """Run ``job`` on the lane of ``key`` after ``delay`` seconds."""
        lane = zlib.crc32(key.encode()) % self._lanes
        with self._condition:
            if self._closed:
                return
            heapq.heappush(self._jobs[lane], (time.monotonic() + delay, next(self._sequence), job))
            if self._threads[lane] is None:
                thread = threading.Thread(
                    target=self._run, args=(lane,), name=f"sandbox-callbacks-{lane}", daemon=True
                )
                self._threads[lane] = thread
                thread.start()
            self._wakeups[lane].notify()

    def deliver(self, outbound: Outbound) -> None:
        """Queue one callback delivery, if callbacks are on and the payout has a URL."""
        if not self._enabled or outbound.url is None:
            return
        self.schedule(0.0, lambda: self._attempt(outbound, 0), key=outbound.payout_id)

    def _attempt(self, outbound: Outbound, attempt: int) -> None:
        """POST a signed callback once; reschedule it on failure while retries remain."""
        assert outbound.url is not None
        timestamp = int(self._clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signatures.sign(self._secret, outbound.body, timestamp=timestamp),
        }
        error: str | None = None
        try:
            response = self._http.request(
                "POST", outbound.url, body=outbound.body, headers=headers, redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            error = type(exc).__name__
        else:
            if not 200 <= response.status < 300:
                error = f"HTTP {response.status}"
        self._on_attempt(outbound.event_id, error is None, error)
        if error is not None and attempt < len(self._retry_delays):
            logger.info("callback %s failed (%s), retrying", outbound.event_id, error)
            delay = self._retry_delays[attempt]
            self.schedule(delay, lambda: self._attempt(outbound, attempt + 1), key=outbound.payout_id)

    def _run(self, lane: int) -> None:
        """Wait for the lane's next due job and run it, until closed."""
        jobs = self._jobs[lane]
        while True:
            with self._condition:
                while not self._closed:
                    if jobs and jobs[0][0] <= time.monotonic():
                        break
                    wait = jobs[0][0] - time.monotonic() if jobs else None
                    self._wakeups[lane].wait(wait)
                if self._closed:
                    return
                _, _, job = heapq.heappop(jobs)
                self._running_jobs += 1
            try:
                job()
            except Exception:
                logger.exception("sandbox background job failed")
            finally:
                with self._condition:
                    self._running_jobs -= 1
                    if not self._running_jobs and not any(self._jobs):
                        self._condition.notify_all()  # wait_idle's

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no job is queued or running; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while any(self._jobs) or self._running_jobs:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
        return True

    def close(self) -> None:
        """Stop the workers, dropping jobs not yet due, and wait for them to finish."""
        with self._condition:
            self._closed = True
            for jobs in self._jobs:
                jobs.clear()
            self._condition.notify_all()
            for wakeup in self._wakeups:
                wakeup.notify_all()
            threads = [t for t in self._threads if t is not None]
        for thread in threads:
            thread.join(timeout=10.0)
        self._http.clear()


# --------------------------------------------------------------------------- service


class SandboxError(Exception):
    """A request the sandbox refuses, answered as ``{"error_code": …}``."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def _limit_for(registered: bool) -> int:
    """The most a wallet may hold under Bank Indonesia's e-money rules."""
    return REGISTERED_BALANCE_LIMIT if registered else UNREGISTERED_BALANCE_LIMIT


def _same_name(left: str, right: str) -> bool:
    """Holder names match when equal ignoring case and spacing, as aggregators compare."""
    return " ".join(left.split()).casefold() == " ".join(right.split()).casefold()


def _payout_view(row: sqlite3.Row) -> JSONObject:
    """A payout as the status and listing endpoints serve it."""
    return {
        "id": row["id"],
        "reference": row["reference"],
        "idempotency_key": row["idempotency_key"],
        "channel": row["channel"],
        "account": row["account"],
        "account_holder_name": row["account_holder_name"],
        "amount": row["amount"],
        "currency": row["currency"],
        "description": row["description"],
        "status": row["status"],
        "failure_code": row["failure_code"],
        "received_count": row["received_count"],
        "paid": row["status"] == "succeeded",
        "ever_paid": row["status"] in ("succeeded", "reversed"),
        "created_at": row["created_at"],
        "settled_at": row["settled_at"],
        "reversed_at": row["reversed_at"],
    }


def _wallet_view(row: sqlite3.Row) -> JSONObject:
    """A wallet as ``GET /v1/wallets/{account}`` serves it."""
    registered = bool(row["registered"])
    return {
        "account": row["account"],
        "holder_name": row["holder_name"],
        "registered": registered,
        "balance": row["balance"],
        "limit": _limit_for(registered),
    }


class SandboxService:
    """The provider's behaviour behind the HTTP routes: idempotency, outcomes, faults."""

    def __init__(
        self,
        *,
        store: SandboxStore,
        callback_secret: bytes,
        faults: FaultPlan,
        clock: Clock,
        new_id: Callable[[str], str],
        send_callbacks: bool,
        callback_retry_delays: Sequence[float],
        callback_timeout: tuple[float, float],
        callback_lanes: int = 4,
    ) -> None:
        if not callback_secret:
            raise ValueError("the sandbox needs a callback secret to sign callbacks")
        self.store = store
        self._clock = clock
        self._new_id = new_id
        self._fault_lock = threading.Lock()
        self._faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311 - fault draws, not secrets
        self.dispatcher = CallbackDispatcher(
            secret=callback_secret,
            clock=clock,
            enabled=send_callbacks,
            retry_delays=callback_retry_delays,
            timeout=callback_timeout,
            on_attempt=self._record_attempt,
            lanes=callback_lanes,
        )

    # ----------------------------------------------------------------- faults

    @property
    def faults(self) -> FaultPlan:
        """The plan in force."""
        with self._fault_lock:
            return self._faults

    def set_faults(self, plan: FaultPlan) -> None:
        """Replace the plan; a seed restarts the draws so the run can be replayed."""
        with self._fault_lock:
            self._faults = plan
            if plan.seed is not None:
                self._rng = random.Random(plan.seed)  # noqa: S311 - fault draws, not secrets

    def draw_request_fault(self) -> str | None:
        """Pick what goes wrong with one payout request, if anything."""
        with self._fault_lock:
            plan = self._faults
            roll = self._rng.random()
        cumulative = 0.0
        for name in ("rate_limit", "error_5xx", "error_5xx_paid", "timeout_unpaid", "timeout_paid"):
            cumulative += float(getattr(plan, name))
            if roll < cumulative:
                return name
        return None

    def _draw(self, probability: float) -> bool:
        """One reproducible yes/no draw; a zero probability consumes no randomness."""
        if probability <= 0.0:
            return False
        with self._fault_lock:
            return self._rng.random() < probability

    # ----------------------------------------------------------------- payouts

    def receive(self, instruction: PayoutInstruction) -> tuple[int, JSONObject]:
        """Record and decide an instruction, or answer a replay; at most one payment per key."""
        now = _iso(self._clock())
        outbound: list[Outbound] = []
        reverse_id: str | None = None
        with self.store.transaction() as db:
            existing = db.execute(
                "SELECT * FROM payouts WHERE idempotency_key = ?", (instruction.idempotency_key,)
            ).fetchone()
            if existing is not None:
                if existing["fingerprint"] != instruction.fingerprint():
                    raise SandboxError(
                        409,
                        "IDEMPOTENCY_CONFLICT",
                        "this Idempotency-Key was used with a different request body",
                    )
                db.execute(
                    "UPDATE payouts SET received_count = received_count + 1 WHERE id = ?",
                    (existing["id"],),
                )
                response: JSONObject = json.loads(existing["response"])
                return 200, response
            status, failure_code = self._decide(db, instruction, now)
            payout_id = self._new_id("po")
            response = {
                "id": payout_id,
                "reference": instruction.reference,
                "idempotency_key": instruction.idempotency_key,
                "status": "accepted",
            }
            db.execute(
                "INSERT INTO payouts (id, idempotency_key, fingerprint, reference, channel,"
                " account, account_holder_name, amount, currency, description, callback_url,"
                " status, failure_code, received_count, created_at, settled_at, response)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                (
                    payout_id,
                    instruction.idempotency_key,
                    instruction.fingerprint(),
                    instruction.reference,
                    instruction.channel,
                    instruction.account,
                    instruction.account_holder_name,
                    instruction.amount,
                    instruction.currency,
                    instruction.description,
                    instruction.callback_url,
                    status,
                    failure_code,
                    now,
                    now,
                    json.dumps(response),
                ),
            )
            row = db.execute("SELECT * FROM payouts WHERE id = ?", (payout_id,)).fetchone()
            plan = self.faults
            final = self._event(db, row, status)
            outbound.append(final)
            if self._draw(plan.duplicate_callback):
                outbound.append(final)
            if self._draw(plan.out_of_order_callback):
                outbound.append(self._event(db, row, "accepted"))
            if status == "succeeded" and self._draw(plan.reverse):
                reverse_id = payout_id
        for item in outbound:
            self.dispatcher.deliver(item)
        if reverse_id is not None:
            target = reverse_id
            self.dispatcher.schedule(
                plan.reverse_after_seconds, lambda: self._auto_reverse(target), key=target
            )
        return 200, response

    def _decide(
        self, db: sqlite3.Connection, instruction: PayoutInstruction, now: str
    ) -> tuple[str, str | None]:
        """Settle the outcome now, moving the money when it succeeds."""
        if not _E164_ID.fullmatch(instruction.account) or (
            instruction.account in self.faults.invalid_accounts
        ):
            return "failed", "INVALID_ACCOUNT"
        db.execute(
            "INSERT OR IGNORE INTO wallets (account, created_at, updated_at) VALUES (?, ?, ?)",
            (instruction.account, now, now),
        )
        wallet = db.execute("SELECT * FROM wallets WHERE account = ?", (instruction.account,)).fetchone()
        if wallet["holder_name"] is not None and not _same_name(
            wallet["holder_name"], instruction.account_holder_name
        ):
            return "failed", "NAME_MISMATCH"
        float_balance = self._float(db)
        if float_balance is not None and instruction.amount > float_balance:
            return "failed", "INSUFFICIENT_BALANCE"
        registered = bool(wallet["registered"])
        if wallet["balance"] + instruction.amount > _limit_for(registered):
            return "failed", "LIMIT_EXCEEDED"
        if registered:
            month = now[:7]
            incoming = db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM payouts WHERE account = ?"
                " AND status = 'succeeded' AND substr(settled_at, 1, 7) = ?",
                (instruction.account, month),
            ).fetchone()[0]
            if incoming + instruction.amount > REGISTERED_MONTHLY_INCOMING_LIMIT:
                return "failed", "LIMIT_EXCEEDED"
        db.execute(
            "UPDATE wallets SET balance = balance + ?, updated_at = ? WHERE account = ?",
            (instruction.amount, now, instruction.account),
        )
        if float_balance is not None:
            self._set_float(db, float_balance - instruction.amount)
        return "succeeded", None

    def _event(self, db: sqlite3.Connection, row: sqlite3.Row, status: str) -> Outbound:
        """Record one callback event about a payout and return it for delivery."""
        event_id = self._new_id("evt")
        body: JSONObject = {
            "event_id": event_id,
            "id": row["id"],
            "reference": row["reference"],
            "idempotency_key": row["idempotency_key"],
            "status": status,
            "amount": row["amount"],
            "currency": row["currency"],
            "failure_code": row["failure_code"] if status == "failed" else None,
        }
        encoded = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        db.execute(
            "INSERT INTO callbacks (event_id, payout_id, status, url, body, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, row["id"], status, row["callback_url"], encoded.decode(), _iso(self._clock())),
        )
        return Outbound(event_id=event_id, url=row["callback_url"], body=encoded, payout_id=row["id"])

    def _record_attempt(self, event_id: str, delivered: bool, error: str | None) -> None:
        """Keep each delivery attempt in the record, for tests and debugging."""
        with self.store.transaction(durable=False) as db:
            if delivered:
                db.execute(
                    "UPDATE callbacks SET attempts = attempts + 1, deliveries = deliveries + 1,"
                    " delivered_at = ?, last_error = NULL WHERE event_id = ?",
                    (_iso(self._clock()), event_id),
                )
            else:
                db.execute(
                    "UPDATE callbacks SET attempts = attempts + 1, last_error = ? WHERE event_id = ?",
                    (error, event_id),
                )

    def reverse(self, payout_id: str) -> JSONObject:
        """Take a succeeded payout back from the wallet, as a channel bounce-back does."""
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM payouts WHERE id = ?", (payout_id,)).fetchone()
            if row is None:
                raise SandboxError(404, "NOT_FOUND", "no such payout")
            if row["status"] != "succeeded":
                raise SandboxError(409, "INVALID_STATE", "only a succeeded payout can be reversed")
            now = _iso(self._clock())
            db.execute(
                "UPDATE payouts SET status = 'reversed', reversed_at = ? WHERE id = ?",
                (now, payout_id),
            )
            db.execute(
                "UPDATE wallets SET balance = balance - ?, updated_at = ? WHERE account = ?",
                (row["amount"], now, row["account"]),
            )
            float_balance = self._float(db)
            if float_balance is not None:
                self._set_float(db, float_balance + row["amount"])
            updated = db.execute("SELECT * FROM payouts WHERE id = ?", (payout_id,)).fetchone()
            outbound = self._event(db, updated, "reversed")
        self.dispatcher.deliver(outbound)
        return _payout_view(updated)

    def _auto_reverse(self, payout_id: str) -> None:
        """The ``reverse`` fault: a later reversal, unless someone reversed it already."""
        try:
            self.reverse(payout_id)
        except SandboxError as exc:
            logger.info("scheduled reversal of %s skipped: %s", payout_id, exc.error_code)

    def find_payout(self, *, payout_id: str | None = None, key: str | None = None) -> JSONObject:
        """One payout by id or idempotency key; 404 when never received."""
        if payout_id is not None:
            rows = self.store.read("SELECT * FROM payouts WHERE id = ?", (payout_id,))
        else:
            rows = self.store.read("SELECT * FROM payouts WHERE idempotency_key = ?", (key,))
        if not rows:
            raise SandboxError(404, "NOT_FOUND", "no payout was received under this identifier")
        return _payout_view(rows[0])

    def list_payouts(self) -> JSONObject:
        """Every instruction accepted, with proof of how often each key came and paid."""
        rows = self.store.read("SELECT * FROM payouts ORDER BY created_at, rowid")
        payouts = [_payout_view(row) for row in rows]
        paid_per_reference: dict[str, int] = {}
        for row in rows:
            if row["status"] in ("succeeded", "reversed"):
                paid_per_reference[row["reference"]] = paid_per_reference.get(row["reference"], 0) + 1
        return {
            "payouts": payouts,
            "summary": {
                "count": len(rows),
                "paid": sum(1 for row in rows if row["status"] == "succeeded"),
                "paid_amount": sum(row["amount"] for row in rows if row["status"] == "succeeded"),
                "failed": sum(1 for row in rows if row["status"] == "failed"),
                "reversed": sum(1 for row in rows if row["status"] == "reversed"),
                "received_total": sum(row["received_count"] for row in rows),
                "keys_received_more_than_once": sum(1 for row in rows if row["received_count"] > 1),
                "references_paid_more_than_once": sorted(
                    reference for reference, count in paid_per_reference.items() if count > 1
                ),
            },
        }

    def statement_csv(self) -> str:
        """The settlement statement: one row per instruction, amounts in the minor unit."""
        rows = self.store.read("SELECT * FROM payouts ORDER BY created_at, rowid")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(STATEMENT_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row["reference"],
                    row["idempotency_key"],
                    row["account"],
                    row["amount"],
                    row["currency"],
                    row["status"],
                    row["settled_at"] or "",
                ]
            )
        return buffer.getvalue()

    def list_callbacks(self) -> list[JSONObject]:
        """Every callback event emitted and how its delivery went."""
        rows = self.store.read("SELECT * FROM callbacks ORDER BY created_at, rowid")
        return [
            {
                "event_id": row["event_id"],
                "payout_id": row["payout_id"],
                "status": row["status"],
                "attempts": row["attempts"],
                "deliveries": row["deliveries"],
                "delivered_at": row["delivered_at"],
                "last_error": row["last_error"],
            }
            for row in rows
        ]

    # ----------------------------------------------------------------- wallets

    def upsert_wallet(
        self, *, account: str, holder_name: str, registered: bool, balance: int | None
    ) -> JSONObject:
        """Register or upgrade a wallet (the demo's worker upgrading to a registered one)."""
        if not _E164_ID.fullmatch(account):
            raise SandboxError(400, "INVALID_ACCOUNT", "account must be an E.164 +62 number")
        now = _iso(self._clock())
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO wallets (account, holder_name, registered, balance, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET"
                " holder_name = excluded.holder_name, registered = excluded.registered,"
                " updated_at = excluded.updated_at",
                (account, holder_name, int(registered), balance or 0, now, now),
            )
            if balance is not None:
                db.execute("UPDATE wallets SET balance = ? WHERE account = ?", (balance, account))
            row = db.execute("SELECT * FROM wallets WHERE account = ?", (account,)).fetchone()
        return _wallet_view(row)

    def get_wallet(self, account: str) -> JSONObject:
        """One wallet; 404 when the sandbox has never seen it."""
        rows = self.store.read("SELECT * FROM wallets WHERE account = ?", (account,))
        if not rows:
            raise SandboxError(404, "NOT_FOUND", "no such wallet")
        return _wallet_view(rows[0])

    def validate_account(self, *, channel: str, account: str, holder_name: str) -> JSONObject:
        """The aggregator's name inquiry: is this wallet there, and is it hers?"""
        if channel not in CHANNELS:
            return {"valid": False, "holder_name": None, "reason": "CHANNEL_NOT_SUPPORTED"}
        if not _E164_ID.fullmatch(account) or account in self.faults.invalid_accounts:
            return {"valid": False, "holder_name": None, "reason": "INVALID_ACCOUNT"}
        rows = self.store.read("SELECT * FROM wallets WHERE account = ?", (account,))
        if not rows or rows[0]["holder_name"] is None:
            return {"valid": True, "holder_name": None, "reason": None}
        known = rows[0]["holder_name"]
        if not _same_name(known, holder_name):
            return {"valid": False, "holder_name": known, "reason": "NAME_MISMATCH"}
        return {"valid": True, "holder_name": known, "reason": None}

    def set_float(self, balance: int | None) -> None:
        """Set (or, with None, lift) the provider balance that payouts draw on."""
        with self.store.transaction() as db:
            self._set_float(db, balance)

    def get_float(self) -> int | None:
        """The provider balance, None when unlimited."""
        with self.store.transaction() as db:
            return self._float(db)

    @staticmethod
    def _float(db: sqlite3.Connection) -> int | None:
        """Read the float inside the caller's transaction."""
        row = db.execute("SELECT value FROM settings WHERE name = 'float_balance'").fetchone()
        return None if row is None or row["value"] is None else int(row["value"])

    @staticmethod
    def _set_float(db: sqlite3.Connection, balance: int | None) -> None:
        """Write the float inside the caller's transaction."""
        db.execute(
            "INSERT INTO settings (name, value) VALUES ('float_balance', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (None if balance is None else str(balance),),
        )

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued callback and reversal has run (tests, demo)."""
        return self.dispatcher.wait_idle(timeout)

    def close(self) -> None:
        """Stop background delivery and release the database."""
        self.dispatcher.close()
        self.store.close()


# --------------------------------------------------------------------------- HTTP


def _error(status: int, error_code: str, message: str) -> JSONResponse:
    """The sandbox's error body, shaped like the aggregators'."""
    return JSONResponse({"error_code": error_code, "message": message}, status_code=status)


async def _json_object(request: Request) -> Mapping[str, object]:
    """The request body as a JSON object, or a 400."""
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise SandboxError(400, "INVALID_JSON", "body is not JSON") from exc
    if not isinstance(data, dict):
        raise SandboxError(400, "INVALID_JSON", "body must be a JSON object")
    return data


def _text(data: Mapping[str, object], name: str, *, required: bool = True) -> str:
    """A string field, within the usual length."""
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise SandboxError(400, "VALIDATION_ERROR", f"{name} must be a non-empty string")
    if len(value) > MAX_TEXT_LENGTH:
        raise SandboxError(400, "VALIDATION_ERROR", f"{name} is too long")
    return value


def _integer(data: Mapping[str, object], name: str) -> int:
    """An integer field; floats and digit strings are refused, money is never a float."""
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SandboxError(400, "VALIDATION_ERROR", f"{name} must be an integer")
    return value


def _instruction(key: str, data: Mapping[str, object]) -> PayoutInstruction:
    """Validate a payout body into an instruction the sandbox can carry out."""
    amount = _integer(data, "amount")
    if amount <= 0:
        raise SandboxError(400, "VALIDATION_ERROR", "amount must be positive")
    currency = _text(data, "currency")
    if currency != CURRENCY:
        raise SandboxError(400, "UNSUPPORTED_CURRENCY", "the sandbox pays IDR only")
    channel = _text(data, "channel")
    if channel not in CHANNELS:
        raise SandboxError(400, "CHANNEL_NOT_SUPPORTED", f"channel {channel} is not supported")
    callback_url = data.get("callback_url")
    if callback_url is not None and (
        not isinstance(callback_url, str) or not callback_url.startswith(("http://", "https://"))
    ):
        raise SandboxError(400, "VALIDATION_ERROR", "callback_url must be an http(s) URL")
    return PayoutInstruction(
        idempotency_key=key,
        reference=_text(data, "reference"),
        amount=amount,
        currency=currency,
        channel=channel,
        account=_text(data, "account"),
        account_holder_name=_text(data, "account_holder_name"),
        description=_text(data, "description", required=False),
        callback_url=callback_url,
    )


async def _stall(request: Request, seconds: float) -> None:
    """Hold the answer back until the client has given up, or ``seconds`` have passed."""
    deadline = anyio.current_time() + seconds
    while (remaining := deadline - anyio.current_time()) > 0:
        if await request.is_disconnected():
            return
        await anyio.sleep(min(0.05, remaining))


def sandbox_service(app: Starlette) -> SandboxService:
    """The service behind an app made by :func:`create_sandbox_app`."""
    service = app.state.sandbox
    if not isinstance(service, SandboxService):
        raise TypeError("this app was not made by create_sandbox_app")
    return service


def _routes(service: SandboxService) -> list[Route]:
    """The HTTP surface, thin over the service."""

    async def create_payout(request: Request) -> Response:
        """Take one instruction, applying the fault plan around the real work."""
        key = request.headers.get("idempotency-key", "").strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            return _error(400, "IDEMPOTENCY_KEY_REQUIRED", "send an Idempotency-Key of 1-100 chars")
        instruction = _instruction(key, await _json_object(request))
        fault = service.draw_request_fault()
        if fault == "rate_limit":
            response = _error(429, "RATE_LIMIT_EXCEEDED", "too many requests")
            response.headers["Retry-After"] = "1"
            return response
        if fault == "error_5xx":
            return _error(503, "SERVICE_UNAVAILABLE", "temporarily unavailable")
        if fault == "timeout_unpaid":
            await _stall(request, service.faults.stall_seconds)
            return _error(504, "GATEWAY_TIMEOUT", "upstream timed out")
        status, body = await run_in_threadpool(service.receive, instruction)
        if fault == "error_5xx_paid":
            return _error(503, "SERVICE_UNAVAILABLE", "temporarily unavailable")
        if fault == "timeout_paid":
            await _stall(request, service.faults.stall_seconds)
        return JSONResponse(body, status_code=status)

    async def list_or_find_payouts(request: Request) -> Response:
        """One payout by ``?idempotency_key=``, or the whole record with its summary."""
        key = request.query_params.get("idempotency_key")
        if key is not None:
            return JSONResponse(await run_in_threadpool(lambda: service.find_payout(key=key)))
        return JSONResponse(await run_in_threadpool(service.list_payouts))

    async def get_payout(request: Request) -> Response:
        """One payout by the sandbox id."""
        payout_id = str(request.path_params["payout_id"])
        return JSONResponse(await run_in_threadpool(lambda: service.find_payout(payout_id=payout_id)))

    async def reverse_payout(request: Request) -> Response:
        """A later reversal of a paid payout."""
        payout_id = str(request.path_params["payout_id"])
        return JSONResponse(await run_in_threadpool(service.reverse, payout_id))

    async def statement(request: Request) -> Response:
        """The settlement statement auditors reconcile against."""
        text = await run_in_threadpool(service.statement_csv)
        return Response(text, media_type="text/csv; charset=utf-8")

    async def upsert_wallet(request: Request) -> Response:
        """Register or upgrade a wallet."""
        data = await _json_object(request)
        registered = data.get("registered", False)
        if not isinstance(registered, bool):
            raise SandboxError(400, "VALIDATION_ERROR", "registered must be true or false")
        balance = None if data.get("balance") is None else _integer(data, "balance")
        if balance is not None and balance < 0:
            raise SandboxError(400, "VALIDATION_ERROR", "balance must not be negative")
        account = _text(data, "account")
        holder_name = _text(data, "holder_name")
        wallet = await run_in_threadpool(
            lambda: service.upsert_wallet(
                account=account, holder_name=holder_name, registered=registered, balance=balance
            )
        )
        return JSONResponse(wallet)

    async def get_wallet(request: Request) -> Response:
        """One wallet with its balance and limit."""
        account = str(request.path_params["account"])
        return JSONResponse(await run_in_threadpool(service.get_wallet, account))

    async def validate_account(request: Request) -> Response:
        """The name inquiry aggregators offer before paying."""
        data = await _json_object(request)
        channel = _text(data, "channel")
        account = _text(data, "account")
        holder_name = _text(data, "holder_name")
        result = await run_in_threadpool(
            lambda: service.validate_account(channel=channel, account=account, holder_name=holder_name)
        )
        return JSONResponse(result)

    async def get_faults(request: Request) -> Response:
        """The fault plan in force."""
        return JSONResponse(service.faults.to_json())

    async def put_faults(request: Request) -> Response:
        """Replace the fault plan."""
        data = await _json_object(request)
        try:
            plan = FaultPlan.from_json(data)
        except ValueError as exc:
            raise SandboxError(400, "VALIDATION_ERROR", str(exc)) from exc
        service.set_faults(plan)
        return JSONResponse(plan.to_json())

    async def get_float(request: Request) -> Response:
        """The provider balance payouts draw on."""
        return JSONResponse({"balance": await run_in_threadpool(service.get_float)})

    async def put_float(request: Request) -> Response:
        """Set or lift the provider balance."""
        data = await _json_object(request)
        balance = None if data.get("balance") is None else _integer(data, "balance")
        if balance is not None and balance < 0:
            raise SandboxError(400, "VALIDATION_ERROR", "balance must not be negative")
        await run_in_threadpool(service.set_float, balance)
        return JSONResponse({"balance": balance})

    async def callbacks(request: Request) -> Response:
        """Every callback event and how its delivery went."""
        return JSONResponse({"callbacks": await run_in_threadpool(service.list_callbacks)})

    async def health(request: Request) -> Response:
        """Liveness, for whoever waits for the server to start."""
        return JSONResponse({"ok": True})

    return [
        Route("/v1/payouts", create_payout, methods=["POST"]),
        Route("/v1/payouts", list_or_find_payouts, methods=["GET"]),
        Route("/v1/payouts/{payout_id}", get_payout, methods=["GET"]),
        Route("/v1/payouts/{payout_id}/reverse", reverse_payout, methods=["POST"]),
        Route("/v1/statement.csv", statement, methods=["GET"]),
        Route("/v1/wallets", upsert_wallet, methods=["POST"]),
        Route("/v1/wallets/{account}", get_wallet, methods=["GET"]),
        Route("/v1/accounts/validate", validate_account, methods=["POST"]),
        Route("/v1/faults", get_faults, methods=["GET"]),
        Route("/v1/faults", put_faults, methods=["PUT"]),
        Route("/v1/float", get_float, methods=["GET"]),
        Route("/v1/float", put_float, methods=["PUT"]),
        Route("/v1/callbacks", callbacks, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
    ]


async def _sandbox_error(request: Request, exc: Exception) -> Response:
    """Answer a refused request with its status and error code."""
    assert isinstance(exc, SandboxError)
    return _error(exc.status, exc.error_code, exc.message)


def create_sandbox_app(
    *,
    store_path: Path,
    callback_secret: bytes,
    faults: FaultPlan | None = None,
    clock: Clock = _utcnow,
    new_id: Callable[[str], str] = _new_id,
    send_callbacks: bool = True,
    callback_retry_delays: Sequence[float] = (0.5, 2.0, 5.0),
    callback_timeout: tuple[float, float] = (2.0, 5.0),
    callback_lanes: int = 4,
) -> Starlette:
    """Build the sandbox provider as an ASGI app over the SQLite file at ``store_path``."""
    service = SandboxService(
        store=SandboxStore(store_path),
        callback_secret=callback_secret,
        faults=faults or FaultPlan(),
        clock=clock,
        new_id=new_id,
        send_callbacks=send_callbacks,
        callback_retry_delays=callback_retry_delays,
        callback_timeout=callback_timeout,
        callback_lanes=callback_lanes,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.close()

    app = Starlette(
        routes=_routes(service),
        exception_handlers={SandboxError: _sandbox_error},
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.sandbox = service
    return app


def create_sandbox_app_from_env(environ: Mapping[str, str] | None = None) -> Starlette:
    """The app as ``uvicorn --factory`` or ``upah sandbox-provider`` runs it alone."""
    env = os.environ if environ is None else environ
    secret = env.get("UPAH_SANDBOX_CALLBACK_SECRET", "")
    if not secret:
        raise ValueError("set UPAH_SANDBOX_CALLBACK_SECRET to the secret callbacks are signed with")
    store = Path(env.get("UPAH_SANDBOX_STORE", "./upah-sandbox-provider.db"))
    return create_sandbox_app(
        store_path=store,
        callback_secret=secret.encode(),
        faults=FaultPlan.from_env(env),
    )
