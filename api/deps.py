"""Request-scoped dependencies: the runtime, a database session, the calling principal.

The dependencies are ``async``: pure ones (the runtime, the clock) then run on the event
loop instead of costing a hop to the thread pool each, and the principal is found in a
short-lived in-process cache (:class:`KeyCache`) before the database is asked, in a thread.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from anyio import to_thread
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.metrics import Metrics
from integrations.rate_limit import RateLimiter
from ledger import atomic
from payments import parties, payouts, pii
from payments.dispatch import Dispatcher
from payments.errors import Unauthorized
from payments.parties import Principal
from upah.settings import Settings

T = TypeVar("T")

Kick = Callable[[], None]
"""Ask the workers to relay the outbox now (after a commit that added to it)."""

AUTH_CACHE_SECONDS = 2.0
"""How long one process trusts an API key it has authenticated: a revoked key (or one whose
role or organisation changed) is refused by every process at most this long after the change."""


class KeyCache:
    """Principals of recently authenticated API keys, per process, for ``ttl`` seconds.

    Keyed by the SHA-256 of the whole bearer token (never the token itself); only successful
    authentications are kept, so a wrong or revoked key always reaches the database and its
    constant-time check. Bounded: when full, expired entries go, and if none had, all do.
    Used from the event loop only (no lock needed).
    """

    def __init__(
        self,
        ttl: float = AUTH_CACHE_SECONDS,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[bytes, tuple[float, Principal]] = {}

    def get(self, digest: bytes) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del self._entries[digest]
            return None
        return entry[1]

    def put(self, digest: bytes, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        now = self._clock()
        if len(self._entries) >= self.max_entries:
            self._entries = {d: e for d, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[digest] = (now + self.ttl, principal)

    def clear(self) -> None:
        self._entries.clear()


@dataclass
class Runtime:
    """Everything a request needs, built once per app by ``create_app``."""

    settings: Settings
    sessions: sessionmaker[Session]
    keyring: pii.Keyring
    metrics: Metrics
    run_policy: payouts.RunPolicy
    dispatcher: Dispatcher | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    kick: Kick | None = None
    limiter: RateLimiter | None = None
    """Per-phone request limits for the gateway channels (Redis, else memory)."""
    signing_public_key: str = ""
    """PEM of the key that signs ledger checkpoints, published at GET /v1/ledger/public-key."""
    keys: KeyCache = field(default_factory=KeyCache)
    """API keys this process authenticated in the last ``AUTH_CACHE_SECONDS``."""

    def transaction(self) -> AbstractContextManager[Session]:
        """One use-case, one transaction: committed once when the block ends, or rolled back."""
        return atomic(self.sessions)

    async def run(self, work: Callable[[Session], T]) -> T:
        """``work`` as one use-case in one trip to the thread pool, from an ``async`` endpoint.

        A plain ``def`` endpoint with a response model costs two trips: FastAPI runs it in
        the pool and then validates its answer in the pool again. Here the blocking part —
        the whole transaction — is the only thing that leaves the event loop.
        """

        def in_transaction() -> T:
            with self.transaction() as session:
                return work(session)

        return await to_thread.run_sync(in_transaction)

    def read(self) -> Session:
        return self.sessions()


async def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def _authenticate(rt: Runtime, token: str | None) -> Principal:
    with rt.sessions() as s:
        return parties.authenticate(s, token)


async def authenticate(rt: Runtime, header: str) -> Principal:
    """The caller an ``Authorization`` header names (``Bearer <key>``, any case), or
    :class:`Unauthorized`. The one reading of the header: the endpoints' and the idempotency
    layer's, so that one caller is one caller to both."""
    scheme, _, token = header.partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else None
    if not bearer:
        raise Unauthorized("missing or malformed API key")
    digest = hashlib.sha256(bearer.encode()).digest()
    cached = rt.keys.get(digest)
    if cached is not None:
        return cached
    found = await to_thread.run_sync(_authenticate, rt, bearer)
    rt.keys.put(digest, found)
    return found


BEARER = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <key>`")


async def principal(
    request: Request,
    rt: RuntimeDep,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Principal:
    """``_declared`` puts the bearer scheme in the published schema; ``authenticate`` reads the
    header itself (the idempotency layer reads it the same way)."""
    return await authenticate(rt, request.headers.get("authorization", ""))


PrincipalDep = Annotated[Principal, Depends(principal)]


async def now(rt: RuntimeDep) -> datetime:
    return rt.clock()


NowDep = Annotated[datetime, Depends(now)]
