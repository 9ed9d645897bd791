"""Real payouts for the auditors' tests: the sandbox provider over HTTP, dispatch on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from integrations.providers.sandbox import SandboxProvider
from ledger import atomic
from payments import parties
from payments.dispatch import Dispatcher
from payments.parties import Principal, Role
from payments.payout_states import PayoutStatus
from payments.tables import PayoutRow
from tests.api.conftest import (  # noqa: F401  (fixtures shared with the API tests)
    admin,
    api_settings,
    buyer,
    client,
    intermediary,
    other_buyer,
)
from tests.payments.scenario import KEYRING, Buyer, earn, make_buyer, make_worker, run
from tests.sandbox import LiveSandbox

SECRET = b"audit-test-secret"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[LiveSandbox]:
    server = LiveSandbox(tmp_path, SECRET, send_callbacks=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dispatcher(pg_factory: sessionmaker[Session], sandbox: LiveSandbox) -> Iterator[Dispatcher]:
    provider = SandboxProvider(sandbox.url, SECRET, timeout=(1.0, 1.5))
    yield Dispatcher(
        sessions=pg_factory, providers={"sandbox": provider}, keyring=KEYRING, clock=lambda: datetime.now(UTC)
    )
    provider._session.close()


@pytest.fixture
def payer(pg_factory: sessionmaker[Session]) -> Buyer:
    return make_buyer(pg_factory)


def auditor_of(factory: sessionmaker[Session], organization_id: int | None) -> Principal:
    with atomic(factory) as s:
        key = parties.create_api_key(
            s, organization_id=organization_id, role=Role.AUDITOR, now=datetime.now(UTC)
        )
        return parties.authenticate(s, key)


def pay(
    factory: sessionmaker[Session], dispatcher: Dispatcher, payer: Buyer, amounts: list[int]
) -> list[PayoutRow]:
    """One homeworker per amount, each paid her earnings in one run, through the sandbox."""
    workers = [make_worker(factory, payer) for _ in amounts]
    for worker, amount in zip(workers, amounts, strict=True):
        earn(factory, payer, worker, amount)
    the_run = run(factory, payer)
    for p in the_run.payouts:
        dispatcher.dispatch(p.id)
        assert dispatcher.resolve(p.id) is PayoutStatus.SUCCEEDED
    return rows(factory, [p.id for p in the_run.payouts])


def rows(factory: sessionmaker[Session], ids: list[int]) -> list[PayoutRow]:
    with factory() as s:
        found = {r.id: r for r in s.execute(select(PayoutRow).where(PayoutRow.id.in_(ids))).scalars()}
        for r in found.values():
            s.expunge(r)
    return [found[i] for i in ids]
