"""Builders for payout scenarios, through the domain services on a real database."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from integrations import phones, signatures
from ledger import atomic, journal
from payments import deliveries, orders, parties, payouts, pii, rates
from payments.dispatch import Dispatcher
from payments.parties import OrganizationKind, Principal, Role
from payments.tables import PayoutRow

KEYRING = pii.Keyring.from_keys([pii.generate_key()])
_counter = iter(range(200_000, 10**6))


def admin() -> Principal:
    return Principal(key_id=0, role=Role.ADMIN, organization_id=None)


SANDBOX_SECRET = b"payments-test-sandbox-secret"
"""Signs the live sandbox's callbacks in the payout tests."""


def deliver_callback(
    dispatcher: Dispatcher, provider: str, *, headers: Mapping[str, str], body: bytes
) -> str:
    """A callback recorded as the endpoint records it, then applied as the worker's task applies
    it; what was done with it ("duplicate" for an event already recorded)."""
    recorded = dispatcher.record_callback(provider, headers=headers, body=body)
    return "duplicate" if recorded is None else dispatcher.apply_callback(recorded)


@dataclass
class Buyer:
    principal: Principal
    checker: Principal


def make_buyer(factory: sessionmaker[Session], *, funds: int = 100_000_000) -> Buyer:
    now = datetime.now(UTC)
    with atomic(factory) as s:
        org = parties.create_organization(
            s, name=f"buyer {uuid.uuid4().hex[:6]}", kind=OrganizationKind.BUYER, now=now
        )
        parties.record_deposit(
            s, principal=admin(), organization_id=org.id, amount=funds, reference=uuid.uuid4().hex, now=now
        )
        maker = parties.authenticate(
            s, parties.create_api_key(s, organization_id=org.id, role=Role.BUYER, now=now)
        )
        checker = parties.authenticate(
            s, parties.create_api_key(s, organization_id=org.id, role=Role.BUYER, now=now)
        )
    return Buyer(maker, checker)


def make_worker(
    factory: sessionmaker[Session],
    buyer: Buyer,
    *,
    wallet_registered: bool = False,
    keyring: pii.Keyring = KEYRING,
) -> int:
    now = datetime.now(UTC)
    number = phones.demo_number(next(_counter) % 100_000)
    with atomic(factory) as s:
        worker = parties.register_homeworker(
            s,
            principal=buyer.principal,
            keyring=keyring,
            name="Siti Aminah",
            phone=number,
            region="ID-JK",
            wallet_provider="dana",
            wallet_account=number,
            nik=None,
            consent_at=now,
            language="id",
            now=now,
        )
        if wallet_registered:
            parties.set_wallet_registered(
                s, principal=buyer.principal, homeworker_id=worker.id, registered=True
            )
    return worker.id


def deliver(factory: sessionmaker[Session], buyer: Buyer, worker_id: int, pieces: int) -> int:
    """An order of ``pieces`` at Rp 1 a piece for her, all delivered and awaiting confirmation."""
    now = datetime.now(UTC)
    with atomic(factory) as s:
        order = orders.post(
            s,
            principal=buyer.principal,
            reference=uuid.uuid4().hex[:12],
            product="test work",
            rate=Decimal(1),
            unit=rates.Unit.PIECE,
            minutes_per_piece=Decimal("0.01"),
            quantity=pieces,
            deadline=(now + timedelta(days=7)).date(),
            region="ID-JK",
            intermediary_id=None,
            commission=None,
            assignments=[orders.AssignmentRequest(worker_id, pieces)],
            policy=rates.FairRatePolicy.OFF,
            now=now,
        )
        return deliveries.record(
            s, principal=buyer.principal, order_id=order.id, homeworker_id=worker_id, pieces=pieces, now=now
        ).id


def earn(factory: sessionmaker[Session], buyer: Buyer, worker_id: int, amount: int) -> None:
    """Give her ``amount`` rupiah of confirmed piece work (rate Rp 1 per piece)."""
    delivery_id = deliver(factory, buyer, worker_id, amount)
    with atomic(factory) as s:
        deliveries.confirm(
            s,
            principal=buyer.principal,
            delivery_id=delivery_id,
            accepted=amount,
            rejected=0,
            reason=None,
            now=datetime.now(UTC),
        )


POLICY = payouts.RunPolicy(
    provider="sandbox", minimum_payout=1_000, approval_threshold=10**12, fee_per_payout=2_500
)


def run(
    factory: sessionmaker[Session], buyer: Buyer, policy: payouts.RunPolicy = POLICY
) -> payouts.PayoutRun:
    with atomic(factory) as s:
        return payouts.create_run(s, principal=buyer.principal, policy=policy, now=datetime.now(UTC))


def earned(factory: sessionmaker[Session], buyer: Buyer, worker: int) -> int:
    with factory() as s:
        account = parties.earnings_accounts(s, homeworker_id=worker, buyer_id=buyer.principal.organization_id)
        return sum(journal.balance(s, a).available for a in account.values())


def key_of(factory: sessionmaker[Session], payout_id: int) -> str:
    with factory() as s:
        return str(s.execute(select(PayoutRow.idempotency_key).where(PayoutRow.id == payout_id)).scalar_one())


def signed(body: dict[str, object]) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    return {"X-Sandbox-Signature": signatures.sign(SANDBOX_SECRET, raw, timestamp=int(time.time()))}, raw


def callback_body(payout_id: int, key: str, status: str, amount: int, event: str) -> dict[str, object]:
    return {
        "event_id": event,
        "id": f"sbx-{payout_id}",
        "reference": "r",
        "idempotency_key": key,
        "status": status,
        "amount": amount,
        "currency": "IDR",
        "failure_code": None,
    }


def failed_then_paid(
    factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer, worker: int
) -> payouts.Payout:
    """A payout the provider failed by callback, its money back in her earnings."""
    earn(factory, buyer, worker, 50_000)
    payout = run(factory, buyer).payouts[0]
    dispatcher.dispatch(payout.id)
    key = key_of(factory, payout.id)
    headers, raw = signed(callback_body(payout.id, key, "failed", 50_000, f"evt-failed-{payout.id}"))
    assert deliver_callback(dispatcher, "sandbox", headers=headers, body=raw) == "applied"
    assert earned(factory, buyer, worker) == 50_000
    return payout
