"""Payout runs, payouts, and provider callbacks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api import schemas as s
from api.deps import NowDep, PrincipalDep, RuntimeDep
from api.errors import error_response
from integrations.providers.base import CALLBACK_QUERY_HEADER, InvalidCallback
from payments import conflicts, payouts
from payments.parties import Role
from payments.payout_states import PayoutStatus

router = APIRouter(tags=["payouts"])

OWNER_OR_AUDITOR = (Role.BUYER, Role.AUDITOR)
"""Who reads runs and payouts (CONTRACT.md): the buyer paying them, and auditors."""


def _payout(p: payouts.Payout) -> s.PayoutRead:
    return s.PayoutRead(
        id=p.id,
        run_id=p.run_id,
        homeworker_id=p.homeworker_id,
        amount=s.Money.of(p.amount),
        fee=s.Money.of(p.fee),
        status=p.status.value,
        reference=p.reference,
        provider=p.provider,
        provider_reference=p.provider_reference,
        failure_code=p.failure_code,
        failure_reason=p.failure_reason,
        attempts=p.attempts,
        created_at=p.created_at,
        submitted_at=p.submitted_at,
        settled_at=p.settled_at,
        conflict_held=None if p.conflict_held is None else s.Money.of(p.conflict_held),
    )


def _run(r: payouts.PayoutRun) -> s.PayoutRunRead:
    return s.PayoutRunRead(
        id=r.id,
        status=r.status.value,
        count=r.count,
        total=s.Money.of(r.total),
        fee=s.Money.of(r.fee),
        created_at=r.created_at,
        approved_at=r.approved_at,
        completed_at=r.completed_at,
        payouts=[
            s.PayoutLine(
                id=p.id, homeworker_id=p.homeworker_id, amount=s.Money.of(p.amount), status=p.status.value
            )
            for p in r.payouts
        ],
    )


@router.post("/v1/payout-runs", status_code=201, response_model=s.PayoutRunRead)
def create_run(
    who: PrincipalDep, rt: RuntimeDep, now: NowDep, body: s.PayoutRunCreate | None = None
) -> s.PayoutRunRead:
    """One payout per homeworker owed at least the minimum; above the approval threshold a
    second key must approve it. A buyer key sends ``{}`` and pays for its own organisation; an
    admin key sends ``{"buyer_id": N}`` and creates the run that buyer would — approved, when
    it must be, by a buyer key of that organisation."""
    buyer_id = body.buyer_id if body is not None else None
    with rt.transaction() as session:
        run = payouts.create_run(session, principal=who, policy=rt.run_policy, now=now, buyer_id=buyer_id)
    rt.metrics.payout_runs.inc()
    if rt.kick:
        rt.kick()
    return _run(run)


@router.post("/v1/payout-runs/{run_id}/approve", response_model=s.PayoutRunRead)
def approve_run(run_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep, now: NowDep) -> s.PayoutRunRead:
    with rt.transaction() as session:
        run = payouts.approve_run(session, principal=who, run_id=run_id, now=now)
    if rt.kick:
        rt.kick()
    return _run(run)


@router.post("/v1/payout-runs/{run_id}/reject", response_model=s.PayoutRunRead)
def reject_run(run_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep, now: NowDep) -> s.PayoutRunRead:
    """A run awaiting approval is not paid: its payouts fail unsent (``run_rejected``) and
    what they held is released; the run is ``rejected``. Any buyer key of the organisation (the
    checker, or its maker withdrawing it) or an admin key."""
    with rt.transaction() as session:
        run = payouts.reject_run(session, principal=who, run_id=run_id, now=now)
    return _run(run)


@router.get("/v1/payout-runs/{run_id}", response_model=s.PayoutRunRead)
def get_run(run_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep) -> s.PayoutRunRead:
    who.require(*OWNER_OR_AUDITOR)
    with rt.read() as session:
        return _run(payouts.get_run(session, principal=who, run_id=run_id))


@router.get("/v1/payouts/{payout_id}", response_model=s.PayoutRead)
def get_payout(payout_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep) -> s.PayoutRead:
    who.require(*OWNER_OR_AUDITOR)
    with rt.read() as session:
        return _payout(payouts.get(session, principal=who, payout_id=payout_id))


@router.post(
    "/v1/payouts/{payout_id}/conflict",
    response_model=s.PayoutRead,
    responses={409: {"model": s.ErrorBody}},
    summary="Settle a payout the provider says it paid after it failed",
)
def settle_conflict(
    payout_id: s.IdParam, body: s.ConflictSettlement, who: PrincipalDep, rt: RuntimeDep, now: NowDep
) -> s.PayoutRead:
    """An admin, from the provider's statement: paid (the held amount is recorded as paid to her
    and the payout succeeds; the buyer pays the fee) or not paid (the hold is released to her
    earnings). 409 ``invalid_state`` for a payout with no conflict to settle."""
    with rt.transaction() as session:
        payout = conflicts.resolve(
            session,
            principal=who,
            payout_id=payout_id,
            provider_paid=body.provider_paid,
            reason=body.reason,
            now=now,
        )
    return _payout(payout)


@router.get("/v1/payouts", response_model=list[s.PayoutRead])
def list_payouts(
    who: PrincipalDep,
    rt: RuntimeDep,
    status: Annotated[PayoutStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[s.PayoutRead]:
    who.require(*OWNER_OR_AUDITOR)
    with rt.read() as session:
        return [_payout(p) for p in payouts.list_for(session, principal=who, status=status, limit=limit)]


@router.post(
    "/v1/providers/{provider}/callbacks",
    responses={401: {"model": s.ErrorBody}},
    summary="A provider's signed callback about a payout",
)
async def provider_callback(provider: str, request: Request, rt: RuntimeDep) -> JSONResponse:
    """Authenticated the provider's own way (sandbox: ``X-Sandbox-Signature: t=…,v1=…`` HMAC-SHA256
    over ``t.body`` with a 300 s tolerance; Xendit: ``x-callback-token``), in constant time, and
    recorded; a worker applies it to the payout."""
    from anyio import to_thread

    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers[CALLBACK_QUERY_HEADER] = request.url.query
    if rt.dispatcher is None:
        return error_response(404, "not_found", "no payout providers are configured")
    dispatcher = rt.dispatcher
    try:
        recorded = await to_thread.run_sync(
            lambda: dispatcher.record_callback(provider, headers=headers, body=body)
        )
    except InvalidCallback:
        return error_response(401, "invalid_signature", "the callback's signature or token is not valid")
    return JSONResponse({"received": True, "outcome": "duplicate" if recorded is None else "recorded"})
