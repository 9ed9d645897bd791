"""Request and response bodies. Money is a string of digits in the minor unit; rates are
decimal strings. Requests refuse unknown fields."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

Digits = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,18}$")]
DecimalText = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,12}(\.[0-9]{1,4})?$")]
Pieces = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)]
Count = Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)]
Id = Annotated[int, Field(strict=True, ge=1, le=2**63 - 1)]
IdParam = Annotated[int, Ge(1), Le(2**63 - 1)]
"""An id in a path or query string: a positive 64-bit integer (parsed from text)."""
Currency = Literal["IDR"]
UnitName = Literal["piece", "pasang", "lusin", "kodi", "slop"]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """A NUL character cannot be stored in text (PostgreSQL refuses it): refused as input."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text may not contain NUL characters")
        return value


class Money(BaseModel):
    amount: Digits = Field(description="whole units of the currency's minor unit, as a string of digits")
    currency: Currency = "IDR"

    @classmethod
    def of(cls, amount: int) -> Money:
        return cls(amount=str(amount), currency="IDR")


class MoneyIn(Request):
    amount: Digits
    currency: Currency = "IDR"


class Rate(BaseModel):
    rate: str = Field(description="decimal string, up to 4 decimal places")
    currency: Currency = "IDR"
    unit: UnitName = "piece"


class RateIn(Request):
    rate: DecimalText
    currency: Currency = "IDR"
    unit: UnitName = "piece"


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorBody(BaseModel):
    error: ErrorDetail


# organisations -----------------------------------------------------------------------------


class OrganizationCreate(Request):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    kind: Literal["buyer", "intermediary"]


class OrganizationRead(BaseModel):
    id: int
    name: str
    kind: str
    created_at: datetime


class DepositCreate(Request):
    amount: MoneyIn
    reference: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class DepositRead(BaseModel):
    organization_id: int
    entry_id: int
    amount: Money
    reference: str


class OrganizationBalanceRead(BaseModel):
    organization_id: int
    available: Money
    held: Money
    commission: Money | None = None


# homeworkers -------------------------------------------------------------------------------


class WalletIn(Request):
    provider: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    account: Annotated[str, StringConstraints(min_length=1, max_length=40)]


class WalletRead(BaseModel):
    provider: str
    account: str = Field(description="masked")
    registered: bool


class HomeworkerCreate(Request):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    phone: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    region: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    wallet: WalletIn
    nik: Annotated[str, StringConstraints(pattern=r"^[0-9]{16}$")] | None = None
    consent_at: datetime | None = None
    language: Literal["id", "en"] = "id"
    organization_id: int | None = Field(
        default=None, ge=1, description="admin keys only: the organisation she works with"
    )


class HomeworkerRead(BaseModel):
    id: int
    name: str
    phone: str = Field(description="masked")
    region: str
    wallet: WalletRead
    language: str
    consent_at: datetime | None
    has_nik: bool
    created_at: datetime


class HomeworkerBalanceRead(BaseModel):
    homeworker_id: int
    earned: Money
    pending: Money
    paid: Money
    awaiting_confirmation_pieces: int


class WalletRegistration(Request):
    registered: bool


class PinResetRead(BaseModel):
    homeworker_id: int
    pin_cleared: bool
    """False when she had no PIN yet: nothing changed and no SMS was sent."""


# orders ---------------------------------------------------------------------------------------


class CommissionIn(Request):
    """A rate as CONTRACT.md writes rates (``{"rate": "50", "currency": "IDR"}``: rupiah per
    accepted piece), or with ``kind: "percent"`` a percentage of the earnings."""

    kind: Literal["per_piece", "percent"] = "per_piece"
    rate: DecimalText
    currency: Currency = "IDR"


def _number_as_text(value: Any) -> Any:
    """A time, not money: a JSON number is as good as its text (2.5 and "2.5" alike)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class AssignmentIn(Request):
    homeworker_id: Id
    quantity: Pieces


class OrderCreate(Request):
    reference: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    product: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    piece_rate: RateIn
    minutes_per_piece: Annotated[
        str,
        BeforeValidator(_number_as_text),
        StringConstraints(pattern=r"^[0-9]{1,5}(\.[0-9]{1,2})?$"),
        Field(description='minutes one piece takes, "12" or "12.5" (a JSON number is taken too)'),
    ]
    quantity: Pieces
    deadline: date
    region: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    intermediary_id: Id | None = None
    commission_rate: CommissionIn | None = None
    assignments: Annotated[list[AssignmentIn], Field(min_length=1, max_length=1000)]


class AssignmentRead(BaseModel):
    homeworker_id: int
    quantity: int
    delivered: int
    accepted: int
    rejected: int


class CommissionRead(BaseModel):
    kind: str
    rate: str
    currency: str = "IDR"


class OrderProgress(BaseModel):
    delivered: int
    accepted: int
    rejected: int


class OrderRead(BaseModel):
    id: int
    buyer_id: int
    reference: str
    product: str
    piece_rate: Rate
    minutes_per_piece: str
    quantity: int
    deadline: date
    region: str
    intermediary_id: int | None
    commission_rate: CommissionRead | None
    status: str
    hold: Money
    held_remaining: Money
    progress: OrderProgress
    fair_rate: dict[str, Any]
    assignments: list[AssignmentRead]
    created_at: datetime
    closed_at: datetime | None


class DeliveryCreate(Request):
    homeworker_id: Id
    pieces: Pieces


class ConfirmationCreate(Request):
    accepted: Count
    rejected: Count
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class DeliveryRead(BaseModel):
    id: int
    order_id: int
    homeworker_id: int
    pieces: int
    status: str
    accepted: int | None
    rejected: int | None
    reason: str | None
    earning: Money | None
    commission: Money | None
    advance_recovered: Money | None
    entry_id: int | None
    recorded_at: datetime
    confirmed_at: datetime | None


class AdjustmentCreate(Request):
    kind: Literal["allowance", "bonus", "advance"]
    amount: MoneyIn
    memo: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class AdjustmentRead(BaseModel):
    id: int
    homeworker_id: int
    kind: str
    amount: Money
    memo: str
    entry_id: int | None
    created_at: datetime


class PayslipOrderRead(BaseModel):
    order_id: int
    reference: str
    product: str
    piece_rate: Rate
    delivered: int
    accepted: int
    rejected: int
    rejection_reasons: list[str]
    earnings: Money
    effective_hourly: str
    benchmark_hourly: str
    meets_benchmark: bool


class PayslipPayoutRead(BaseModel):
    id: int
    date: str
    amount: Money
    status: str
    reference: str
    failure_reason: str | None


class PayslipRead(BaseModel):
    homeworker_id: int
    name: str
    region: str
    period_from: datetime | None
    period_to: datetime | None
    opening_balance: Money
    orders: list[PayslipOrderRead]
    adjustments: list[AdjustmentRead]
    payouts: list[PayslipPayoutRead]
    closing_balance: Money
    totals: dict[str, Money]


# payouts --------------------------------------------------------------------------------------


class PayoutRunCreate(Request):
    buyer_id: Id | None = Field(
        default=None,
        description="the buyer organisation the run pays for: required of an admin key; "
        "a buyer key may leave it out or name only its own organisation",
    )


class ConflictSettlement(Request):
    provider_paid: bool = Field(
        description="what the provider's statement shows: true, it paid her (the payout succeeds); "
        "false, it did not (the held amount goes back to her earnings for the next run)"
    )
    reason: str = Field(min_length=1, max_length=500, description="the statement or case this rests on")


class PayoutLine(BaseModel):
    id: int
    homeworker_id: int
    amount: Money
    status: str


class PayoutRunRead(BaseModel):
    id: int
    status: str
    count: int
    total: Money
    fee: Money = Field(
        description="provider fees, paid by the buyer on top — never taken from the homeworker"
    )
    created_at: datetime
    approved_at: datetime | None
    completed_at: datetime | None
    payouts: list[PayoutLine]


class PayoutRead(BaseModel):
    id: int
    run_id: int
    homeworker_id: int
    amount: Money
    fee: Money
    status: str
    reference: str
    provider: str
    provider_reference: str | None
    failure_code: str | None
    failure_reason: str | None
    attempts: int
    created_at: datetime
    submitted_at: datetime | None
    settled_at: datetime | None
    conflict_held: Money | None = Field(
        default=None,
        description=(
            "What is held from her earnings while a conflict about this payout awaits an admin's "
            "settlement (POST /v1/payouts/{id}/conflict): the provider said it paid a payout we had "
            "failed. Null when there is no such conflict."
        ),
    )
