"""A live sandbox provider and a dispatcher paying through it, for the payout tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from integrations.providers.sandbox import SandboxProvider
from payments.dispatch import Dispatcher
from tests.payments.scenario import KEYRING, SANDBOX_SECRET, Buyer, make_buyer
from tests.sandbox import LiveSandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[LiveSandbox]:
    server = LiveSandbox(tmp_path, SANDBOX_SECRET, send_callbacks=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dispatcher(pg_factory: sessionmaker[Session], sandbox: LiveSandbox) -> Iterator[Dispatcher]:
    provider = SandboxProvider(sandbox.url, SANDBOX_SECRET, timeout=(1.0, 1.5))
    yield Dispatcher(
        sessions=pg_factory, providers={"sandbox": provider}, keyring=KEYRING, clock=lambda: datetime.now(UTC)
    )
    provider._session.close()


@pytest.fixture
def buyer(pg_factory: sessionmaker[Session]) -> Buyer:
    """A buyer organisation with funds and two keys (maker and checker)."""
    return make_buyer(pg_factory)
