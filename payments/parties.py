"""Organisations, API keys and homeworkers — who may see and do what.

Every read takes the caller's ``Principal`` and answers ``NotFound`` for anything
outside its organisation's scope, so another organisation's objects are
indistinguishable from objects that do not exist. API keys are shown once and stored
as SHA-256 hashes (they are 256-bit random, so a fast hash is enough); homeworkers'
personal data is stored encrypted and found through blind indexes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, exists, func, insert, select, update
from sqlalchemy.orm import Session

from integrations import phones
from ledger import EntryDraft, Posting, journal
from ledger.tables import AccountRow, insert_or_ignore, table_of
from payments import chart, pii, wages
from payments.errors import DuplicateReference, Forbidden, NotFound, Unauthorized, ValidationFailed
from payments.tables import (
    ApiKeyRow,
    EarningsAccountRow,
    HomeworkerLinkRow,
    HomeworkerRow,
    OrderRow,
    OrganizationRow,
)

_orgs = table_of(OrganizationRow)
_keys = table_of(ApiKeyRow)
_workers = table_of(HomeworkerRow)
_links = table_of(HomeworkerLinkRow)
_earnings = table_of(EarningsAccountRow)
_orders = table_of(OrderRow)

KEY_PREFIX = "upah"


class OrganizationKind(StrEnum):
    BUYER = "buyer"
    INTERMEDIARY = "intermediary"


class Role(StrEnum):
    ADMIN = "admin"
    BUYER = "buyer"
    INTERMEDIARY = "intermediary"
    AUDITOR = "auditor"


WALLET_CHANNELS = {
    "dana": "ID_DANA",
    "ovo": "ID_OVO",
    "gopay": "ID_GOPAY",
    "linkaja": "ID_LINKAJA",
    "shopeepay": "ID_SHOPEEPAY",
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key's id, role and organisation (None = platform-wide)."""

    key_id: int
    role: Role
    organization_id: int | None

    @property
    def platform_wide(self) -> bool:
        return self.organization_id is None

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            raise Forbidden(f"a {self.role.value} key cannot do this")


@dataclass(frozen=True, slots=True)
class Organization:
    id: int
    name: str
    kind: OrganizationKind
    available_account_id: int
    commission_account_id: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Homeworker:
    id: int
    name: str
    phone_masked: str
    region: str
    wallet_provider: str
    wallet_channel: str
    wallet_account_masked: str
    wallet_registered: bool
    language: str
    consent_at: datetime | None
    has_nik: bool
    created_at: datetime


# --- organisations ---------------------------------------------------------------------------


def create_organization(
    session: Session, *, name: str, kind: OrganizationKind, now: datetime
) -> Organization:
    name = name.strip()
    if not name:
        raise ValidationFailed("an organisation needs a name", field="name")
    org_id = session.execute(
        insert(_orgs).returning(_orgs.c.id),
        {"name": name, "kind": kind.value, "created_at": now},
    ).scalar_one()
    available = chart.organization_available(session, organization_id=org_id, now=now)
    commission = (
        chart.organization_commission(session, organization_id=org_id, now=now).id
        if kind is OrganizationKind.INTERMEDIARY
        else None
    )
    session.execute(
        _orgs.update()
        .where(_orgs.c.id == org_id)
        .values(available_account_id=available.id, commission_account_id=commission)
    )
    return _organization(session, org_id)


def get_organization(session: Session, *, principal: Principal, organization_id: int) -> Organization:
    if not principal.platform_wide and principal.organization_id != organization_id:
        raise NotFound("organisation not found")
    return _organization(session, organization_id)


def list_organizations(session: Session) -> list[Organization]:
    return [_to_org(r) for r in session.execute(select(_orgs).order_by(_orgs.c.id))]


def record_deposit(
    session: Session,
    *,
    principal: Principal,
    organization_id: int,
    amount: int,
    reference: str,
    now: datetime,
) -> int:
    """An admin records money a buyer has paid in; idempotent by the deposit's reference."""
    principal.require(Role.ADMIN)
    org = _organization(session, organization_id)
    if org.kind is not OrganizationKind.BUYER:
        raise ValidationFailed("deposits are made by buyers", field="organization")
    reference = reference.strip()
    if not reference or len(reference) > 100:
        raise ValidationFailed("a deposit needs a reference of 1 to 100 characters", field="reference")
    cash = chart.platform_cash(session, now=now)
    entry = journal.post(
        session,
        EntryDraft(
            key=f"deposit:{org.id}:{reference}",
            postings=(
                Posting.debit(cash.id, amount, chart.CURRENCY),
                Posting.credit(org.available_account_id, amount, chart.CURRENCY),
            ),
            effective_at=now,
            description=f"deposit {reference}",
            metadata={"kind": "deposit", "organization_id": org.id, "reference": reference},
        ),
        now=now,
    )
    return entry.id


@dataclass(frozen=True, slots=True)
class OrganizationBalance:
    organization_id: int
    available: int
    held: int
    commission: int | None


def organization_balance(
    session: Session, *, principal: Principal, organization_id: int
) -> OrganizationBalance:
    org = get_organization(session, principal=principal, organization_id=organization_id)
    available = journal.balance(session, org.available_account_id).available
    held_ids = select(_orders.c.held_account_id).where(_orders.c.buyer_id == org.id)
    accounts = table_of(AccountRow)
    held = session.execute(
        select(func.coalesce(func.sum(accounts.c.balance), 0)).where(accounts.c.id.in_(held_ids))
    ).scalar_one()
    commission = (
        journal.balance(session, org.commission_account_id).posted if org.commission_account_id else None
    )
    return OrganizationBalance(org.id, available, int(held), commission)


# --- API keys ------------------------------------------------------------------------------------


def create_api_key(session: Session, *, organization_id: int | None, role: Role, now: datetime) -> str:
    """Mint a key; the plaintext is returned once and never stored."""
    if role is Role.ADMIN and organization_id is not None:
        raise ValidationFailed("an admin key belongs to no organisation", field="org")
    if role in (Role.BUYER, Role.INTERMEDIARY):
        if organization_id is None:
            raise ValidationFailed(f"a {role.value} key needs an organisation", field="org")
        org = _organization(session, organization_id)
        if org.kind.value != role.value:
            raise ValidationFailed(
                f"organisation {org.id} is a {org.kind.value}, not a {role.value}", field="role"
            )
    if role is Role.AUDITOR and organization_id is not None:
        _organization(session, organization_id)
    public_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    session.execute(
        insert(_keys),
        {
            "public_id": public_id,
            "secret_hash": _hash_secret(secret),
            "organization_id": organization_id,
            "role": role.value,
            "created_at": now,
        },
    )
    return f"{KEY_PREFIX}_{public_id}_{secret}"


def authenticate(session: Session, token: str | None) -> Principal:
    """Find the principal for a bearer token, comparing hashes in constant time."""
    if not token or not token.startswith(f"{KEY_PREFIX}_"):
        raise Unauthorized("missing or malformed API key")
    parts = token.split("_", 2)
    if len(parts) != 3:
        raise Unauthorized("missing or malformed API key")
    _, public_id, secret = parts
    row = session.execute(select(_keys).where(_keys.c.public_id == public_id)).first()
    expected = row.secret_hash if row is not None else _hash_secret("")
    if not hmac.compare_digest(expected, _hash_secret(secret)) or row is None or row.revoked_at is not None:
        raise Unauthorized("invalid API key")
    return Principal(key_id=row.id, role=Role(row.role), organization_id=row.organization_id)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- homeworkers ---------------------------------------------------------------------------------


def register_homeworker(
    session: Session,
    *,
    principal: Principal,
    keyring: pii.Keyring,
    name: str,
    phone: str,
    region: str,
    wallet_provider: str,
    wallet_account: str,
    nik: str | None,
    consent_at: datetime | None,
    language: str,
    now: datetime,
    organization_id: int | None = None,
) -> Homeworker:
    """Register her with the organisation she works with: the caller's own, or for an admin
    key (which has none) the one it names."""
    principal.require(Role.BUYER, Role.INTERMEDIARY, Role.ADMIN)
    owner = _registering_organization(session, principal=principal, organization_id=organization_id)
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed("a name of 1 to 200 characters is needed", field="name")
    e164 = _phone(phone, "phone")
    wallet = _phone(wallet_account, "wallet.account")
    if not wages.is_known_region(region):
        raise ValidationFailed(f"unknown wage region {region!r}", field="region")
    channel = WALLET_CHANNELS.get(wallet_provider.lower())
    if channel is None:
        raise ValidationFailed(
            f"unknown wallet provider; use one of {', '.join(sorted(WALLET_CHANNELS))}",
            field="wallet.provider",
        )
    if language not in ("id", "en"):
        raise ValidationFailed("language is 'id' or 'en'", field="language")
    nik_digits = None
    if nik is not None:
        nik_digits = nik.strip()
        if len(nik_digits) != 16 or not nik_digits.isdigit():
            raise ValidationFailed("a NIK is 16 digits", field="nik")
    # The unique constraints catch a duplicate indexed with the primary key; during a key
    # rotation she may still be indexed with an older one, so look for every key's index.
    phone_indexes = pii.blind_indexes(keyring, e164, purpose="phone")
    if session.execute(select(exists().where(_workers.c.phone_index.in_(phone_indexes)))).scalar():
        raise DuplicateReference("a homeworker with this phone number is already registered", field="phone")
    nik_indexes = pii.blind_indexes(keyring, nik_digits, purpose="nik") if nik_digits else ()
    nik_taken = select(exists().where(_workers.c.nik_index.in_(nik_indexes)))
    if nik_indexes and session.execute(nik_taken).scalar():
        raise DuplicateReference("a homeworker with this NIK is already registered", field="nik")
    worker_id = session.execute(
        insert(_workers).returning(_workers.c.id),
        {
            "name_enc": pii.encrypt(keyring, name, context="homeworker.name"),
            "phone_enc": pii.encrypt(keyring, e164, context="homeworker.phone"),
            "phone_index": phone_indexes[0],
            "phone_masked": phones.mask(e164),
            "nik_enc": pii.encrypt(keyring, nik_digits, context="homeworker.nik") if nik_digits else None,
            "nik_index": nik_indexes[0] if nik_indexes else None,
            "region": region,
            "wallet_provider": wallet_provider.lower(),
            "wallet_channel": channel,
            "wallet_account_enc": pii.encrypt(keyring, wallet, context="homeworker.wallet"),
            "wallet_registered": False,
            "language": language,
            "consent_at": consent_at,
            "pin_failures": 0,
            "registered_by": owner,
            "created_at": now,
        },
    ).scalar_one()
    link(session, homeworker_id=worker_id, organization_id=owner, now=now)
    return get_homeworker(session, principal=principal, keyring=keyring, homeworker_id=worker_id)


def _registering_organization(session: Session, *, principal: Principal, organization_id: int | None) -> int:
    if principal.organization_id is not None:
        if organization_id is not None and organization_id != principal.organization_id:
            raise ValidationFailed(
                "only an admin key names the organisation she works with", field="organization_id"
            )
        return principal.organization_id
    if organization_id is None:
        raise ValidationFailed(
            "an admin key names the organisation she works with (organization_id)", field="organization_id"
        )
    try:
        _organization(session, organization_id)
    except NotFound as exc:
        raise ValidationFailed("no such organisation", field="organization_id") from exc
    return organization_id


def link(session: Session, *, homeworker_id: int, organization_id: int, now: datetime) -> None:
    """Let an organisation see a homeworker (it registered her, or she works its orders)."""
    found = session.execute(
        select(_links.c.homeworker_id).where(
            _links.c.homeworker_id == homeworker_id, _links.c.organization_id == organization_id
        )
    ).first()
    if found is None:
        session.execute(
            insert(_links),
            {"homeworker_id": homeworker_id, "organization_id": organization_id, "created_at": now},
        )


def set_wallet_registered(
    session: Session, *, principal: Principal, homeworker_id: int, registered: bool
) -> None:
    """Record that her wallet is (or is no longer) a registered one, as an organisation she
    works with has seen: a registered wallet takes Rp 20,000,000, an unregistered one Rp
    2,000,000 (DOMAIN.md). A payout refused for the lower limit fails and stays owed; the next
    run, after she upgrades, pays her."""
    principal.require(Role.ADMIN, Role.BUYER, Role.INTERMEDIARY)
    check_visible(session, principal=principal, homeworker_id=homeworker_id)
    session.execute(
        update(_workers).where(_workers.c.id == homeworker_id).values(wallet_registered=registered)
    )


def check_visible(session: Session, *, principal: Principal, homeworker_id: int) -> None:
    if principal.platform_wide:
        if session.execute(select(exists().where(_workers.c.id == homeworker_id))).scalar():
            return
        raise NotFound("homeworker not found")
    visible = session.execute(
        select(
            exists().where(
                _links.c.homeworker_id == homeworker_id, _links.c.organization_id == principal.organization_id
            )
        )
    ).scalar()
    if not visible:
        raise NotFound("homeworker not found")


def get_homeworker(
    session: Session, *, principal: Principal, keyring: pii.Keyring, homeworker_id: int
) -> Homeworker:
    check_visible(session, principal=principal, homeworker_id=homeworker_id)
    row = session.execute(select(_workers).where(_workers.c.id == homeworker_id)).one()
    wallet = pii.decrypt(keyring, row.wallet_account_enc, context="homeworker.wallet")
    return Homeworker(
        id=row.id,
        name=pii.decrypt(keyring, row.name_enc, context="homeworker.name"),
        phone_masked=row.phone_masked,
        region=row.region,
        wallet_provider=row.wallet_provider,
        wallet_channel=row.wallet_channel,
        wallet_account_masked=phones.mask(wallet),
        wallet_registered=row.wallet_registered,
        language=row.language,
        consent_at=row.consent_at,
        has_nik=row.nik_enc is not None,
        created_at=row.created_at,
    )


def find_homeworker_by_phone(session: Session, *, keyring: pii.Keyring, phone: str) -> int | None:
    """The homeworker behind a phone number (for the SMS and USSD gateways), or None."""
    try:
        e164 = phones.normalise(phone)
    except phones.InvalidPhone:
        return None
    indexes = pii.blind_indexes(keyring, e164, purpose="phone")
    query = select(_workers.c.id).where(_workers.c.phone_index.in_(indexes)).order_by(_workers.c.id).limit(1)
    return session.execute(query).scalar_one_or_none()


def earnings_account(
    session: Session, *, homeworker_id: int, buyer_id: int, now: datetime, for_update: bool = False
) -> int:
    """The ledger account of what this buyer owes this homeworker, opened on first use.

    ``for_update`` locks its row: her advance balance with this buyer changes only under that
    lock (a confirmation takes it too), so no recovery reads a balance about to change.
    """
    query = select(_earnings.c.account_id).where(
        _earnings.c.homeworker_id == homeworker_id, _earnings.c.buyer_id == buyer_id
    )
    if for_update:
        query = query.with_for_update()
    found = session.execute(query).scalar_one_or_none()
    if found is not None:
        return int(found)
    account = chart.earnings(session, homeworker_id=homeworker_id, buyer_id=buyer_id, now=now)
    # Her first two confirmations with a buyer may open it at once: the second waits for the
    # first and then finds its row (the same account: its code is derived from the pair).
    session.execute(
        insert_or_ignore(session, _earnings, ["homeworker_id", "buyer_id"]).values(
            homeworker_id=homeworker_id, buyer_id=buyer_id, account_id=account.id
        )
    )
    return int(session.execute(query).scalar_one())


def earnings_accounts(session: Session, *, homeworker_id: int, buyer_id: int | None = None) -> dict[int, int]:
    """Buyer id → earnings account id for a homeworker (one buyer, or all)."""
    query = select(_earnings.c.buyer_id, _earnings.c.account_id).where(
        _earnings.c.homeworker_id == homeworker_id
    )
    if buyer_id is not None:
        query = query.where(_earnings.c.buyer_id == buyer_id)
    return {int(b): int(a) for b, a in session.execute(query)}


def _phone(text: str, field: str) -> str:
    try:
        return phones.normalise(text)
    except phones.InvalidPhone as exc:
        raise ValidationFailed(f"{field}: {exc.message}", field=field) from exc


def _organization(session: Session, organization_id: int) -> Organization:
    row = session.execute(select(_orgs).where(_orgs.c.id == organization_id)).first()
    if row is None:
        raise NotFound("organisation not found")
    return _to_org(row)


def _to_org(row: Row[Any]) -> Organization:
    return Organization(
        id=row.id,
        name=row.name,
        kind=OrganizationKind(row.kind),
        available_account_id=row.available_account_id,
        commission_account_id=row.commission_account_id,
        created_at=row.created_at,
    )
