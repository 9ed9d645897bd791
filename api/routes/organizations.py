"""Organisations, their deposits and balances (admin, and each organisation for itself)."""

from __future__ import annotations

from fastapi import APIRouter

from api import convert
from api import schemas as s
from api.deps import NowDep, PrincipalDep, RuntimeDep
from ledger import parse_amount
from payments import parties
from payments.parties import OrganizationKind, Role

router = APIRouter(prefix="/v1/organizations", tags=["organizations"])


@router.post("", status_code=201, response_model=s.OrganizationRead)
def create_organization(
    body: s.OrganizationCreate, who: PrincipalDep, rt: RuntimeDep, now: NowDep
) -> s.OrganizationRead:
    who.require(Role.ADMIN)
    with rt.transaction() as session:
        org = parties.create_organization(session, name=body.name, kind=OrganizationKind(body.kind), now=now)
    return convert.organization(org)


@router.get("/{organization_id}", response_model=s.OrganizationRead)
def get_organization(organization_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep) -> s.OrganizationRead:
    with rt.read() as session:
        return convert.organization(
            parties.get_organization(session, principal=who, organization_id=organization_id)
        )


@router.post("/{organization_id}/deposits", status_code=201, response_model=s.DepositRead)
def record_deposit(
    organization_id: s.IdParam, body: s.DepositCreate, who: PrincipalDep, rt: RuntimeDep, now: NowDep
) -> s.DepositRead:
    amount = parse_amount(body.amount.amount)
    with rt.transaction() as session:
        entry_id = parties.record_deposit(
            session,
            principal=who,
            organization_id=organization_id,
            amount=amount,
            reference=body.reference,
            now=now,
        )
    return s.DepositRead(
        organization_id=organization_id,
        entry_id=entry_id,
        amount=convert.money(amount),
        reference=body.reference,
    )


@router.get("/{organization_id}/balance", response_model=s.OrganizationBalanceRead)
def organization_balance(
    organization_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep
) -> s.OrganizationBalanceRead:
    with rt.read() as session:
        b = parties.organization_balance(session, principal=who, organization_id=organization_id)
    return s.OrganizationBalanceRead(
        organization_id=b.organization_id,
        available=convert.money(b.available),
        held=convert.money(b.held),
        commission=convert.money(b.commission) if b.commission is not None else None,
    )
