"""A dispatch task delivered twice (acks_late, the sweep, a batch's per-payout fallback), or a
status answer that overtakes the instruction, never fails, returns or resends a payout that
another attempt already sent (the sandbox adapter over `responses`, real PostgreSQL)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from integrations.providers.sandbox import SandboxProvider
from ledger import journal, reports
from payments import parties
from payments.dispatch import Dispatcher
from payments.payout_states import PayoutStatus
from payments.tables import PayoutRow
from tests.payments.scenario import KEYRING, Buyer, earn, make_worker, run

URL = "https://sandbox.provider.test"
PAYOUTS = f"{URL}/v1/payouts"
VALIDATE = f"{URL}/v1/accounts/validate"
ACCEPTED = json.dumps({"id": "po_1", "reference": "r", "status": "accepted"})
VALID = json.dumps({"valid": True, "holder_name": "Siti"})


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def dispatcher(pg_factory: sessionmaker[Session]) -> Dispatcher:
    return Dispatcher(
        sessions=pg_factory,
        providers={"sandbox": SandboxProvider(URL, b"secret")},
        keyring=KEYRING,
        clock=lambda: datetime.now(UTC),
        rng=random.Random(7),
    )


@pytest.fixture
def payout(pg_factory: sessionmaker[Session], buyer: Buyer) -> tuple[int, int]:
    """(payout id, homeworker id): Rp 50,000 in a run, to a wallet never paid before."""
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 50_000)
    return run(pg_factory, buyer).payouts[0].id, worker


def earned(factory: sessionmaker[Session], buyer: Buyer, worker: int) -> int:
    with factory() as s:
        accounts = parties.earnings_accounts(
            s, homeworker_id=worker, buyer_id=buyer.principal.organization_id
        )
        return sum(journal.balance(s, a).available for a in accounts.values())


def row(factory: sessionmaker[Session], payout_id: int) -> PayoutRow:
    with factory() as s:
        return s.execute(select(PayoutRow).where(PayoutRow.id == payout_id)).scalar_one()


def test_a_late_invalid_wallet_answer_never_fails_a_payout_another_delivery_sent(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    buyer: Buyer,
    payout: tuple[int, int],
) -> None:
    payout_id, worker = payout
    inner: dict[str, PayoutStatus] = {}
    asked = [0]

    def validate(request: Any) -> tuple[int, dict[str, str], str]:
        asked[0] += 1
        if asked[0] == 1:  # the first delivery waits for this answer; the second runs meanwhile
            inner["second"] = dispatcher.dispatch(payout_id)
            return 200, {}, json.dumps({"valid": False, "holder_name": None, "reason": "NAME_MISMATCH"})
        return 200, {}, VALID

    mocked.add_callback(responses.POST, VALIDATE, callback=validate)
    mocked.add(responses.POST, PAYOUTS, body=ACCEPTED, status=202)

    assert dispatcher.dispatch(payout_id) is PayoutStatus.SUBMITTED
    assert inner["second"] is PayoutStatus.SUBMITTED
    sent = row(pg_factory, payout_id)
    assert (sent.status, sent.provider_reference) == (PayoutStatus.SUBMITTED.value, "po_1")
    assert earned(pg_factory, buyer, worker) == 0  # not handed back to be paid a second time
    with pg_factory() as s:
        assert reports.check_integrity(s) == []


def test_a_wallet_check_outage_never_puts_a_sent_payout_back_on_the_send_schedule(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    payout: tuple[int, int],
) -> None:
    payout_id, _ = payout
    asked = [0]

    def validate(request: Any) -> tuple[int, dict[str, str], str]:
        asked[0] += 1
        if asked[0] == 1:
            assert dispatcher.dispatch(payout_id) is PayoutStatus.SUBMITTED
            return 503, {}, json.dumps({"error_code": "SERVICE_UNAVAILABLE"})
        return 200, {}, VALID

    mocked.add_callback(responses.POST, VALIDATE, callback=validate)
    mocked.add(responses.POST, PAYOUTS, body=ACCEPTED, status=202)

    assert dispatcher.dispatch(payout_id) is PayoutStatus.SUBMITTED
    sent = row(pg_factory, payout_id)
    assert (sent.status, sent.next_attempt_at) == (PayoutStatus.SUBMITTED.value, None)
    assert payout_id not in dispatcher.due()[0]


def test_a_not_found_answer_that_overtook_the_instruction_never_resends_it_once_acknowledged(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    payout: tuple[int, int],
) -> None:
    payout_id, _ = payout
    mocked.add(responses.POST, VALIDATE, body=VALID)
    mocked.get(PAYOUTS, json={"error_code": "NOT_FOUND", "message": "no"}, status=404)
    inner: dict[str, PayoutStatus] = {}

    def send(request: Any) -> tuple[int, dict[str, str], str]:
        inner["resolve"] = dispatcher.resolve(payout_id)  # asked before the provider recorded it
        return 202, {}, ACCEPTED

    mocked.add_callback(responses.POST, PAYOUTS, callback=send)
    assert dispatcher.dispatch(payout_id) is PayoutStatus.SUBMITTED
    assert inner["resolve"] is PayoutStatus.SUBMITTED
    acknowledged = row(pg_factory, payout_id)
    assert (acknowledged.provider_reference, acknowledged.next_attempt_at) == ("po_1", None)
    assert payout_id not in dispatcher.due()[0]


def test_a_not_found_answer_after_the_acknowledgement_leaves_it_unknown_never_resent(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    payout: tuple[int, int],
) -> None:
    payout_id, _ = payout
    mocked.add(responses.POST, VALIDATE, body=VALID)
    mocked.add(responses.POST, PAYOUTS, body=ACCEPTED, status=202)
    assert dispatcher.dispatch(payout_id) is PayoutStatus.SUBMITTED
    mocked.get(PAYOUTS, json={"error_code": "NOT_FOUND", "message": "no"}, status=404)
    assert dispatcher.resolve(payout_id) is PayoutStatus.UNKNOWN  # asked again later, never sent
    assert payout_id not in dispatcher.due()[0]
    assert len([c for c in mocked.calls if c.request.method == "POST" and c.request.url == PAYOUTS]) == 1


def test_a_rate_limited_resend_is_never_sent_again_once_a_status_answer_acknowledged_it(
    pg_factory: sessionmaker[Session], mocked: responses.RequestsMock, payout: tuple[int, int]
) -> None:
    """Timed out; 'not found', so resent with the key; while the resend is in flight the first
    instruction lands and a status answer records its reference; the resend meets a 429."""
    payout_id, _ = payout
    now = [datetime.now(UTC)]
    dispatcher = Dispatcher(
        sessions=pg_factory,
        providers={"sandbox": SandboxProvider(URL, b"secret")},
        keyring=KEYRING,
        clock=lambda: now[0],
        rng=random.Random(7),
    )
    mocked.add(responses.POST, VALIDATE, body=VALID)
    acknowledged = [False]
    posts: list[int] = []

    def by_key(request: Any) -> tuple[int, dict[str, str], str]:
        if acknowledged[0]:
            return 200, {}, ACCEPTED
        return 404, {}, json.dumps({"error_code": "NOT_FOUND", "message": "no payout"})

    def send(request: Any) -> tuple[int, dict[str, str], str]:
        posts.append(1)
        if len(posts) == 1:
            raise requests.exceptions.ReadTimeout("slow")
        if len(posts) == 2:
            acknowledged[0] = True
            assert dispatcher.resolve(payout_id) is PayoutStatus.SUBMITTED
            return 429, {"Retry-After": "1"}, json.dumps({"error_code": "RATE_LIMIT_EXCEEDED"})
        return 202, {}, ACCEPTED

    mocked.add_callback(responses.POST, PAYOUTS, callback=send)
    mocked.add_callback(responses.GET, PAYOUTS, callback=by_key)
    mocked.add(responses.GET, f"{PAYOUTS}/po_1", body=ACCEPTED)

    assert dispatcher.dispatch(payout_id) is PayoutStatus.UNKNOWN
    assert dispatcher.resolve(payout_id) is PayoutStatus.SUBMITTED  # never received: resend
    dispatcher.dispatch(payout_id)  # the resend, refused with 429
    assert row(pg_factory, payout_id).provider_reference == "po_1"
    now[0] += timedelta(minutes=5)
    assert payout_id not in dispatcher.due()[0]
    dispatcher.dispatch(payout_id)
    assert len(posts) == 2
