"""Reconciling the sandbox provider's real statement against real payouts, on PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ledger import atomic
from payments import reconciliation
from payments.dispatch import Dispatcher
from payments.errors import InvalidState, NotFound, ValidationFailed
from payments.parties import Principal
from payments.payout_states import PayoutStatus
from payments.reconciliation import NoteAction, ReconClass, Source
from payments.tables import ReconciliationRunRow
from tests.audit.conftest import auditor_of, pay
from tests.audit.statements import SANDBOX_HEADER, sandbox_csv, sandbox_row
from tests.payments.scenario import KEYRING, Buyer, earn, make_buyer, make_worker, run
from tests.sandbox import LiveSandbox


def statement_of(sandbox: LiveSandbox) -> str:
    return sandbox.get("/v1/statement.csv").text


def reconcile(
    factory: sessionmaker[Session], text_: str, principal: Principal | None, **options: object
) -> reconciliation.Run:
    parsed = reconciliation.parse_statement(text_, provider="sandbox")
    with atomic(factory) as s:
        return reconciliation.reconcile(
            s,
            statement=parsed,
            principal=principal,
            source=Source.API,
            keyring=KEYRING,
            now=datetime.now(UTC),
            **options,  # type: ignore[arg-type]
        )


def edit(statement: str, change: object) -> str:
    """Rewrite the statement's rows with ``change(rows) -> rows`` (header kept)."""
    rows = list(csv.reader(io.StringIO(statement)))
    assert tuple(rows[0]) == SANDBOX_HEADER
    return sandbox_csv(change(rows[1:]))  # type: ignore[operator]


def test_a_clean_statement_matches_every_payout(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, payer: Buyer
) -> None:
    paid = pay(pg_factory, dispatcher, payer, [125_000, 80_000, 42_500])
    auditor = auditor_of(pg_factory, payer.principal.organization_id)
    result = reconcile(pg_factory, statement_of(sandbox), auditor)
    assert result.summary["matched"] == 3
    assert all(result.summary[c.value] == 0 for c in reconciliation.EXCEPTION_CLASSES)
    assert result.exceptions == []
    assert result.lines == 3
    with pg_factory() as s:
        matches = s.execute(
            select(ReconciliationRunRow.matches).where(ReconciliationRunRow.id == result.id)
        ).scalar_one()
    assert sorted(pid for _line, pid in json.loads(matches)) == sorted(p.id for p in paid)


def test_every_exception_class_from_real_payouts_and_an_edited_statement(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, payer: Buyer
) -> None:
    a, b, c, d, e, f = pay(
        pg_factory, dispatcher, payer, [100_000, 200_000, 300_000, 400_000, 500_000, 600_000]
    )
    # e is reversed at the provider (a bounce-back) and nobody told us: the ledger still says succeeded.
    sandbox_id = sandbox.get(f"/v1/payouts?idempotency_key={e.idempotency_key}").json()["id"]
    requests.post(f"{sandbox.url}/v1/payouts/{sandbox_id}/reverse", timeout=5).raise_for_status()

    def tamper(rows: list[list[str]]) -> list[list[str]]:
        out = []
        for row in rows:
            if row[0] == b.reference:
                row = [*row[:3], str(int(row[3]) + 1_000), *row[4:]]  # amount_mismatch
            if row[0] == d.reference:
                continue  # missing_at_provider
            out.append(row)
            if row[0] == c.reference:
                out.append(list(row))  # duplicate
        out.append(sandbox_row("UPHFFFFFFFFFF", "upah-payout-stranger", 77_000, at=datetime.now(UTC)))
        return out

    auditor = auditor_of(pg_factory, payer.principal.organization_id)
    result = reconcile(pg_factory, edit(statement_of(sandbox), tamper), auditor)
    assert {
        k: result.summary[k] for k in ("matched", *[x.value for x in reconciliation.EXCEPTION_CLASSES])
    } == {
        "matched": 3,  # a, c (its first line) and f
        "missing_at_provider": 1,
        "unknown_at_provider": 1,
        "amount_mismatch": 1,
        "duplicate": 1,
        "status_mismatch": 1,
    }
    by_kind = {x.kind: x for x in result.exceptions}
    assert by_kind[ReconClass.MISSING_AT_PROVIDER].payout_id == d.id
    assert by_kind[ReconClass.AMOUNT_MISMATCH].payout_id == b.id
    assert (
        by_kind[ReconClass.AMOUNT_MISMATCH].ledger_amount,
        by_kind[ReconClass.AMOUNT_MISMATCH].provider_amount,
    ) == (
        200_000,
        201_000,
    )
    assert by_kind[ReconClass.DUPLICATE].payout_id == c.id
    status = by_kind[ReconClass.STATUS_MISMATCH]
    assert (status.payout_id, status.ledger_status, status.provider_status) == (e.id, "succeeded", "reversed")
    unknown = by_kind[ReconClass.UNKNOWN_AT_PROVIDER]
    assert unknown.payout_id is None and unknown.provider_amount == 77_000
    assert unknown.detail["statement"]["account"] == "+62820****0001"  # never the full wallet number
    assert {x.status for x in result.exceptions} == {"open"}
    assert a.id and f.id


def test_the_same_file_against_the_same_books_gives_the_same_report(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, payer: Buyer
) -> None:
    pay(pg_factory, dispatcher, payer, [10_000, 20_000])
    auditor = auditor_of(pg_factory, payer.principal.organization_id)
    statement = edit(statement_of(sandbox), lambda rows: [*rows, rows[0]])
    first, second = reconcile(pg_factory, statement, auditor), reconcile(pg_factory, statement, auditor)
    assert first.id != second.id
    assert first.input_sha256 == second.input_sha256
    assert first.report_sha256 == second.report_sha256
    assert first.summary == second.summary
    assert [(x.kind, x.line, x.payout_id) for x in first.exceptions] == [
        (x.kind, x.line, x.payout_id) for x in second.exceptions
    ]


def test_a_bad_statement_stores_nothing(pg_factory: sessionmaker[Session]) -> None:
    with pg_factory() as s:
        before = s.execute(select(func.count()).select_from(ReconciliationRunRow)).scalar_one()
    with pytest.raises(reconciliation.InvalidStatement):
        reconcile(pg_factory, sandbox_csv([sandbox_row("UPH1", "k", "10.5")]), None)
    with pg_factory() as s:
        assert s.execute(select(func.count()).select_from(ReconciliationRunRow)).scalar_one() == before


def test_an_organisations_auditor_sees_only_its_payouts(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, payer: Buyer
) -> None:
    other = make_buyer(pg_factory)
    pay(pg_factory, dispatcher, payer, [10_000])
    theirs = pay(pg_factory, dispatcher, other, [20_000, 30_000])
    statement = edit(statement_of(sandbox), lambda rows: [r for r in rows if r[0] != theirs[0].reference])
    mine = reconcile(pg_factory, statement, auditor_of(pg_factory, payer.principal.organization_id))
    assert (mine.summary["matched"], mine.exceptions) == (1, [])
    assert (
        mine.summary["out_of_scope"] >= 1
    )  # their matched line (and their missing payout, if in the period)
    with pg_factory() as s, pytest.raises(NotFound):
        reconciliation.get_run(
            s, principal=auditor_of(pg_factory, other.principal.organization_id), run_id=mine.id
        )
    everyone = reconcile(
        pg_factory, statement, None, period_from=theirs[0].submitted_at, period_to=datetime.now(UTC)
    )
    assert [x.payout_id for x in everyone.exceptions if x.kind is ReconClass.MISSING_AT_PROVIDER] == [
        theirs[0].id
    ]


def test_a_line_without_identifiers_is_matched_by_amount_wallet_and_date(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, payer: Buyer
) -> None:
    [paid] = pay(pg_factory, dispatcher, payer, [64_000])
    statement = edit(statement_of(sandbox), lambda rows: [["", "", *r[2:]] for r in rows])
    result = reconcile(pg_factory, statement, auditor_of(pg_factory, payer.principal.organization_id))
    assert result.summary["matched"] == 1 and result.exceptions == []
    assert paid.amount == 64_000


def test_a_line_without_identifiers_is_never_matched_to_another_organisations_payout_for_its_auditor(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, payer: Buyer
) -> None:
    other = make_buyer(pg_factory)
    pay(pg_factory, dispatcher, other, [71_000])
    statement = edit(statement_of(sandbox), lambda rows: [["", "", *r[2:]] for r in rows])
    probe = reconcile(pg_factory, statement, auditor_of(pg_factory, payer.principal.organization_id))
    assert (probe.summary["unknown_at_provider"], probe.summary["out_of_scope"]) == (1, 0)
    theirs = reconcile(pg_factory, statement, auditor_of(pg_factory, other.principal.organization_id))
    assert theirs.summary["matched"] == 1 and theirs.exceptions == []


def test_exceptions_are_annotated_resolved_and_reopened_keeping_their_history(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, payer: Buyer
) -> None:
    [paid] = pay(pg_factory, dispatcher, payer, [50_000])
    auditor = auditor_of(pg_factory, payer.principal.organization_id)
    result = reconcile(
        pg_factory,
        edit(statement_of(sandbox), lambda rows: []),
        auditor,
        period_to=datetime.now(UTC),
        period_from=paid.created_at,
    )
    [missing] = result.exceptions
    now = datetime.now(UTC)

    def note(action: NoteAction, words: str) -> reconciliation.ReconException:
        with atomic(pg_factory) as s:
            return reconciliation.annotate(
                s,
                principal=auditor,
                run_id=result.id,
                exception_id=missing.id,
                action=action,
                text=words,
                now=now,
            )

    note(NoteAction.NOTE, "asked the provider for its settlement file of the 20th")
    resolved = note(NoteAction.RESOLVE, "provider confirms: paid, omitted from the export")
    assert (resolved.status, resolved.resolved_by) == ("resolved", auditor.key_id)
    with pytest.raises(InvalidState):
        note(NoteAction.RESOLVE, "again")
    reopened = note(NoteAction.REOPEN, "the wallet owner says not received")
    assert reopened.status == "open"
    assert [(n.action.value, n.key_id) for n in reopened.notes] == [
        ("note", auditor.key_id),
        ("resolve", auditor.key_id),
        ("reopen", auditor.key_id),
    ]
    with pg_factory() as s:
        assert (
            reconciliation.get_run(s, principal=auditor, run_id=result.id).exceptions[0].notes
            == reopened.notes
        )
    with pytest.raises(DBAPIError), pg_factory.begin() as s:
        s.execute(
            text("UPDATE reconciliation_notes SET text = 'rewritten' WHERE exception_id = :e"),
            {"e": missing.id},
        )


def test_a_note_needs_words(pg_factory: sessionmaker[Session]) -> None:
    auditor = auditor_of(pg_factory, None)
    result = reconcile(pg_factory, sandbox_csv([sandbox_row("UPHNOBODY", "nobody", 5)]), None)
    with atomic(pg_factory) as s, pytest.raises(ValidationFailed):
        reconciliation.annotate(
            s,
            principal=auditor,
            run_id=result.id,
            exception_id=result.exceptions[0].id,
            action=NoteAction.NOTE,
            text="   ",
            now=datetime.now(UTC),
        )


def test_the_report_csv_lists_every_line_with_its_class(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, payer: Buyer
) -> None:
    paid = pay(pg_factory, dispatcher, payer, [11_000, 12_000])
    auditor = auditor_of(pg_factory, payer.principal.organization_id)
    statement = edit(
        statement_of(sandbox), lambda rows: [*rows, sandbox_row("UPHX", "kx", 9, at=datetime.now(UTC))]
    )
    result = reconcile(pg_factory, statement, auditor)
    with pg_factory() as s:
        report = list(
            csv.DictReader(io.StringIO(reconciliation.report_csv(s, principal=auditor, run_id=result.id)))
        )
    assert [(r["line"], r["class"]) for r in report] == [
        ("2", "matched"),
        ("3", "matched"),
        ("4", "unknown_at_provider"),
    ]
    assert {int(r["payout_id"]) for r in report[:2]} == {p.id for p in paid}
    assert report[0]["ledger_amount"] in ("11000", "12000")


def test_nightly_reconciles_the_whole_statement_and_lists_payouts_stuck_in_unknown(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, payer: Buyer
) -> None:
    pay(pg_factory, dispatcher, payer, [15_000])
    worker = make_worker(pg_factory, payer)
    earn(pg_factory, payer, worker, 25_000)
    [stuck] = run(pg_factory, payer).payouts
    sandbox.set_faults(timeout_unpaid=1.0, stall_seconds=3)
    assert dispatcher.dispatch(stuck.id) is PayoutStatus.UNKNOWN
    sandbox.set_faults()
    now = datetime.now(UTC)
    with atomic(pg_factory) as s:
        result = reconciliation.nightly(
            s,
            statement_csv=statement_of(sandbox),
            provider="sandbox",
            stuck_after=timedelta(0),
            now=now,
            keyring=KEYRING,
        )
    assert result.run.source is Source.NIGHTLY
    assert result.run.summary["matched"] >= 1
    assert stuck.id in [p.payout_id for p in result.stuck]
    [mine] = [p for p in result.stuck if p.payout_id == stuck.id]
    assert (mine.amount, mine.buyer_id) == (25_000, payer.principal.organization_id)
    with pg_factory() as s:
        later = reconciliation.stuck_unknown(s, older_than=timedelta(hours=1), now=now)
    assert stuck.id not in [p.payout_id for p in later]
    dispatcher.resolve(stuck.id)


def test_nightly_refuses_a_bad_statement_and_stores_nothing(pg_factory: sessionmaker[Session]) -> None:
    with pg_factory() as s:
        before = s.execute(select(func.count()).select_from(ReconciliationRunRow)).scalar_one()
    with atomic(pg_factory) as s, pytest.raises(reconciliation.InvalidStatement):
        reconciliation.nightly(
            s,
            statement_csv="<html>502 Bad Gateway</html>",
            provider="sandbox",
            stuck_after=timedelta(hours=1),
            now=datetime.now(UTC),
        )
    with pg_factory() as s:
        assert s.execute(select(func.count()).select_from(ReconciliationRunRow)).scalar_one() == before


def test_only_auditors_and_admins_reconcile(pg_factory: sessionmaker[Session], payer: Buyer) -> None:
    from payments.errors import Forbidden

    parsed = reconciliation.parse_statement(sandbox_csv([]), provider="sandbox")
    with atomic(pg_factory) as s, pytest.raises(Forbidden):
        reconciliation.reconcile(
            s,
            statement=parsed,
            principal=payer.principal,
            source=Source.API,
            keyring=None,
            now=datetime.now(UTC),
        )


def test_reconciliation_runs_on_the_embedded_sqlite_default_too(
    sqlite_engine: object, sandbox: LiveSandbox, tmp_path: object
) -> None:
    from integrations.providers.sandbox import SandboxProvider
    from tests.audit.conftest import SECRET
    from upah.db import make_session_factory

    factory = make_session_factory(sqlite_engine)  # type: ignore[arg-type]
    provider = SandboxProvider(sandbox.url, SECRET, timeout=(1.0, 1.5))
    dispatcher = Dispatcher(
        sessions=factory, providers={"sandbox": provider}, keyring=KEYRING, clock=lambda: datetime.now(UTC)
    )
    try:
        buyer = make_buyer(factory)
        paid = pay(factory, dispatcher, buyer, [33_000, 44_000])
    finally:
        provider._session.close()
    statement = edit(statement_of(sandbox), lambda rows: [*rows, rows[0]])
    result = reconcile(factory, statement, auditor_of(factory, buyer.principal.organization_id))
    assert (result.summary["matched"], result.summary["duplicate"]) == (2, 1)
    assert result.exceptions[0].payout_id == paid[0].id
    platform = auditor_of(factory, None)
    with factory() as s:
        again = reconciliation.get_run(s, principal=platform, run_id=result.id)
        assert again.report_sha256 == result.report_sha256
        report = reconciliation.report_csv(s, principal=platform, run_id=result.id)
    assert report.count("\n") == 4
