"""Homeworkers: registration, balance, adjustments and the payslip."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from api import convert
from api import schemas as s
from api.deps import NowDep, PrincipalDep, RuntimeDep
from ledger import parse_amount
from payments import adjustments, channels, parties, statements

router = APIRouter(prefix="/v1/homeworkers", tags=["homeworkers"])

_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@router.post("", status_code=201, response_model=s.HomeworkerRead)
def register(body: s.HomeworkerCreate, who: PrincipalDep, rt: RuntimeDep, now: NowDep) -> s.HomeworkerRead:
    with rt.transaction() as session:
        worker = parties.register_homeworker(
            session,
            principal=who,
            keyring=rt.keyring,
            name=body.name,
            phone=body.phone,
            region=body.region,
            wallet_provider=body.wallet.provider,
            wallet_account=body.wallet.account,
            nik=body.nik,
            consent_at=body.consent_at,
            language=body.language,
            now=now,
            organization_id=body.organization_id,
        )
    return convert.homeworker(worker)


@router.get("/{homeworker_id}", response_model=s.HomeworkerRead)
def get(homeworker_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep) -> s.HomeworkerRead:
    with rt.read() as session:
        return convert.homeworker(
            parties.get_homeworker(session, principal=who, keyring=rt.keyring, homeworker_id=homeworker_id)
        )


@router.get("/{homeworker_id}/balance", response_model=s.HomeworkerBalanceRead)
def balance(homeworker_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep) -> s.HomeworkerBalanceRead:
    with rt.read() as session:
        b = statements.balance(session, principal=who, homeworker_id=homeworker_id)
    return s.HomeworkerBalanceRead(
        homeworker_id=b.homeworker_id,
        earned=convert.money(b.earned),
        pending=convert.money(b.pending),
        paid=convert.money(b.paid),
        awaiting_confirmation_pieces=b.awaiting_confirmation,
    )


@router.post("/{homeworker_id}/pin-reset", response_model=s.PinResetRead)
def reset_pin(homeworker_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep, now: NowDep) -> s.PinResetRead:
    """Clear her USSD PIN (forgotten, or made with a retired key); she sets a new one at her next dial."""
    with rt.transaction() as session:
        done = channels.reset_pin(session, principal=who, homeworker_id=homeworker_id, now=now)
    return s.PinResetRead(homeworker_id=done.homeworker_id, pin_cleared=done.reset)


@router.put("/{homeworker_id}/wallet/registration", response_model=s.HomeworkerRead)
def set_wallet_registration(
    homeworker_id: s.IdParam, body: s.WalletRegistration, who: PrincipalDep, rt: RuntimeDep
) -> s.HomeworkerRead:
    """Her wallet is registered (it takes Rp 20,000,000, not Rp 2,000,000): a payout refused
    for the lower limit is paid by the next run."""
    with rt.transaction() as session:
        parties.set_wallet_registered(
            session, principal=who, homeworker_id=homeworker_id, registered=body.registered
        )
        worker = parties.get_homeworker(
            session, principal=who, keyring=rt.keyring, homeworker_id=homeworker_id
        )
    return convert.homeworker(worker)


@router.post("/{homeworker_id}/adjustments", status_code=201, response_model=s.AdjustmentRead)
def add_adjustment(
    homeworker_id: s.IdParam, body: s.AdjustmentCreate, who: PrincipalDep, rt: RuntimeDep, now: NowDep
) -> s.AdjustmentRead:
    amount = parse_amount(body.amount.amount)
    with rt.transaction() as session:
        adj = adjustments.add(
            session,
            principal=who,
            homeworker_id=homeworker_id,
            kind=adjustments.AdjustmentKind(body.kind),
            amount=amount,
            memo=body.memo,
            now=now,
        )
    return convert.adjustment(adj)


@router.get(
    "/{homeworker_id}/payslip",
    response_model=s.PayslipRead,
    responses={200: {"content": {"text/plain": {}}, "description": "JSON, or plain text with format=text"}},
)
def payslip(
    homeworker_id: s.IdParam,
    who: PrincipalDep,
    rt: RuntimeDep,
    request: Request,
    start: Annotated[datetime | None, Query(alias="from", description="included")] = None,
    end: Annotated[
        datetime | None,
        Query(alias="to", description="not included; a date alone means the whole of that day"),
    ] = None,
    format: Annotated[str, Query(pattern="^(json|text)$")] = "json",
) -> s.PayslipRead | PlainTextResponse:
    if end is not None and _DATE_ONLY.fullmatch(request.query_params.get("to", "")):
        end += timedelta(days=1)  # "to=2026-01-31" is January's payslip: the 31st is in it
    with rt.read() as session:
        slip = statements.payslip(
            session,
            principal=who,
            keyring=rt.keyring,
            homeworker_id=homeworker_id,
            start=convert.moment(start),
            end=convert.moment(end),
        )
    if format == "text":
        return PlainTextResponse(statements.render_text(slip))
    return convert.payslip(slip)
