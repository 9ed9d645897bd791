"""Rows of the piece-rate domain, on ledger.tables.Base.

Money columns are whole rupiah in BigInteger; rates are Numeric with four decimal places,
stored exactly as agreed. Personal data (names, phones, NIK, wallet numbers) is stored
only encrypted, with keyed-hash blind indexes for lookups (see payments.pii).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ledger.tables import Base, BigId, JsonDoc

RATE = Numeric(18, 4)


class OrganizationRow(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    available_account_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_accounts.id"))
    commission_account_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_accounts.id"))
    created_at: Mapped[datetime]

    __table_args__ = (CheckConstraint("kind IN ('buyer','intermediary')", name="kind"),)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    organization_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("role IN ('admin','buyer','intermediary','auditor')", name="role"),)


class HomeworkerRow(Base):
    __tablename__ = "homeworkers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name_enc: Mapped[str] = mapped_column(Text)
    phone_enc: Mapped[str] = mapped_column(Text)
    phone_index: Mapped[str] = mapped_column(String(64), unique=True)
    phone_masked: Mapped[str] = mapped_column(String(32))
    nik_enc: Mapped[str | None] = mapped_column(Text)
    nik_index: Mapped[str | None] = mapped_column(String(64), unique=True)
    region: Mapped[str] = mapped_column(String(64))
    wallet_provider: Mapped[str] = mapped_column(String(32))
    wallet_channel: Mapped[str] = mapped_column(String(32))
    wallet_account_enc: Mapped[str] = mapped_column(Text)
    wallet_registered: Mapped[bool] = mapped_column(Boolean, default=False)
    wallet_verified_at: Mapped[datetime | None]
    language: Mapped[str] = mapped_column(String(2), default="id")
    consent_at: Mapped[datetime | None]
    pin_hash: Mapped[str | None] = mapped_column(Text)
    pin_failures: Mapped[int] = mapped_column(Integer, default=0)
    pin_locked_until: Mapped[datetime | None]
    registered_by: Mapped[int] = mapped_column(BigInteger, ForeignKey("organizations.id"))
    created_at: Mapped[datetime]


class HomeworkerLinkRow(Base):
    """Which organisations may see a homeworker: who registered her, whose orders she works."""

    __tablename__ = "homeworker_links"

    homeworker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("homeworkers.id"), primary_key=True)
    organization_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("organizations.id"), primary_key=True)
    created_at: Mapped[datetime]


class EarningsAccountRow(Base):
    """A homeworker's earned balance owed by one buyer: one ledger account per pair."""

    __tablename__ = "earnings_accounts"

    homeworker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("homeworkers.id"), primary_key=True)
    buyer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("organizations.id"), primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_accounts.id"), unique=True)


class OrderRow(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    buyer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("organizations.id"), index=True)
    reference: Mapped[str] = mapped_column(String(100))
    product: Mapped[str] = mapped_column(String(200))
    rate: Mapped[Decimal] = mapped_column(RATE)
    unit: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    minutes_per_piece: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    quantity: Mapped[int] = mapped_column(BigInteger)
    deadline: Mapped[date] = mapped_column(Date)
    region: Mapped[str] = mapped_column(String(64))
    intermediary_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), index=True
    )
    commission_kind: Mapped[str | None] = mapped_column(String(16))
    commission_rate: Mapped[Decimal | None] = mapped_column(RATE)
    status: Mapped[str] = mapped_column(String(16), default="open")
    held_account_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_accounts.id"))
    hold_amount: Mapped[int] = mapped_column(BigInteger)
    fair_rate: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("buyer_id", "reference", name="uq_orders_buyer_reference"),
        CheckConstraint("status IN ('open','closed','cancelled')", name="status"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )


class AssignmentRow(Base):
    __tablename__ = "assignments"

    order_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orders.id"), primary_key=True)
    homeworker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("homeworkers.id"), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    delivered: Mapped[int] = mapped_column(BigInteger, default=0)
    accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("accepted + rejected <= delivered", name="within_delivered"),
        CheckConstraint("accepted <= quantity", name="accepted_within_quantity"),
        Index("ix_assignments_homeworker", "homeworker_id"),
    )


class DeliveryRow(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orders.id"), index=True)
    homeworker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("homeworkers.id"), index=True)
    pieces: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(24), default="awaiting_confirmation")
    accepted: Mapped[int | None] = mapped_column(BigInteger)
    rejected: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    earning: Mapped[int | None] = mapped_column(BigInteger)
    commission: Mapped[int | None] = mapped_column(BigInteger)
    recovered: Mapped[int | None] = mapped_column(BigInteger)
    entry_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_entries.id"))
    recorded_by: Mapped[int] = mapped_column(BigInteger, ForeignKey("organizations.id"))
    recorded_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("pieces > 0", name="pieces_positive"),
        CheckConstraint("status IN ('awaiting_confirmation','confirmed')", name="status"),
    )


class AdjustmentRow(Base):
    __tablename__ = "adjustments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    buyer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("organizations.id"), index=True)
    homeworker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("homeworkers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    memo: Mapped[str] = mapped_column(Text)
    delivery_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("deliveries.id"))
    entry_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_entries.id"))
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("kind IN ('allowance','bonus','advance','recovery')", name="kind"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )


class IdempotencyRow(Base):
    """The first response to a POST with an Idempotency-Key, replayed for the same request."""

    __tablename__ = "idempotency_keys"

    principal: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(index=True)  # the hourly purge reads by age


class PayoutRunRow(Base):
    __tablename__ = "payout_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    buyer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("organizations.id"), index=True)
    status: Mapped[str] = mapped_column(String(24))
    count: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by: Mapped[int] = mapped_column(BigInteger, ForeignKey("api_keys.id"))
    approved_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("api_keys.id"))
    created_at: Mapped[datetime]
    approved_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(
            "status IN ('created','awaiting_approval','dispatching','completed','rejected')", name="status"
        ),
    )


class PayoutRow(Base):
    """One payment instruction to one homeworker's wallet, with one idempotency key for life."""

    __tablename__ = "payouts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("payout_runs.id"), index=True)
    buyer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("organizations.id"), index=True)
    homeworker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("homeworkers.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    provider: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    account_enc: Mapped[str] = mapped_column(Text)
    provider_reference: Mapped[str | None] = mapped_column(String(100), index=True)
    earned_account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_accounts.id"))
    hold_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_holds.id"))
    fee_hold_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_holds.id"))
    dispatch_entry_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_entries.id"))
    pieces: Mapped[int] = mapped_column(BigInteger, default=0)
    period_from: Mapped[datetime | None]
    period_to: Mapped[datetime | None]
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    settled_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "status IN ('created','submitted','unknown','succeeded','failed','reversed')", name="status"
        ),
        Index("ix_payouts_run_status", "run_id", "status"),
    )


class PayoutEventRow(Base):
    """Every state change of a payout, and why: the audit trail of the state machine."""

    __tablename__ = "payout_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    payout_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("payouts.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class ProviderCallbackRow(Base):
    """Every authenticated provider callback, matched to a payout or kept for reconciliation."""

    __tablename__ = "provider_callbacks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(200))
    payout_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("payouts.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]]
    outcome: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_provider_callbacks_event"),
        # the sweep's question, "which are not applied yet?", reads only those
        Index(
            "ix_provider_callbacks_pending",
            "received_at",
            postgresql_where=text("outcome = 'pending'"),
            sqlite_where=text("outcome = 'pending'"),
        ),
    )


class OutboxRow(Base):
    """Work to hand to the queue, written in the same transaction as the state that needs it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    available_at: Mapped[datetime] = mapped_column(index=True)
    relayed_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime]


class DisputeRow(Base):
    """A problem a homeworker reported (USSD/SMS), visible to the buyer and auditors."""

    __tablename__ = "disputes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    homeworker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("homeworkers.id"), index=True)
    buyer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("organizations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(8))
    session_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    notes: Mapped[list[Any]] = mapped_column(JsonDoc, default=list)
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


# --- channels: USSD and SMS (issue 5) ---------------------------------------------------------


class UssdSessionRow(Base):
    """One USSD session as the gateway names it: whose it is, its PIN verdict, when last seen.

    The PIN is checked once per session; ``pin_tag`` (a keyed hash of the session id and the
    PIN that was checked, never the PIN) binds the cached verdict to that PIN.
    """

    __tablename__ = "ussd_sessions"

    session_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    homeworker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("homeworkers.id"), index=True)
    pin_ok: Mapped[bool | None] = mapped_column(Boolean)
    pin_tag: Mapped[str | None] = mapped_column(String(100))
    dispute_ref: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)


class SmsMessageRow(Base):
    """Every SMS Upah sends, once per ``dedupe_key``: what, to whom (sealed), through which gateway."""

    __tablename__ = "sms_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    homeworker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("homeworkers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    to_enc: Mapped[str | None] = mapped_column(Text)
    to_masked: Mapped[str | None] = mapped_column(String(32))
    text_enc: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("status IN ('pending','sent','failed','skipped')", name="status"),)


# --- audit: reconciliation (issue 6) -----------------------------------------------------------


class ReconciliationRunRow(Base):
    """One provider statement matched against the ledger's payouts; stored with its input's SHA-256.

    ``matches`` holds every statement line that matched, as ``[line, payout_id]`` pairs; the
    exceptions are rows of their own so that each can be annotated and resolved.
    """

    __tablename__ = "reconciliation_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    statement_format: Mapped[str] = mapped_column(String(16))
    input_sha256: Mapped[str] = mapped_column(String(64), index=True)
    input_bytes: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[int] = mapped_column(Integer)
    organization_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("organizations.id"), index=True
    )
    created_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("api_keys.id"))
    source: Mapped[str] = mapped_column(String(16))
    period_from: Mapped[datetime | None]
    period_to: Mapped[datetime | None]
    window_seconds: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]]
    matches: Mapped[str] = mapped_column(Text, default="[]")
    """JSON text of ``[line, payout_id]`` pairs: 100,000 of them are written once and read whole."""
    report_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]

    __table_args__ = (CheckConstraint("source IN ('api','cli','nightly')", name="source"),)


class ReconciliationExceptionRow(Base):
    """A statement line or payout that did not reconcile; open until an auditor resolves it."""

    __tablename__ = "reconciliation_exceptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("reconciliation_runs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    line: Mapped[int | None] = mapped_column(Integer)
    payout_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("payouts.id"), index=True)
    buyer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("organizations.id"))
    reference: Mapped[str | None] = mapped_column(String(200))
    provider_reference: Mapped[str | None] = mapped_column(String(200))
    ledger_amount: Mapped[int | None] = mapped_column(BigInteger)
    provider_amount: Mapped[int | None] = mapped_column(BigInteger)
    ledger_status: Mapped[str | None] = mapped_column(String(16))
    provider_status: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("api_keys.id"))
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(
            "kind IN ('missing_at_provider','unknown_at_provider','amount_mismatch','duplicate',"
            "'status_mismatch')",
            name="kind",
        ),
        CheckConstraint("status IN ('open','resolved')", name="status"),
    )


class ReconciliationNoteRow(Base):
    """An auditor's note on an exception, and every resolve or reopen: never updated or deleted."""

    __tablename__ = "reconciliation_notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    exception_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("reconciliation_exceptions.id"), index=True
    )
    action: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    key_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("api_keys.id"))
    created_at: Mapped[datetime]

    __table_args__ = (CheckConstraint("action IN ('note','resolve','reopen')", name="action"),)


# --- dashboard: signed-out sessions -------------------------------------------------------------


class DashboardSessionEndedRow(Base):
    """A dashboard session signed out before its cookie expired: the cookie is refused from then on.

    The cookie is sealed and stateless otherwise; a row lives until the cookie's own expiry
    (after which the cookie is refused anyway) and is then purged.
    """

    __tablename__ = "dashboard_sessions_ended"

    session_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
