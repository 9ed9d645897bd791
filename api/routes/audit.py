"""The auditor's view: proof of the books, reconciliation, exports and the pilot report.

An ``auditor`` key reads everything in its scope — one organisation, or the whole platform
when issued without one — and writes nothing but reconciliation runs, notes on their
exceptions, and notes on disputes. Anything outside the scope answers 404.

Money leaves as ``{"amount": "25000", "currency": "IDR"}``; a statement line says which
side it posted to beside its amount; only a balance on its account's wrong side is a signed
digit string (``"-2500"``).
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from api import convert
from api.deps import NowDep, PrincipalDep, RuntimeDep
from api.schemas import IdParam
from ledger import AccountType, export, reports, sign
from ledger.tables import AccountRow, CheckpointRow, table_of
from payments import audit, reconciliation
from payments import reports as pilot_reports
from payments.parties import Role

router = APIRouter(tags=["audit"])

_accounts = table_of(AccountRow)
_checkpoints = table_of(CheckpointRow)
READERS = (Role.AUDITOR, Role.ADMIN)
CSV = "text/csv; charset=utf-8"


# --- bodies ---------------------------------------------------------------------------------------


class MoneyOut(BaseModel):
    amount: str = Field(
        description="digits in the minor unit; a leading '-' only where a value can be negative"
    )
    currency: str


def money(amount: int, currency: str = "IDR") -> MoneyOut:
    return MoneyOut(amount=str(amount), currency=currency)


class ProblemRead(BaseModel):
    kind: str
    message: str
    account_id: int | None = None
    entry_id: int | None = None
    seq: int | None = None


class IntegrityRead(BaseModel):
    ok: bool
    problems: list[ProblemRead]


class TrialBalanceLineRead(BaseModel):
    account_id: int
    code: str
    type: str
    currency: str
    debits: MoneyOut
    credits: MoneyOut
    balance: MoneyOut


class CurrencyTotalRead(BaseModel):
    currency: str
    debits: MoneyOut
    credits: MoneyOut
    balanced: bool


class TrialBalanceRead(BaseModel):
    as_of: datetime | None
    balanced: bool
    totals: list[CurrencyTotalRead]
    accounts: list[TrialBalanceLineRead]
    integrity: IntegrityRead


class StatementLineRead(BaseModel):
    entry_id: int
    effective_at: datetime
    description: str
    side: Literal["debit", "credit"]
    """Which side of the account the entry posted to: with the account's type, whether it
    raised the balance (its normal side) or lowered it."""
    amount: MoneyOut = Field(description="digits: how much the entry posted to the account")
    running_balance: MoneyOut


class StatementRead(BaseModel):
    account_id: int
    code: str
    type: str
    currency: str
    start: datetime | None = Field(serialization_alias="from")
    end: datetime | None = Field(serialization_alias="to")
    opening_balance: MoneyOut
    lines: list[StatementLineRead]
    closing_balance: MoneyOut


class VerifyRead(BaseModel):
    ok: bool
    entries_checked: int
    checkpoints_checked: int
    unsealed: int
    first_break: ProblemRead | None = None
    problems: list[ProblemRead]
    public_key_url: str = "/v1/ledger/public-key"
    signing_keys: list[str] = Field(description="the distinct public keys (PEM) that signed checkpoints")


class NoteRead(BaseModel):
    id: int
    action: str
    note: str
    key_id: int | None
    created_at: datetime


class ExceptionRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    class_: str = Field(alias="class", serialization_alias="class")
    line: int | None
    payout_id: int | None
    reference: str | None
    provider_reference: str | None
    ledger_amount: MoneyOut | None
    provider_amount: MoneyOut | None
    ledger_status: str | None
    provider_status: str | None
    message: str
    detail: dict[str, Any]
    status: Literal["open", "resolved"]
    resolved_at: datetime | None
    notes: list[NoteRead]


class SummaryRead(BaseModel):
    matched: int
    missing_at_provider: int
    unknown_at_provider: int
    amount_mismatch: int
    duplicate: int
    status_mismatch: int
    lines: int
    skipped: int
    out_of_scope: int


class ReconciliationRead(BaseModel):
    id: int
    provider: str
    format: str
    source: str
    input_sha256: str
    input_bytes: int
    report_sha256: str = Field(
        description="digest of the report's content: the same file and books give the same"
    )
    lines: int
    period_from: datetime | None
    period_to: datetime | None
    window_seconds: int
    organization_id: int | None
    created_at: datetime
    summary: SummaryRead
    exceptions: list[ExceptionRead]


class NoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    action: Literal["note", "resolve", "reopen"] = "note"


class DisputeNotesRead(BaseModel):
    dispute_id: int
    notes: list[dict[str, Any]]


class DifferenceRead(BaseModel):
    kind: str
    amount: MoneyOut
    message: str


class ThreeWayLineRead(BaseModel):
    homeworker_id: int
    buyer_id: int
    account_id: int
    pieces_accepted: int
    agreed_earnings: MoneyOut
    agreed_adjustments: MoneyOut
    agreed: MoneyOut
    ledger_earnings: MoneyOut
    received: MoneyOut
    owed_at_start: MoneyOut
    owed_at_end: MoneyOut
    ok: bool
    differences: list[DifferenceRead]


class ThreeWayRead(BaseModel):
    start: datetime | None = Field(serialization_alias="from")
    end: datetime | None = Field(serialization_alias="to")
    ok: bool
    differences: int
    lines: list[ThreeWayLineRead]


# --- proof of the books ---------------------------------------------------------------------------


@router.get(
    "/v1/ledger/public-key",
    response_class=PlainTextResponse,
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
def public_key(rt: RuntimeDep) -> Response:
    """The Ed25519 public key (PEM) that signs ledger checkpoints: check signatures with your own tools.

    A checkpoint signs ``upah-ledger-checkpoint:{seq}:{digest}`` (ASCII); the digest is the
    SHA-256 hash chain over sealed entries.
    """
    return Response(rt.signing_public_key, media_type="application/x-pem-file")


def _side(account_type: AccountType, amount: int) -> Literal["debit", "credit"]:
    """The side a movement of ``amount`` (positive: raising the balance) posted to."""
    return "debit" if sign(account_type) * amount > 0 else "credit"


@router.get("/v1/ledger/trial-balance", response_model=TrialBalanceRead)
def trial_balance(
    who: PrincipalDep,
    rt: RuntimeDep,
    as_of: Annotated[datetime | None, Query()] = None,
) -> TrialBalanceRead:
    """Every account's debits, credits and balance at ``as_of``; totals per currency; the integrity check.

    An organisation's auditor sees its own accounts, and totals summed over those alone (its
    side of the book does not balance by itself: the other side is the platform's); whether
    the whole book balances is still said, without its amounts."""
    who.require(*READERS)
    with rt.read() as session:
        visible = audit.accounts_in_scope(session, principal=who)
        tb = reports.trial_balance(session, as_of=convert.moment(as_of))
        problems = reports.check_integrity(session)
    lines = [line for line in tb.lines if visible is None or line.account_id in visible]
    problems = [p for p in problems if visible is None or p.account_id is None or p.account_id in visible]
    sums: dict[str, tuple[int, int]] = {}
    for line in lines:
        debits, credits = sums.get(line.currency, (0, 0))
        sums[line.currency] = (debits + line.debit, credits + line.credit)
    return TrialBalanceRead(
        as_of=tb.as_of,
        balanced=tb.balanced,
        totals=[
            CurrencyTotalRead(
                currency=cur,
                debits=money(d, cur),
                credits=money(c, cur),
                balanced=tb.totals[cur][0] == tb.totals[cur][1],
            )
            for cur, (d, c) in sorted(sums.items())
        ],
        accounts=[
            TrialBalanceLineRead(
                account_id=line.account_id,
                code=line.code,
                type=line.type.value,
                currency=line.currency,
                debits=money(line.debit, line.currency),
                credits=money(line.credit, line.currency),
                balance=money(line.balance, line.currency),
            )
            for line in lines
        ],
        integrity=IntegrityRead(ok=not problems, problems=[_problem(p) for p in problems]),
    )


@router.get(
    "/v1/ledger/accounts/{account_id}/statement", response_model=StatementRead, response_model_by_alias=True
)
def account_statement(
    account_id: IdParam,
    who: PrincipalDep,
    rt: RuntimeDep,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
) -> StatementRead:
    """Opening balance, every entry with its running balance, closing balance (auditor or owner)."""
    who.require(Role.AUDITOR, Role.BUYER, Role.INTERMEDIARY)
    with rt.read() as session:
        audit.check_account_visible(session, principal=who, account_id=account_id)
        st = reports.statement(
            session, account_id=account_id, start=convert.moment(start), end=convert.moment(end)
        )
        account = session.execute(select(_accounts).where(_accounts.c.id == account_id)).one()
    cur = st.currency
    return StatementRead(
        account_id=account_id,
        code=account.code,
        type=account.type,
        currency=cur,
        start=convert.moment(start),
        end=convert.moment(end),
        opening_balance=money(st.opening_balance, cur),
        lines=[
            StatementLineRead(
                entry_id=line.entry_id,
                effective_at=line.effective_at,
                description=line.description,
                side=_side(AccountType(account.type), line.amount),
                amount=money(abs(line.amount), cur),
                running_balance=money(line.running_balance, cur),
            )
            for line in st.lines
        ],
        closing_balance=money(st.closing_balance, cur),
    )


@router.get("/v1/ledger/verify", response_model=VerifyRead)
def verify(who: PrincipalDep, rt: RuntimeDep) -> VerifyRead:
    """Recompute the hash chain, check every checkpoint's signature, and check the balances."""
    who.require(*READERS)
    with rt.read() as session:
        report = reports.verify_chain(session)
        keys = list(
            dict.fromkeys(
                session.execute(select(_checkpoints.c.public_key).order_by(_checkpoints.c.id)).scalars()
            )
        )
    return VerifyRead(
        ok=report.ok,
        entries_checked=report.entries_checked,
        checkpoints_checked=report.checkpoints_checked,
        unsealed=report.unsealed,
        first_break=_problem(report.first_break) if report.first_break else None,
        problems=[_problem(p) for p in report.problems],
        signing_keys=keys,
    )


def _problem(p: reports.Problem) -> ProblemRead:
    return ProblemRead(
        kind=p.kind, message=p.message, account_id=p.account_id, entry_id=p.entry_id, seq=p.seq
    )


# --- reconciliation -------------------------------------------------------------------------------


@router.post(
    "/v1/reconciliations", status_code=201, response_model=ReconciliationRead, response_model_by_alias=True
)
def create_reconciliation(
    who: PrincipalDep,
    rt: RuntimeDep,
    now: NowDep,
    provider: Annotated[str, Form(max_length=32)],
    statement: Annotated[UploadFile, File(description="the provider's settlement statement (CSV)")],
    start: Annotated[datetime | None, Form(alias="from")] = None,
    end: Annotated[datetime | None, Form(alias="to")] = None,
    window_days: Annotated[int, Form(ge=0, le=31)] = 3,
) -> ReconciliationRead:
    """Import a provider's statement and match it against the ledger's payouts.

    Formats: the sandbox provider's ``statement.csv`` and Xendit's transactions report. A bad
    statement answers 422 ``invalid_statement`` naming the line, and nothing is stored. The
    period defaults to the first and last times on the statement.
    """
    who.require(*READERS)
    data = statement.file.read(reconciliation.MAX_STATEMENT_BYTES + 1)
    with rt.transaction() as session:
        run = reconciliation.reconcile_statement(
            session,
            data=data,
            provider=provider.strip(),
            principal=who,
            source=reconciliation.Source.API,
            keyring=rt.keyring,
            now=now,
            period_from=convert.moment(start),
            period_to=convert.moment(end),
            window=timedelta(days=window_days),
        )
    return _run(run)


@router.get("/v1/reconciliations", response_model=list[ReconciliationRead], response_model_by_alias=True)
def list_reconciliations(
    who: PrincipalDep, rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[ReconciliationRead]:
    """The latest runs in scope, newest first (without their exceptions)."""
    with rt.read() as session:
        return [_run(r) for r in reconciliation.list_runs(session, principal=who, limit=limit)]


@router.get("/v1/reconciliations/{run_id}", response_model=ReconciliationRead, response_model_by_alias=True)
def get_reconciliation(run_id: IdParam, who: PrincipalDep, rt: RuntimeDep) -> ReconciliationRead:
    with rt.read() as session:
        return _run(reconciliation.get_run(session, principal=who, run_id=run_id))


@router.get("/v1/reconciliations/{run_id}/report.csv", response_class=Response)
def reconciliation_report(run_id: IdParam, who: PrincipalDep, rt: RuntimeDep) -> Response:
    """Every statement line with its class, and every missing payout, with notes: CSV."""
    with rt.read() as session:
        text = reconciliation.report_csv(session, principal=who, run_id=run_id)
    return _download(text, CSV, f"reconciliation-{run_id}.csv")


@router.post(
    "/v1/reconciliations/{run_id}/exceptions/{exception_id}/notes",
    status_code=201,
    response_model=ExceptionRead,
    response_model_by_alias=True,
)
def annotate_exception(
    run_id: IdParam, exception_id: IdParam, body: NoteCreate, who: PrincipalDep, rt: RuntimeDep, now: NowDep
) -> ExceptionRead:
    """Note on an exception; ``resolve`` closes it and ``reopen`` opens it again. Notes are never changed."""
    with rt.transaction() as session:
        exc = reconciliation.annotate(
            session,
            principal=who,
            run_id=run_id,
            exception_id=exception_id,
            action=reconciliation.NoteAction(body.action),
            text=body.note,
            now=now,
        )
    return _exception(exc)


def _run(run: reconciliation.Run) -> ReconciliationRead:
    return ReconciliationRead(
        id=run.id,
        provider=run.provider,
        format=run.statement_format.value,
        source=run.source.value,
        input_sha256=run.input_sha256,
        input_bytes=run.input_bytes,
        report_sha256=run.report_sha256,
        lines=run.lines,
        period_from=run.period_from,
        period_to=run.period_to,
        window_seconds=run.window_seconds,
        organization_id=run.organization_id,
        created_at=run.created_at,
        summary=SummaryRead(**{k: run.summary.get(k, 0) for k in SummaryRead.model_fields}),
        exceptions=[_exception(e) for e in run.exceptions],
    )


def _exception(e: reconciliation.ReconException) -> ExceptionRead:
    currency = str(e.detail.get("currency") or (e.detail.get("statement") or {}).get("currency") or "IDR")
    provider_currency = str((e.detail.get("statement") or {}).get("currency") or currency)
    return ExceptionRead(
        id=e.id,
        class_=e.kind.value,
        line=e.line,
        payout_id=e.payout_id,
        reference=e.reference,
        provider_reference=e.provider_reference,
        ledger_amount=money(e.ledger_amount, currency) if e.ledger_amount is not None else None,
        provider_amount=money(e.provider_amount, provider_currency)
        if e.provider_amount is not None
        else None,
        ledger_status=e.ledger_status,
        provider_status=e.provider_status,
        message=str(e.detail.get("message", "")),
        detail=e.detail,
        status="resolved" if e.status == "resolved" else "open",
        resolved_at=e.resolved_at,
        notes=[
            NoteRead(id=n.id, action=n.action.value, note=n.text, key_id=n.key_id, created_at=n.created_at)
            for n in e.notes
        ],
    )


# --- exports --------------------------------------------------------------------------------------


@router.get(
    "/v1/exports/books.beancount", response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
def export_beancount(who: PrincipalDep, rt: RuntimeDep) -> Response:
    """The books as a Beancount file (``bean-check`` accepts it); an organisation's auditor gets its own."""
    who.require(*READERS)
    with rt.read() as session:
        scope = audit.accounts_in_scope(session, principal=who)
        text = export.beancount_text(session, account_ids=scope)
    return _download(text, "text/plain; charset=utf-8", "books.beancount")


@router.get("/v1/exports/entries.csv", response_class=Response)
def export_entries(
    who: PrincipalDep,
    rt: RuntimeDep,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
) -> Response:
    """One row per posting (signed, debit positive) of the entries in scope."""
    who.require(Role.AUDITOR, Role.ADMIN, Role.BUYER, Role.INTERMEDIARY)
    buffer = io.StringIO()
    with rt.read() as session:
        scope = audit.accounts_in_scope(session, principal=who)
        export.write_entries_csv(
            session, buffer, start=convert.moment(start), end=convert.moment(end), account_ids=scope
        )
    return _download(buffer.getvalue(), CSV, "entries.csv")


@router.get("/v1/exports/payouts.csv", response_class=Response)
def export_payouts(
    who: PrincipalDep,
    rt: RuntimeDep,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
) -> Response:
    """Every payout in scope created in the period (no wallet numbers)."""
    with rt.read() as session:
        text = audit.payouts_csv(session, principal=who, start=convert.moment(start), end=convert.moment(end))
    return _download(text, CSV, "payouts.csv")


# --- reports --------------------------------------------------------------------------------------


@router.get(
    "/v1/reports/pilot",
    responses={
        200: {
            "content": {"application/json": {}, "text/csv": {}},
            "description": "JSON, or CSV with format=csv",
        }
    },
)
def pilot_report(
    who: PrincipalDep,
    rt: RuntimeDep,
    now: NowDep,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Any:
    """Payouts, leakage, time to payment, share of work at the minimum-wage benchmark, disputes —
    in total and by region, buyer and intermediary (auditor, admin, or a buyer for itself)."""
    with rt.read() as session:
        report = pilot_reports.pilot(
            session, principal=who, start=convert.moment(start), end=convert.moment(end), now=now
        )
    if format == "csv":
        return _download(pilot_reports.pilot_csv(report), CSV, "pilot-report.csv")
    return _pilot_json(report.as_dict())


_PILOT_MONEY = ("agreed", "received", "owed", "earnings_meeting_benchmark")


def _pilot_json(report: dict[str, Any]) -> dict[str, Any]:
    """The report with its money as the API gives money: ``{"amount": "…", "currency": …}``."""

    def group(figures: dict[str, Any]) -> dict[str, Any]:
        return {k: money(v).model_dump() if k in _PILOT_MONEY else v for k, v in figures.items()}

    def counted(figures: dict[str, Any]) -> dict[str, Any]:
        return {**figures, "amount": money(figures["amount"]).model_dump()}

    paid = report["payouts"]
    return {
        **report,
        "total": group(report["total"]),
        **{name: [group(g) for g in report[name]] for name in ("by_region", "by_buyer", "by_intermediary")},
        "payouts": {
            **counted(paid),
            "by_status": {status: counted(v) for status, v in paid["by_status"].items()},
        },
    }


@router.get("/v1/reports/three-way", response_model=ThreeWayRead, response_model_by_alias=True)
def three_way(
    who: PrincipalDep,
    rt: RuntimeDep,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    homeworker_id: Annotated[IdParam | None, Query()] = None,
) -> ThreeWayRead:
    """Per homeworker and buyer: agreed (pieces × rate + adjustments) = ledger earnings = received + owed."""
    with rt.read() as session:
        report = audit.three_way(
            session,
            principal=who,
            start=convert.moment(start),
            end=convert.moment(end),
            homeworker_id=homeworker_id,
        )
    return ThreeWayRead(
        start=report.start,
        end=report.end,
        ok=report.ok,
        differences=report.differences,
        lines=[
            ThreeWayLineRead(
                homeworker_id=line.homeworker_id,
                buyer_id=line.buyer_id,
                account_id=line.account_id,
                pieces_accepted=line.pieces_accepted,
                agreed_earnings=money(line.agreed_earnings),
                agreed_adjustments=money(line.agreed_adjustments),
                agreed=money(line.agreed),
                ledger_earnings=money(line.ledger_earnings),
                received=money(line.received),
                owed_at_start=money(line.owed_at_start),
                owed_at_end=money(line.owed_at_end),
                ok=line.ok,
                differences=[
                    DifferenceRead(kind=d.kind, amount=money(d.amount), message=d.message)
                    for d in line.differences
                ],
            )
            for line in report.lines
        ],
    )


# --- dispute notes --------------------------------------------------------------------------------


class DisputeNoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


@router.post("/v1/disputes/{dispute_id}/notes", status_code=201, response_model=DisputeNotesRead)
def add_dispute_note(
    dispute_id: IdParam, body: DisputeNoteCreate, who: PrincipalDep, rt: RuntimeDep, now: NowDep
) -> DisputeNotesRead:
    """An auditor's note on a homeworker's dispute (appended; earlier notes are never changed)."""
    with rt.transaction() as session:
        notes = audit.add_dispute_note(session, principal=who, dispute_id=dispute_id, text=body.note, now=now)
    return DisputeNotesRead(dispute_id=dispute_id, notes=notes)


# --- helpers --------------------------------------------------------------------------------------


def _download(text: str, media_type: str, filename: str) -> Response:
    return Response(
        text, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
