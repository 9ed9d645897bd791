"""A demo-sized book, built through the real domain services over ten days (DOMAIN.md's story).

Three buyers, two intermediaries (Rp 100 per pair; 10% on top), twelve homeworkers in four
regions with six products at the reported rates; an advance of Rp 150,000 recovered from
later pay, an Eid bonus, 5% of one delivery rejected for smeared glue; payouts through the
real sandbox provider — one failing on an unregistered wallet's limit and paid after she
upgrades it, one reversed at the provider and paid again. Finally the ledger is sealed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import requests
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from integrations import phones, signatures
from integrations.providers.sandbox import SandboxProvider
from ledger import atomic, chain, sealing
from payments import adjustments, deliveries, orders, parties, payouts, rates
from payments.dispatch import Dispatcher
from payments.parties import OrganizationKind, Principal, Role
from payments.payout_states import PayoutStatus
from payments.tables import HomeworkerRow
from tests.audit.conftest import SECRET
from tests.payments.scenario import KEYRING, deliver_callback
from tests.sandbox import LiveSandbox

SIGNING_KEY = chain.load_private_key(chain.generate_private_key_text())
POLICY = payouts.RunPolicy(
    provider="sandbox", minimum_payout=1_000, approval_threshold=10**12, fee_per_payout=2_500
)
REGIONS = ["ID-JK", "ID-JI-KOTA-MALANG", "ID-SU-KOTA-MEDAN", "ID-YO-KOTA-YOGYAKARTA"]
_numbers = iter(range(50_000, 100_000))


class Clock:
    """Time that moves only when the story says so (each reading a second later)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def at(self, moment: datetime) -> datetime:
        self.now = moment
        return moment

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class DemoBook:
    start: datetime
    buyers: list[Principal]
    intermediaries: list[int]
    workers: list[int]
    payouts: list[int] = field(default_factory=list)
    failed_payout: int = 0
    reversed_payout: int = 0
    advance_worker: int = 0


def build(factory: sessionmaker[Session], sandbox: LiveSandbox, *, start: datetime | None = None) -> DemoBook:
    start = start or (datetime.now(UTC) - timedelta(days=10)).replace(
        hour=1, minute=0, second=0, microsecond=0
    )
    clock = Clock(start)
    provider = SandboxProvider(sandbox.url, SECRET, timeout=(1.0, 1.5))
    dispatcher = Dispatcher(sessions=factory, providers={"sandbox": provider}, keyring=KEYRING, clock=clock)
    admin = Principal(key_id=0, role=Role.ADMIN, organization_id=None)
    tag = uuid.uuid4().hex[:6]
    day = [start + timedelta(days=n) for n in range(11)]

    with atomic(factory) as s:
        now = clock.at(day[0])
        names = ["PT Sandal Tangerang", "CV Kok Malang", "PT Tekstil Medan"]
        buyers = []
        for name in names:
            org = parties.create_organization(s, name=f"{name} {tag}", kind=OrganizationKind.BUYER, now=now)
            parties.record_deposit(
                s, principal=admin, organization_id=org.id, amount=60_000_000, reference=f"dep-{tag}", now=now
            )
            key = parties.create_api_key(s, organization_id=org.id, role=Role.BUYER, now=now)
            buyers.append(parties.authenticate(s, key))
        middlemen = [
            parties.create_organization(s, name=f"{n} {tag}", kind=OrganizationKind.INTERMEDIARY, now=now).id
            for n in ("Perantara Cilincing", "Bengkel Singosari")
        ]
        workers: list[int] = []
        numbers: list[str] = []
        for i in range(12):
            number = phones.demo_number(next(_numbers))
            numbers.append(number)
            workers.append(
                parties.register_homeworker(
                    s,
                    principal=buyers[i // 4],
                    keyring=KEYRING,
                    name=f"Ibu {i}",
                    phone=number,
                    region=REGIONS[i % 4],
                    wallet_provider=["dana", "ovo", "gopay", "linkaja"][i % 4],
                    wallet_account=number,
                    nik=None,
                    consent_at=now,
                    language="id",
                    now=now,
                ).id
            )
        registered = [w for i, w in enumerate(workers) if i != 1]
        s.execute(
            update(HomeworkerRow).where(HomeworkerRow.id.in_(registered)).values(wallet_registered=True)
        )
    for i, number in enumerate(numbers):
        _wallet(sandbox, number, f"Ibu {i}", registered=i != 1)
    book = DemoBook(start, buyers, middlemen, workers)

    # Orders: two products per buyer, at the rates homeworkers report.
    products = [
        (
            0,
            "sandal insole gluing",
            "500",
            rates.Unit.PASANG,
            "3",
            rates.Commission.per_piece(Decimal(100)),
            0,
        ),
        (0, "embroidered shoe uppers", "8000", rates.Unit.PASANG, "12", None, None),
        (1, "shuttlecock feathers", "2000", rates.Unit.SLOP, "40", rates.Commission.percent(Decimal(10)), 1),
        (1, "buttonholes", "200", rates.Unit.PIECE, "2", None, None),
        (2, "pillowcases", "400", rates.Unit.PIECE, "6", None, None),
        (2, "baby blankets", "1250", rates.Unit.PIECE, "20", None, None),
    ]
    placed: list[tuple[int, int, list[int]]] = []
    with atomic(factory) as s:
        now = clock.at(day[0] + timedelta(hours=2))
        for b, product, rate, unit, minutes, commission, middleman in products:
            team = workers[b * 4 : b * 4 + 4]
            quantity = 400 if product == "embroidered shoe uppers" else 200
            order = orders.post(
                s,
                principal=buyers[b],
                reference=f"PO-{tag}-{len(placed)}",
                product=product,
                rate=Decimal(rate),
                unit=unit,
                minutes_per_piece=Decimal(minutes),
                quantity=quantity * len(team),
                deadline=(day[10] + timedelta(days=14)).date(),
                region=REGIONS[b],
                intermediary_id=middlemen[middleman] if middleman is not None else None,
                commission=commission,
                assignments=[orders.AssignmentRequest(w, quantity) for w in team],
                policy=rates.FairRatePolicy.WARN,
                now=now,
            )
            placed.append((b, order.id, team))
        book.advance_worker = workers[0]
        adjustments.add(
            s,
            principal=buyers[0],
            homeworker_id=workers[0],
            kind=adjustments.AdjustmentKind.ADVANCE,
            amount=150_000,
            memo="kasbon for school fees",
            now=now,
        )

    # Deliveries over three days; 5% of one rejected for smeared glue.
    for d in (1, 2, 3):
        with atomic(factory) as s:
            for n, (b, order_id, team) in enumerate(placed):
                for w in team:
                    pieces = 300 if (n == 1 and w == workers[1] and d == 1) else 20 + 5 * d + n
                    if n == 1 and w == workers[1] and d != 1:
                        continue
                    now = clock.at(day[d] + timedelta(hours=n, minutes=team.index(w)))
                    delivery = deliveries.record(
                        s, principal=buyers[b], order_id=order_id, homeworker_id=w, pieces=pieces, now=now
                    )
                    rejected = pieces // 20 if (n == 0 and w == workers[0] and d == 2) else 0
                    deliveries.confirm(
                        s,
                        principal=buyers[b],
                        delivery_id=delivery.id,
                        accepted=pieces - rejected,
                        rejected=rejected,
                        reason="lem belepotan" if rejected else None,
                        now=now + timedelta(hours=4),
                    )
    with atomic(factory) as s:
        now = clock.at(day[3] + timedelta(hours=12))
        for w in workers[8:12]:
            adjustments.add(
                s,
                principal=buyers[2],
                homeworker_id=w,
                kind=adjustments.AdjustmentKind.BONUS,
                amount=100_000,
                memo="THR Idul Fitri",
                now=now,
            )

    # Day 4: a payout run per buyer, sent through the sandbox.
    book.payouts += _pay(factory, dispatcher, clock, buyers, day[4])
    with factory() as s:
        failed = [
            p.id
            for b in buyers
            for p in payouts.list_for(s, principal=b, status=PayoutStatus.FAILED)
            if p.id in book.payouts
        ]
    [book.failed_payout] = failed

    # Day 5: the provider reverses one payout (a bounce-back) and tells us by callback.
    with factory() as s:
        paid = [payouts.get(s, principal=admin, payout_id=p) for p in book.payouts]
    reversed_row = next(p for p in paid if p.homeworker_id == workers[9])
    book.reversed_payout = reversed_row.id
    _reverse_at_provider(factory, sandbox, dispatcher, clock, reversed_row, day[5])

    # Day 6: she upgraded her wallet; day 7: a second run pays what is owed again.
    with atomic(factory) as s:
        s.execute(update(HomeworkerRow).where(HomeworkerRow.id == workers[1]).values(wallet_registered=True))
    _wallet(sandbox, numbers[1], "Ibu 1", registered=True)
    book.payouts += _pay(factory, dispatcher, clock, buyers, day[7])
    with atomic(factory) as s:
        while sealing.seal(s, now=clock.at(day[8]), signing_key=SIGNING_KEY, checkpoint_every=50):
            pass
        sealing.checkpoint(s, now=day[8], signing_key=SIGNING_KEY)
    provider._session.close()
    return book


def _wallet(sandbox: LiveSandbox, account: str, holder: str, *, registered: bool) -> None:
    requests.post(
        f"{sandbox.url}/v1/wallets",
        json={"account": account, "holder_name": holder, "registered": registered},
        timeout=5,
    ).raise_for_status()


def _pay(
    factory: sessionmaker[Session],
    dispatcher: Dispatcher,
    clock: Clock,
    buyers: list[Principal],
    when: datetime,
) -> list[int]:
    ids = []
    for b in buyers:
        with atomic(factory) as s:
            the_run = payouts.create_run(s, principal=b, policy=POLICY, now=clock.at(when))
        for p in the_run.payouts:
            ids.append(p.id)
            status = dispatcher.dispatch(p.id)
            if status is not PayoutStatus.FAILED:
                assert dispatcher.resolve(p.id) is PayoutStatus.SUCCEEDED
        when += timedelta(hours=1)
    return ids


def _reverse_at_provider(
    factory: sessionmaker[Session],
    sandbox: LiveSandbox,
    dispatcher: Dispatcher,
    clock: Clock,
    payout: payouts.Payout,
    when: datetime,
) -> None:
    from sqlalchemy import select

    from payments.tables import PayoutRow

    with factory() as s:
        key = s.execute(select(PayoutRow.idempotency_key).where(PayoutRow.id == payout.id)).scalar_one()
    sandbox_id = sandbox.get(f"/v1/payouts?idempotency_key={key}").json()["id"]
    requests.post(f"{sandbox.url}/v1/payouts/{sandbox_id}/reverse", timeout=5).raise_for_status()
    body = json.dumps(
        {
            "event_id": f"evt-rev-{payout.id}",
            "id": sandbox_id,
            "reference": payout.reference,
            "idempotency_key": key,
            "status": "reversed",
            "amount": payout.amount,
            "currency": "IDR",
            "failure_code": None,
        }
    ).encode()
    clock.at(when)
    headers = {"X-Sandbox-Signature": signatures.sign(SECRET, body, timestamp=int(when.timestamp()))}
    assert deliver_callback(dispatcher, "sandbox", headers=headers, body=body) == "applied"
