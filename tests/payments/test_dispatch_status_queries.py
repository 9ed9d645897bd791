"""Asking a provider about a payout never sends it again, and asks less often the longer it
is pending (the sandbox adapter over `responses`, real PostgreSQL)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import requests
import responses
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from integrations.providers.base import CALLBACK_QUERY_HEADER
from integrations.providers.mpesa_b2c import MpesaB2CProvider
from integrations.providers.sandbox import SandboxProvider
from payments import outbox
from payments.dispatch import FIRST_POLL, Dispatcher
from payments.payout_states import PayoutStatus
from payments.tables import OutboxRow, PayoutRow
from tests.payments.scenario import KEYRING, Buyer, deliver_callback, earn, make_worker, run

URL = "https://sandbox.provider.test"
PAYOUTS = f"{URL}/v1/payouts"
REFERENCE = "po_1"
ACCEPTED = {"id": REFERENCE, "reference": "r", "status": "accepted"}
PENDING = {"id": REFERENCE, "reference": "r", "status": "pending"}


class Clock:
    """The dispatcher's time, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{URL}/v1/accounts/validate", json={"valid": True, "holder_name": "Siti"})
        yield mock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dispatcher(pg_factory: sessionmaker[Session], clock: Clock) -> Dispatcher:
    return Dispatcher(
        sessions=pg_factory,
        providers={"sandbox": SandboxProvider(URL, b"secret")},
        keyring=KEYRING,
        clock=clock,
        rng=random.Random(7),
    )


@pytest.fixture
def submitted(
    pg_factory: sessionmaker[Session], mocked: responses.RequestsMock, dispatcher: Dispatcher, buyer: Buyer
) -> int:
    """A payout the provider accepted: submitted, with its reference, its first question queued."""
    payout_id = a_payout(pg_factory, buyer)
    accepted(mocked, dispatcher, payout_id)
    return payout_id


@pytest.fixture
def unknown(
    pg_factory: sessionmaker[Session], mocked: responses.RequestsMock, dispatcher: Dispatcher, buyer: Buyer
) -> int:
    """A payout whose instruction timed out: unknown, its first question queued."""
    payout_id = a_payout(pg_factory, buyer)
    mocked.post(PAYOUTS, body=requests.exceptions.ReadTimeout("slow"))
    assert dispatcher.dispatch(payout_id) is PayoutStatus.UNKNOWN
    return payout_id


def a_payout(pg_factory: sessionmaker[Session], buyer: Buyer) -> int:
    earn(pg_factory, buyer, make_worker(pg_factory, buyer), 50_000)
    return run(pg_factory, buyer).payouts[0].id


def accepted(mocked: responses.RequestsMock, dispatcher: Dispatcher, payout_id: int) -> None:
    mocked.post(PAYOUTS, json=ACCEPTED, status=202)
    assert dispatcher.dispatch(payout_id) is PayoutStatus.SUBMITTED


def instructions_sent(mocked: responses.RequestsMock) -> int:
    return sum(1 for c in mocked.calls if c.request.method == "POST" and c.request.url == PAYOUTS)


def queued(pg_factory: sessionmaker[Session], payout_id: int, topic: str) -> list[datetime]:
    """When each of the payout's queued messages of ``topic`` becomes due."""
    with pg_factory() as s:
        rows = s.execute(
            select(OutboxRow.payload, OutboxRow.available_at)
            .where(OutboxRow.topic == topic, OutboxRow.relayed_at.is_(None))
            .order_by(OutboxRow.id)
        ).all()
    return [r.available_at for r in rows if r.payload.get("payout_id") == payout_id]


def next_question(pg_factory: sessionmaker[Session], payout_id: int) -> datetime:
    return queued(pg_factory, payout_id, outbox.RESOLVE_PAYOUT)[-1]


def payout_row(pg_factory: sessionmaker[Session], payout_id: int) -> PayoutRow:
    with pg_factory() as s:
        return s.execute(select(PayoutRow).where(PayoutRow.id == payout_id)).scalar_one()


def test_a_rate_limited_status_query_never_sends_a_submitted_payout_again(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    submitted: int,
) -> None:
    payout_id = submitted
    mocked.get(f"{PAYOUTS}/{REFERENCE}", status=429, headers={"Retry-After": "5"})
    assert dispatcher.resolve(payout_id) is PayoutStatus.SUBMITTED
    clock.advance(timedelta(hours=1))
    resend, _ = dispatcher.due()
    assert payout_id not in resend
    assert dispatcher.dispatch(payout_id) is PayoutStatus.SUBMITTED
    assert instructions_sent(mocked) == 1
    assert queued(pg_factory, payout_id, outbox.DISPATCH_PAYOUT) == []


def test_a_rate_limited_status_query_asks_again_no_sooner_than_retry_after(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    submitted: int,
) -> None:
    payout_id = submitted
    mocked.get(f"{PAYOUTS}/{REFERENCE}", status=429, headers={"Retry-After": "120"})
    asked_at = clock.now
    dispatcher.resolve(payout_id)
    assert next_question(pg_factory, payout_id) >= asked_at + timedelta(seconds=120)
    assert payout_row(pg_factory, payout_id).next_attempt_at is None


def test_a_rate_limited_status_query_leaves_an_unknown_payout_unknown_and_asks_again(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    unknown: int,
) -> None:
    payout_id = unknown
    mocked.get(PAYOUTS, status=429, headers={"Retry-After": "60"})
    assert dispatcher.resolve(payout_id) is PayoutStatus.UNKNOWN
    question = next_question(pg_factory, payout_id)
    assert question >= clock.now + timedelta(seconds=60)  # not sooner than Retry-After
    clock.advance(timedelta(seconds=61))
    assert payout_id not in dispatcher.due()[1]  # its queued question asks; the sweep would double it
    clock.advance(dispatcher.stale_after)
    resend, ask = dispatcher.due()  # that question was lost: the sweep asks
    assert payout_id in ask
    assert payout_id not in resend
    assert instructions_sent(mocked) == 1


def test_a_payout_pending_for_longer_is_asked_about_less_often(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    submitted: int,
) -> None:
    payout_id = submitted
    mocked.get(f"{PAYOUTS}/{REFERENCE}", json=PENDING)
    waits: list[timedelta] = []
    for _ in range(8):  # each question asked when it falls due
        clock.now = next_question(pg_factory, payout_id)
        assert dispatcher.resolve(payout_id) is PayoutStatus.SUBMITTED
        waits.append(next_question(pg_factory, payout_id) - clock.now)
    assert waits[0] >= FIRST_POLL
    assert waits[-1] > 10 * waits[0]
    assert max(waits) <= dispatcher.max_backoff


def test_a_pending_payout_is_asked_about_at_most_every_max_backoff(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    submitted: int,
) -> None:
    payout_id = submitted
    mocked.get(f"{PAYOUTS}/{REFERENCE}", json=PENDING)
    clock.advance(timedelta(days=2))
    dispatcher.resolve(payout_id)
    wait = next_question(pg_factory, payout_id) - clock.now
    assert dispatcher.max_backoff / 2 <= wait <= dispatcher.max_backoff


def test_the_sweep_leaves_a_pending_payout_to_its_queued_question(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    submitted: int,
) -> None:
    payout_id = submitted
    mocked.get(f"{PAYOUTS}/{REFERENCE}", json=PENDING)
    clock.advance(timedelta(hours=1))
    dispatcher.resolve(payout_id)
    due_at = next_question(pg_factory, payout_id)
    clock.now = due_at - timedelta(seconds=1)
    assert payout_id not in dispatcher.due()[1]


def test_the_sweep_asks_about_a_pending_payout_whose_question_was_lost(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    submitted: int,
) -> None:
    payout_id = submitted
    mocked.get(f"{PAYOUTS}/{REFERENCE}", json=PENDING)
    clock.advance(timedelta(hours=1))
    dispatcher.resolve(payout_id)  # the next question is queued within max_backoff; then lost
    clock.advance(dispatcher.max_backoff + dispatcher.stale_after)
    resend, ask = dispatcher.due()
    assert payout_id in ask
    assert payout_id not in resend


def test_the_sweep_asks_about_a_submitted_payout_whose_answer_was_never_applied(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    buyer: Buyer,
) -> None:
    payout_id = a_payout(pg_factory, buyer)
    mocked.post(PAYOUTS, body=RuntimeError("the worker died mid-send"))
    with pytest.raises(RuntimeError):
        dispatcher.dispatch(payout_id)
    assert payout_row(pg_factory, payout_id).status == PayoutStatus.SUBMITTED.value
    clock.advance(dispatcher.stale_after)
    assert payout_id not in dispatcher.due()[1]
    clock.advance(FIRST_POLL)
    assert payout_id in dispatcher.due()[1]


def test_a_retry_after_longer_than_max_backoff_delays_the_resend_that_long(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    buyer: Buyer,
) -> None:
    payout_id = a_payout(pg_factory, buyer)
    mocked.post(PAYOUTS, status=429, headers={"Retry-After": "3600"})
    sent_at = clock.now
    assert dispatcher.dispatch(payout_id) is PayoutStatus.SUBMITTED
    assert dispatcher.max_backoff < timedelta(seconds=3600)
    [resend_at] = queued(pg_factory, payout_id, outbox.DISPATCH_PAYOUT)
    assert resend_at >= sent_at + timedelta(seconds=3600)
    clock.advance(timedelta(seconds=3599))
    assert payout_id not in dispatcher.due()[0]


def test_a_payout_the_provider_acknowledged_and_no_longer_finds_is_never_sent_again(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    submitted: int,
) -> None:
    payout_id = submitted
    mocked.get(f"{PAYOUTS}/{REFERENCE}", status=404, json={"error_code": "NOT_FOUND"})
    assert dispatcher.resolve(payout_id) is PayoutStatus.UNKNOWN
    clock.advance(timedelta(hours=1))
    resend, _ = dispatcher.due()
    assert payout_id not in resend
    assert instructions_sent(mocked) == 1
    assert queued(pg_factory, payout_id, outbox.DISPATCH_PAYOUT) == []


def test_a_second_delivery_of_an_unknown_payouts_question_asks_nothing(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    unknown: int,
) -> None:
    payout_id = unknown
    mocked.get(PAYOUTS, json=PENDING)
    clock.now = next_question(pg_factory, payout_id)
    assert dispatcher.resolve(payout_id, queued=True) is PayoutStatus.UNKNOWN
    questions = queued(pg_factory, payout_id, outbox.RESOLVE_PAYOUT)
    assert dispatcher.resolve(payout_id, queued=True) is PayoutStatus.UNKNOWN  # delivered again
    assert queued(pg_factory, payout_id, outbox.RESOLVE_PAYOUT) == questions  # no second chain
    assert sum(1 for c in mocked.calls if c.request.method == "GET") == 1
    assert instructions_sent(mocked) == 1


def test_an_unknown_payouts_question_asked_on_demand_leaves_one_chain_of_questions(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    unknown: int,
) -> None:
    payout_id = unknown
    first = next_question(pg_factory, payout_id)
    mocked.get(PAYOUTS, json=PENDING)
    assert dispatcher.resolve(payout_id) is PayoutStatus.UNKNOWN  # asked now (a person, a test)
    clock.now = first
    assert dispatcher.resolve(payout_id, queued=True) is PayoutStatus.UNKNOWN  # the older question
    assert sum(1 for c in mocked.calls if c.request.method == "GET") == 1


def test_a_wallet_check_down_for_long_is_tried_less_and_less_often(
    pg_factory: sessionmaker[Session],
    mocked: responses.RequestsMock,
    dispatcher: Dispatcher,
    clock: Clock,
    buyer: Buyer,
) -> None:
    mocked.replace(responses.POST, f"{URL}/v1/accounts/validate", status=503)
    payout_id = a_payout(pg_factory, buyer)
    waits = []
    for _ in range(8):
        assert dispatcher.dispatch(payout_id) is PayoutStatus.CREATED
        due = payout_row(pg_factory, payout_id).next_attempt_at
        assert due is not None
        waits.append((due - clock.now).total_seconds())
        clock.now = due
    assert waits[0] <= 0.5 and waits[-1] >= 30
    assert waits == sorted(waits)
    assert instructions_sent(mocked) == 0


MPESA_TOKEN = "mpesa-url-token"


def daraja_status_result(code: int) -> bytes:
    """A Daraja transaction-status result, which comes as a callback to our result URL."""
    result = {
        "ResultType": 0,
        "ResultCode": code,
        "ResultDesc": "no such transaction",
        "OriginatorConversationID": "x",
        "ConversationID": "AG_status_1",
        "TransactionID": "T",
    }
    return json.dumps({"Result": result}).encode()


def test_a_status_callback_saying_it_never_arrived_sends_it_again_with_the_same_key(
    pg_factory: sessionmaker[Session], unknown: int, clock: Clock
) -> None:
    mpesa = MpesaB2CProvider(
        consumer_key="k",
        consumer_secret="s",
        initiator_name="i",
        security_credential="c",
        shortcode="600978",
        result_url="https://upah.example/cb",
        queue_timeout_url="https://upah.example/cb",
        callback_token=MPESA_TOKEN,
        not_found_result_codes=frozenset({"2032"}),
        name="sandbox",  # serving the payouts made above
    )
    receiving = Dispatcher(sessions=pg_factory, providers={"sandbox": mpesa}, keyring=KEYRING, clock=clock)
    key = payout_row(pg_factory, unknown).idempotency_key
    query = urlencode({"upah_token": MPESA_TOKEN, "upah_key": key, "upah_kind": "status"})
    headers = {CALLBACK_QUERY_HEADER: query}
    answered = deliver_callback(receiving, "sandbox", headers=headers, body=daraja_status_result(2032))
    assert answered == "resend"
    row = payout_row(pg_factory, unknown)
    assert (row.status, row.idempotency_key) == (PayoutStatus.SUBMITTED.value, key)
    assert unknown in receiving.due()[0]
