"""Request-scoped dependencies: the runtime, a database session, the calling principal."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from api.metrics import Metrics
from integrations.rate_limit import RateLimiter
from ledger import atomic
from payments import parties, payouts, pii
from payments.dispatch import Dispatcher
from payments.parties import Principal
from upah.settings import Settings

Kick = Callable[[], None]
"""Ask the workers to relay the outbox now (after a commit that added to it)."""


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

    def transaction(self) -> AbstractContextManager[Session]:
        """One use-case, one transaction: committed once when the block ends, or rolled back."""
        return atomic(self.sessions)

    def read(self) -> Session:
        return self.sessions()


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def principal(request: Request, rt: RuntimeDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    with rt.sessions() as s:
        return parties.authenticate(s, token.strip() if scheme.lower() == "bearer" else None)


PrincipalDep = Annotated[Principal, Depends(principal)]


def now(rt: RuntimeDep) -> datetime:
    return rt.clock()


NowDep = Annotated[datetime, Depends(now)]
