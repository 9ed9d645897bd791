"""The three-way check and the pilot report, on a demo-sized book built over ten days."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from ledger import EntryDraft, Posting, atomic, journal
from payments import audit, parties, reports
from payments.errors import Forbidden
from payments.parties import Principal, Role
from payments.tables import (
    AdjustmentRow,
    DeliveryRow,
    DisputeRow,
    EarningsAccountRow,
    OrderRow,
    PayoutEventRow,
    PayoutRow,
)
from tests.audit.book import DemoBook, build
from tests.audit.conftest import SECRET
from tests.conftest import create_pg_database, drop_pg_database
from tests.sandbox import LiveSandbox
from upah.db import make_engine, make_session_factory
from upah.migrate import upgrade

PLATFORM = Principal(key_id=0, role=Role.AUDITOR, organization_id=None)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sessionmaker[Session], DemoBook]]:
    url = create_pg_database("upah_demo")
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    sandbox = LiveSandbox(Path(tmp_path_factory.mktemp("sandbox")), SECRET, send_callbacks=False)
    sandbox.start()
    try:
        book = build(factory, sandbox)
    finally:
        sandbox.stop()
    yield factory, book
    engine.dispose()
    drop_pg_database(url)


@pytest.fixture
def tampered(fresh_pg_url: str, tmp_path: Path) -> Iterator[tuple[sessionmaker[Session], DemoBook]]:
    engine = make_engine(fresh_pg_url)
    factory = make_session_factory(engine)
    sandbox = LiveSandbox(tmp_path, SECRET, send_callbacks=False)
    sandbox.start()
    try:
        book = build(factory, sandbox)
    finally:
        sandbox.stop()
    yield factory, book
    engine.dispose()


def scalar(factory: sessionmaker[Session], query: object) -> int:
    with factory() as s:
        return int(s.execute(query).scalar_one() or 0)  # type: ignore[call-overload]


# --- the three-way check ---------------------------------------------------------------------------------


def test_the_demo_book_agrees_three_ways(demo: tuple[sessionmaker[Session], DemoBook]) -> None:
    factory, book = demo
    with factory() as s:
        report = audit.three_way(s, principal=PLATFORM, start=None, end=None)
    assert report.ok, [d.message for line in report.lines for d in line.differences]
    assert len(report.lines) == 12
    stored = scalar(factory, select(func.sum(DeliveryRow.earning)))
    assert sum(line.agreed_earnings for line in report.lines) == stored
    assert sum(line.received for line in report.lines) == scalar(
        factory, select(func.sum(PayoutRow.amount)).where(PayoutRow.status == "succeeded")
    )
    advance = next(line for line in report.lines if line.homeworker_id == book.advance_worker)
    recovered = scalar(
        factory, select(func.sum(AdjustmentRow.amount)).where(AdjustmentRow.kind == "recovery")
    )
    assert advance.agreed_adjustments == 150_000 - recovered
    assert sum(line.owed_at_end for line in report.lines) == 0


def test_the_check_holds_over_a_period_with_opening_and_closing_owed(
    demo: tuple[sessionmaker[Session], DemoBook],
) -> None:
    factory, book = demo
    start, end = book.start + timedelta(days=2), book.start + timedelta(days=5, hours=12)
    with factory() as s:
        report = audit.three_way(s, principal=PLATFORM, start=start, end=end)
    assert report.ok, [d.message for line in report.lines for d in line.differences]
    assert any(line.owed_at_start > 0 for line in report.lines)
    still_owed = {line.homeworker_id for line in report.lines if line.owed_at_end > 0}
    assert still_owed == {book.workers[1], book.workers[9]}  # the failed payout, the reversed one


def test_a_buyer_sees_only_what_it_owes(demo: tuple[sessionmaker[Session], DemoBook]) -> None:
    factory, book = demo
    with factory() as s:
        report = audit.three_way(s, principal=book.buyers[1], start=None, end=None)
    assert {line.buyer_id for line in report.lines} == {book.buyers[1].organization_id}
    assert len(report.lines) == 4


def test_an_earning_nobody_agreed_is_listed(tampered: tuple[sessionmaker[Session], DemoBook]) -> None:
    factory, book = tampered
    worker, buyer = book.workers[5], book.buyers[1]
    now = datetime.now(UTC)
    with atomic(factory) as s:
        earned = s.execute(
            select(EarningsAccountRow.account_id).where(
                EarningsAccountRow.homeworker_id == worker,
                EarningsAccountRow.buyer_id == buyer.organization_id,
            )
        ).scalar_one()
        org = parties.get_organization(s, principal=buyer, organization_id=buyer.organization_id or 0)
        journal.post(
            s,
            EntryDraft(
                key="rogue-credit",
                postings=(
                    Posting.debit(org.available_account_id, 7_777, "IDR"),
                    Posting.credit(earned, 7_777, "IDR"),
                ),
                effective_at=now,
                description="a credit no order or adjustment explains",
            ),
            now=now,
        )
    with factory() as s:
        report = audit.three_way(s, principal=PLATFORM, start=None, end=None)
    [bad] = [line for line in report.lines if not line.ok]
    assert (bad.homeworker_id, bad.buyer_id) == (worker, buyer.organization_id)
    assert [(d.kind, d.amount) for d in bad.differences] == [("agreed_vs_ledger", 7_777)]


def test_a_payout_marked_paid_without_the_ledger_knowing_is_listed(
    tampered: tuple[sessionmaker[Session], DemoBook],
) -> None:
    factory, book = tampered
    with atomic(factory) as s:
        amount, worker = s.execute(
            select(PayoutRow.amount, PayoutRow.homeworker_id).where(PayoutRow.id == book.failed_payout)
        ).one()
        s.execute(
            insert(PayoutEventRow),
            {
                "payout_id": book.failed_payout,
                "from_status": "failed",
                "to_status": "succeeded",
                "source": "forged",
                "detail": {},
                "created_at": datetime.now(UTC),
            },
        )
    with factory() as s:
        report = audit.three_way(s, principal=PLATFORM, start=None, end=None)
    [bad] = [line for line in report.lines if not line.ok]
    assert bad.homeworker_id == worker
    assert [(d.kind, d.amount) for d in bad.differences] == [("ledger_vs_received_and_owed", -amount)]


def test_an_intermediarys_auditor_cannot_run_the_per_buyer_check(
    demo: tuple[sessionmaker[Session], DemoBook],
) -> None:
    factory, book = demo
    auditor = Principal(key_id=0, role=Role.AUDITOR, organization_id=book.intermediaries[0])
    with factory() as s, pytest.raises(Forbidden):
        audit.three_way(s, principal=auditor, start=None, end=None)


# --- the pilot report ------------------------------------------------------------------------------------


def test_the_pilot_report_follows_the_agreed_money_into_the_wallets(
    demo: tuple[sessionmaker[Session], DemoBook],
) -> None:
    factory, book = demo
    now = datetime.now(UTC)
    with factory() as s:
        report = reports.pilot(s, principal=PLATFORM, start=None, end=None, now=now)
    total = report.total
    earnings = scalar(factory, select(func.sum(DeliveryRow.earning)))
    adjustments = scalar(
        factory, select(func.sum(AdjustmentRow.amount)).where(AdjustmentRow.kind.in_(["advance", "bonus"]))
    )
    recovered = scalar(
        factory, select(func.sum(AdjustmentRow.amount)).where(AdjustmentRow.kind == "recovery")
    )
    paid = scalar(factory, select(func.sum(PayoutRow.amount)).where(PayoutRow.status == "succeeded"))
    assert total["agreed"] == earnings + adjustments - recovered
    assert total["received"] == paid
    assert (total["owed"], total["leakage"]) == (0, "0.0000")
    assert (
        total["deliveries"] == total["deliveries_paid"] == scalar(factory, select(func.count(DeliveryRow.id)))
    )
    waits = total["time_to_payment_seconds"]
    assert waits["count"] == total["deliveries"]
    assert timedelta(hours=12) < timedelta(seconds=waits["median"]) < timedelta(days=4)
    assert timedelta(days=3) < timedelta(seconds=waits["p95"]) < timedelta(days=7)
    assert waits["median"] <= waits["p95"]
    assert {g["key"] for g in report.by["region"]} == {
        "ID-JK",
        "ID-JI-KOTA-MALANG",
        "ID-SU-KOTA-MEDAN",
        "ID-YO-KOTA-YOGYAKARTA",
    }
    assert sum(g["agreed"] for g in report.by["buyer"]) == total["agreed"]
    assert sum(g["received"] for g in report.by["region"]) == total["received"]
    assert {g["key"] for g in report.by["intermediary"]} == {
        "direct",
        str(book.intermediaries[0]),
        str(book.intermediaries[1]),
    }
    assert report.payouts["by_status"]["succeeded"]["amount"] == paid
    assert report.payouts["by_status"]["failed"]["count"] == 1
    assert report.payouts["by_status"]["reversed"]["count"] == 1


def test_leakage_before_the_failed_and_reversed_payouts_were_repaid(
    demo: tuple[sessionmaker[Session], DemoBook],
) -> None:
    factory, book = demo
    end = book.start + timedelta(days=6)
    with factory() as s:
        report = reports.pilot(s, principal=PLATFORM, start=None, end=end, now=datetime.now(UTC))
        failed = s.execute(select(PayoutRow.amount).where(PayoutRow.id == book.failed_payout)).scalar_one()
        reversed_ = s.execute(
            select(PayoutRow.amount).where(PayoutRow.id == book.reversed_payout)
        ).scalar_one()
    total = report.total
    assert total["owed"] == failed + reversed_
    expected = (Decimal(failed + reversed_) / Decimal(total["agreed"])).quantize(Decimal("0.0001"))
    assert total["leakage"] == str(expected)
    assert total["deliveries_paid"] < total["deliveries"]


def test_the_share_of_work_meeting_the_benchmark(demo: tuple[sessionmaker[Session], DemoBook]) -> None:
    """Only the embroidered uppers (Rp 8,000 a pair at 12 minutes) pay the regional minimum."""
    factory, _book = demo
    with factory() as s:
        report = reports.pilot(s, principal=PLATFORM, start=None, end=None, now=datetime.now(UTC))
        uppers = s.execute(
            select(func.sum(DeliveryRow.accepted), func.sum(DeliveryRow.earning))
            .join(OrderRow, OrderRow.id == DeliveryRow.order_id)
            .where(OrderRow.product == "embroidered shoe uppers")
        ).one()
        every = s.execute(select(func.sum(DeliveryRow.accepted))).scalar_one()
    total = report.total
    assert total["pieces_meeting_benchmark"] == uppers[0]
    assert total["pieces_accepted"] == every
    assert total["share_meeting_benchmark"] == str(
        (Decimal(uppers[0]) / Decimal(every)).quantize(Decimal("0.0001"))
    )
    assert total["earnings_meeting_benchmark"] <= uppers[1]


def test_disputes_opened_and_resolved_are_counted(tampered: tuple[sessionmaker[Session], DemoBook]) -> None:
    factory, book = tampered
    now = datetime.now(UTC)
    with atomic(factory) as s:
        for n, resolved in enumerate((None, now, None)):
            s.execute(
                insert(DisputeRow),
                {
                    "reference": f"D{n}",
                    "homeworker_id": book.workers[n],
                    "buyer_id": book.buyers[0].organization_id,
                    "kind": "wrong_amount",
                    "channel": "ussd",
                    "status": "resolved" if resolved else "open",
                    "notes": [],
                    "created_at": now - timedelta(hours=1),
                    "resolved_at": resolved,
                },
            )
    with factory() as s:
        report = reports.pilot(s, principal=PLATFORM, start=None, end=None, now=now + timedelta(seconds=1))
    assert (report.total["disputes_opened"], report.total["disputes_resolved"]) == (3, 1)
    [first] = [g for g in report.by["buyer"] if g["key"] == str(book.buyers[0].organization_id)]
    assert first["disputes_opened"] == 3
    with atomic(factory) as s:
        auditor = Principal(key_id=0, role=Role.AUDITOR, organization_id=book.buyers[0].organization_id)
        notes = audit.add_dispute_note(
            s,
            principal=auditor,
            dispute_id=s.execute(select(func.min(DisputeRow.id))).scalar_one(),
            text="ok",
            now=now,
        )
    assert [n["text"] for n in notes] == ["ok"]


def test_a_buyer_gets_its_own_pilot_report_only(demo: tuple[sessionmaker[Session], DemoBook]) -> None:
    factory, book = demo
    with factory() as s:
        mine = reports.pilot(s, principal=book.buyers[2], start=None, end=None, now=datetime.now(UTC))
    assert [g["key"] for g in mine.by["buyer"]] == [str(book.buyers[2].organization_id)]
    assert mine.by["intermediary"] == [g for g in mine.by["intermediary"] if g["key"] == "direct"]


def test_an_intermediarys_auditor_sees_the_work_it_carried(
    demo: tuple[sessionmaker[Session], DemoBook],
) -> None:
    factory, book = demo
    auditor = Principal(key_id=0, role=Role.AUDITOR, organization_id=book.intermediaries[1])
    with factory() as s:
        report = reports.pilot(s, principal=auditor, start=None, end=None, now=datetime.now(UTC))
    assert [g["key"] for g in report.by["intermediary"]] == [str(book.intermediaries[1])]
    assert report.total["agreed"] > 0


def test_the_pilot_csv_holds_the_same_figures(demo: tuple[sessionmaker[Session], DemoBook]) -> None:
    factory, _book = demo
    with factory() as s:
        report = reports.pilot(s, principal=PLATFORM, start=None, end=None, now=datetime.now(UTC))
    rows = list(csv.DictReader(io.StringIO(reports.pilot_csv(report))))
    figure = {(r["dimension"], r["key"], r["metric"]): r["value"] for r in rows}
    assert figure[("total", "total", "agreed")] == str(report.total["agreed"])
    assert figure[("total", "total", "time_to_payment_seconds.p95")] == str(
        report.total["time_to_payment_seconds"]["p95"]
    )
    for g in report.by["region"]:
        assert figure[("region", g["key"], "leakage")] == (g["leakage"] or "")


def test_median_and_percentile_rules() -> None:
    assert reports.median([]) is None and reports.percentile([], 95) is None
    assert reports.median([5]) == 5 and reports.median([1, 2, 3, 10]) == 2
    values = list(range(1, 101))
    assert (reports.percentile(values, 95), reports.percentile(values, 50)) == (95, 50)
    assert reports.percentile([7, 9], 95) == 9
    assert reports.ratio(1, 3) == "0.3333" and reports.ratio(1, 0) is None


def test_the_pilot_report_holds_no_float(demo: tuple[sessionmaker[Session], DemoBook]) -> None:
    factory, _book = demo
    with factory() as s:
        report = reports.pilot(s, principal=PLATFORM, start=None, end=None, now=datetime.now(UTC))

    def walk(value: object) -> None:
        assert not isinstance(value, float)
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        if isinstance(value, list):
            for v in value:
                walk(v)

    walk(report.as_dict())
