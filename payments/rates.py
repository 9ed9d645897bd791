"""Piece rates: what a piece of work earns, what an order must hold, and whether it is fair.

**Units.** Work is quoted per *piece*, per *pasang* (pair), per *lusin* (dozen, 12), per
*kodi* (score, 20) or per *slop* (12). The rate is kept exactly as quoted, with its unit,
and counts are always in pieces: an earning is ``pieces × rate ÷ pieces_per_unit``, with
the one division done last. A per-piece rate is never stored, because ``Rp2,000 per
slop ÷ 12`` does not terminate. A *pasang* is one unit of work — gluing the insoles of a
pair of sandals is one job — so a pair counts as one piece (``pieces_per_unit == 1``) and
counts for pasang-rated work are in pairs.

**The one earning rule.** Each delivery's earning is the increment of
``round_half_even(cumulative accepted × rate)`` to the whole rupiah
(:func:`cumulative_earning`)::

    earning_k = round(accepted_1 + … + accepted_k) − round(accepted_1 + … + accepted_{k−1})

so the deliveries of an order always add up to exactly ``round(total accepted × rate)``,
however the work was split — rounding each delivery on its own would let ten deliveries
of one Rp12.5 piece earn Rp120 or Rp130 instead of Rp125, and could exceed the hold.
Commission follows the same rule. :func:`order_hold_amount` holds the earnings and
commission of the whole quantity; because the rule is monotone and telescoping, no split
of up to ``quantity`` accepted pieces ever captures more than that hold. Rounding is
:func:`ledger.money.round_minor` (half to even), the only rounding of money in Upah.

**Commission** is the intermediary's: per piece, or a percentage of the homeworker's
earning. The buyer pays it on top; it is never taken from the homeworker.

**Fair-rate benchmark.** Effective hourly pay = rate × 60 ÷ minutes per piece, against the
homeworker's regional minimum ÷ 173 (:mod:`payments.wages`). Micro and small enterprises
are exempt from the minimum wage, so a rate below it is a *benchmark finding*, shown on
orders, payslips and reports, and refused only where the deployment's policy is
``block``. Comparisons are exact (cross-multiplied); figures are quantized for display.

**Deductions** (advance recovery, agreed deductions for faulty work) take at most half of
any one payment (:func:`cap_deductions`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import (
    ROUND_CEILING,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from enum import StrEnum

from ledger.money import round_minor
from payments.errors import RateBelowMinimumWage, ValidationFailed
from payments.wages import HOURS_PER_MONTH, MinimumWage, minimum_wage

MAX_INTEGER_DIGITS = 11
MAX_DECIMAL_PLACES = 4
"""Fifteen significant digits at most: SQLite keeps a NUMERIC as a double, which holds any
15-digit decimal exactly — so the rate stored is the rate agreed, on either database."""
MAX_SIGNIFICANT_DIGITS = 30
"""Bounds every product of a rate and a count well inside the exact-arithmetic context."""
MAX_MINUTES_PER_PIECE = Decimal(10_000)
"""A week of work for one piece is an input error, not a product."""

DEDUCTION_SHARE_DENOMINATOR = 2
"""Deductions take at most 1/2 of any one payment."""

_RATE_TEXT = re.compile(rf"[0-9]{{1,{MAX_INTEGER_DIGITS}}}(?:\.[0-9]{{1,{MAX_DECIMAL_PLACES}}})?")
_MINUTES_TEXT = re.compile(r"[0-9]{1,5}(?:\.[0-9]{1,2})?")

# Products of rates, counts and wages have a few dozen digits at most: with 80 digits of
# precision a multiplication is exact, and Inexact is trapped to prove it.
_EXACT = Context(prec=80, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
# Divisions may not terminate (÷ 12, ÷ 173); 80 digits still decide any rounding exactly.
_DIVIDE = Context(prec=80, traps=[InvalidOperation, DivisionByZero, Overflow])

DISPLAY = Decimal("0.01")
RATIO = Decimal("0.0001")


class InvalidRate(ValidationFailed):
    """A rate that is not a positive decimal of bounded size and precision."""

    code = "invalid_rate"


class InvalidCommission(InvalidRate):
    code = "invalid_commission"


class InvalidMinutes(InvalidRate):
    code = "invalid_minutes"


class InvalidCount(ValidationFailed):
    """A piece count or amount that is not a non-negative int."""

    code = "invalid_count"


class RateBelowBenchmark(RateBelowMinimumWage):
    """A rate under the regional minimum-wage benchmark where the policy is ``block``."""

    def __init__(self, message: str, *, finding: FairRateFinding) -> None:
        super().__init__(
            message,
            region=finding.region,
            effective_hourly=str(finding.effective_hourly),
            benchmark_hourly=str(finding.benchmark_hourly),
            fair_rate=str(finding.fair_rate),
            fair_rate_per_piece=str(finding.fair_rate_per_piece),
        )
        self.finding = finding


class Unit(StrEnum):
    """The unit a rate is quoted in; counts are always in pieces."""

    PIECE = "piece"
    PASANG = "pasang"
    """A pair: one unit of work (a pair of sandal insoles is one job)."""
    LUSIN = "lusin"
    """A dozen."""
    KODI = "kodi"
    """A score (twenty)."""
    SLOP = "slop"
    """Twelve (shuttlecock feathers, cigarettes)."""

    @property
    def pieces_per_unit(self) -> int:
        return _PIECES_PER_UNIT[self]

    def to_pieces(self, count: int) -> int:
        """Convert a count quoted in this unit ("10 kodi") to pieces (200), exactly."""
        return _check_count(count, "count") * self.pieces_per_unit


_PIECES_PER_UNIT: dict[Unit, int] = {
    Unit.PIECE: 1,
    Unit.PASANG: 1,
    Unit.LUSIN: 12,
    Unit.KODI: 20,
    Unit.SLOP: 12,
}


class CommissionKind(StrEnum):
    PER_PIECE = "per_piece"
    PERCENT = "percent"


class FairRatePolicy(StrEnum):
    """What to do with a rate below the benchmark (``UPAH_FAIR_RATE_POLICY``)."""

    BLOCK = "block"
    WARN = "warn"
    OFF = "off"


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidCount(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _check_rate(rate: Decimal, *, error: type[InvalidRate] = InvalidRate) -> Decimal:
    if not isinstance(rate, Decimal):
        raise error(f"a rate must be a Decimal, got {type(rate).__name__}")
    if not rate.is_finite() or rate < 0:
        raise error(f"a rate must be a finite, non-negative Decimal, got {rate}")
    if len(rate.as_tuple().digits) > MAX_SIGNIFICANT_DIGITS:
        raise error(f"a rate has at most {MAX_SIGNIFICANT_DIGITS} significant digits")
    return rate


def parse_rate(text: str) -> Decimal:
    """Parse the API's decimal-string rate strictly, so what was agreed is stored exactly."""
    if not isinstance(text, str) or not _RATE_TEXT.fullmatch(text):
        raise InvalidRate(
            'a rate is a decimal string like "1250" or "12.5": digits, at most '
            f"{MAX_INTEGER_DIGITS} before the point and {MAX_DECIMAL_PLACES} after it"
        )
    rate = Decimal(text)
    if rate <= 0:
        raise InvalidRate("a rate must be greater than zero")
    return rate


def plain(value: Decimal) -> str:
    """A decimal as people and the API contract write it: ``"1250"``, ``"1250.5"``.

    ``str(value.normalize())`` would drop the trailing zeros a NUMERIC column pads with, but
    writes a whole number that ends in zeros as ``"5E+2"`` — not how a rate is quoted, nor
    what a homeworker can read on her payslip.
    """
    return format(value.normalize(), "f")


def parse_minutes(text: str) -> Decimal:
    """Parse minutes per piece ("2.5"), positive, at most two decimal places."""
    if not isinstance(text, str) or not _MINUTES_TEXT.fullmatch(text):
        raise InvalidMinutes('minutes per piece is a decimal string like "6" or "2.5"')
    return _check_minutes(Decimal(text))


def _check_minutes(minutes: Decimal | int) -> Decimal:
    if isinstance(minutes, bool) or not isinstance(minutes, Decimal | int):
        raise InvalidMinutes("minutes per piece must be a Decimal or an int")
    value = Decimal(minutes)
    if not value.is_finite() or value <= 0 or value > MAX_MINUTES_PER_PIECE:
        raise InvalidMinutes(f"minutes per piece must be above 0 and at most {MAX_MINUTES_PER_PIECE}")
    return value


def per_piece(rate: Decimal, unit: Unit) -> Decimal:
    """The rate per single piece, for display and comparison only — never for earnings."""
    _check_rate(rate)
    with localcontext(_DIVIDE):
        return rate / unit.pieces_per_unit


def value_of(pieces: int, *, rate: Decimal, unit: Unit = Unit.PIECE) -> Decimal:
    """The unrounded worth of ``pieces`` at a rate quoted per ``unit``: one division, last."""
    _check_count(pieces, "pieces")
    _check_rate(rate)
    with localcontext(_EXACT):
        product = rate * pieces
    with localcontext(_DIVIDE):
        return product / unit.pieces_per_unit


def earning(accepted: int, *, rate: Decimal, unit: Unit = Unit.PIECE) -> int:
    """Whole rupiah for ``accepted`` pieces counted together: round half to even, once."""
    return round_minor(value_of(accepted, rate=rate, unit=unit))


def cumulative_earning(*, before: int, accepted: int, rate: Decimal, unit: Unit = Unit.PIECE) -> int:
    """One delivery's earning: the increment of the rounded cumulative total (the one rule)."""
    _check_count(before, "before")
    _check_count(accepted, "accepted")
    return earning(before + accepted, rate=rate, unit=unit) - earning(before, rate=rate, unit=unit)


@dataclass(frozen=True, slots=True, kw_only=True)
class Commission:
    """The intermediary's agreed commission, paid by the buyer on top of the earning."""

    kind: CommissionKind
    rate: Decimal
    """Rupiah per piece for ``per_piece``; percent of the earning (10 = 10%) for ``percent``."""

    def __post_init__(self) -> None:
        _check_rate(self.rate, error=InvalidCommission)
        if self.kind is CommissionKind.PERCENT and self.rate > 100:
            raise InvalidCommission("a percentage commission is at most 100")

    @classmethod
    def per_piece(cls, rate: Decimal) -> Commission:
        return cls(kind=CommissionKind.PER_PIECE, rate=rate)

    @classmethod
    def percent(cls, percent: Decimal) -> Commission:
        return cls(kind=CommissionKind.PERCENT, rate=percent)


def commission_amount(commission: Commission | None, *, pieces: int, earning: int) -> int:
    """Commission on a whole (``pieces`` accepted, ``earning`` paid for them), rounded once."""
    _check_count(pieces, "pieces")
    _check_count(earning, "earning")
    if commission is None:
        return 0
    if commission.kind is CommissionKind.PER_PIECE:
        return round_minor(value_of(pieces, rate=commission.rate))
    with localcontext(_EXACT):
        base = commission.rate * earning
    with localcontext(_DIVIDE):
        return round_minor(base / 100)


def cumulative_commission(
    commission: Commission | None,
    *,
    before: int,
    accepted: int,
    rate: Decimal,
    unit: Unit = Unit.PIECE,
) -> int:
    """One delivery's commission: the increment of the commission on the cumulative total."""
    _check_count(before, "before")
    _check_count(accepted, "accepted")
    total = before + accepted
    after = commission_amount(commission, pieces=total, earning=earning(total, rate=rate, unit=unit))
    prior = commission_amount(commission, pieces=before, earning=earning(before, rate=rate, unit=unit))
    return after - prior


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryAmounts:
    """What one confirmed delivery moves out of the order's hold."""

    earning: int
    """To the homeworker."""
    commission: int
    """To the intermediary, on top."""

    @property
    def total(self) -> int:
        return self.earning + self.commission


def delivery_amounts(
    *,
    before: int,
    accepted: int,
    rate: Decimal,
    unit: Unit = Unit.PIECE,
    commission: Commission | None = None,
) -> DeliveryAmounts:
    """Earning and commission of a delivery, given the pieces already accepted on the order."""
    return DeliveryAmounts(
        earning=cumulative_earning(before=before, accepted=accepted, rate=rate, unit=unit),
        commission=cumulative_commission(commission, before=before, accepted=accepted, rate=rate, unit=unit),
    )


def order_hold_amount(
    *,
    quantity: int,
    rate: Decimal,
    unit: Unit = Unit.PIECE,
    commission: Commission | None = None,
) -> int:
    """The buyer's funds to hold for an order: covers every split of up to ``quantity`` pieces."""
    full = earning(quantity, rate=rate, unit=unit)
    return full + commission_amount(commission, pieces=quantity, earning=full)


def cap_deductions(*, payment: int, requested: int) -> int:
    """How much of ``requested`` may be deducted from one payment: at most half of it, floored."""
    _check_count(payment, "payment")
    _check_count(requested, "requested")
    return min(requested, payment // DEDUCTION_SHARE_DENOMINATOR)


def effective_hourly(*, rate: Decimal, minutes_per_piece: Decimal | int, unit: Unit = Unit.PIECE) -> Decimal:
    """What the rate pays per hour of work (rate × 60 ÷ minutes), unrounded."""
    _check_rate(rate)
    minutes = _check_minutes(minutes_per_piece)
    with localcontext(_EXACT):
        numerator = rate * 60
        denominator = minutes * unit.pieces_per_unit
    with localcontext(_DIVIDE):
        return numerator / denominator


def fair_rate(*, region: str, on: date, minutes_per_piece: Decimal | int, unit: Unit = Unit.PIECE) -> Decimal:
    """The rate per ``unit`` that pays the regional hourly minimum, rounded up to 0.01."""
    wage = minimum_wage(region, on)
    return _fair_rate(wage, _check_minutes(minutes_per_piece), unit)


def _fair_rate(wage: MinimumWage, minutes: Decimal, unit: Unit) -> Decimal:
    with localcontext(_EXACT):
        numerator = wage.monthly_minimum_idr * minutes * unit.pieces_per_unit
        denominator = HOURS_PER_MONTH * 60
    with localcontext(_DIVIDE):
        exact = numerator / denominator
        return exact.quantize(DISPLAY, rounding=ROUND_CEILING)


@dataclass(frozen=True, slots=True, kw_only=True)
class FairRateFinding:
    """A rate measured against the regional minimum wage: a benchmark, not a legal verdict.

    Figures are quantized for display (hourly pay and rates to 0.01, the ratio to 0.0001);
    ``meets_benchmark`` is decided on exact values.
    """

    region: str
    on: date
    unit: Unit
    rate: Decimal
    """As quoted, per ``unit``."""
    effective_hourly: Decimal
    benchmark_hourly: Decimal
    fair_rate: Decimal
    """Per ``unit``: the lowest rate (rounded up to 0.01) that meets the benchmark."""
    fair_rate_per_piece: Decimal
    meets_benchmark: bool
    shortfall_ratio: Decimal
    """``1 − effective ÷ benchmark`` when below it (0.4 = 40% short), else 0."""
    benchmark: MinimumWage
    """The decree used (UMK or UMP, its date and source)."""


def assess(
    *,
    rate: Decimal,
    minutes_per_piece: Decimal | int,
    region: str,
    on: date,
    unit: Unit = Unit.PIECE,
) -> FairRateFinding:
    """Measure a quoted rate against the homeworker's regional benchmark on a date."""
    _check_rate(rate)
    minutes = _check_minutes(minutes_per_piece)
    wage = minimum_wage(region, on)
    with localcontext(_EXACT):
        earned = rate * 60 * HOURS_PER_MONTH
        needed = wage.monthly_minimum_idr * minutes * unit.pieces_per_unit
    meets = earned >= needed
    with localcontext(_DIVIDE):
        hourly = effective_hourly(rate=rate, minutes_per_piece=minutes, unit=unit)
        benchmark = wage.monthly_minimum_idr / HOURS_PER_MONTH
        shortfall = Decimal(0) if meets else 1 - earned / needed
        return FairRateFinding(
            region=region,
            on=on,
            unit=unit,
            rate=rate,
            effective_hourly=hourly.quantize(DISPLAY, rounding=ROUND_HALF_EVEN),
            benchmark_hourly=benchmark.quantize(DISPLAY, rounding=ROUND_HALF_EVEN),
            fair_rate=_fair_rate(wage, minutes, unit),
            fair_rate_per_piece=_fair_rate(wage, minutes, Unit.PIECE),
            meets_benchmark=meets,
            shortfall_ratio=shortfall.quantize(RATIO, rounding=ROUND_HALF_EVEN),
            benchmark=wage,
        )


def check_policy(finding: FairRateFinding, *, policy: FairRatePolicy) -> None:
    """Refuse a below-benchmark rate only where the deployment chose ``block``."""
    if policy is FairRatePolicy.BLOCK and not finding.meets_benchmark:
        raise RateBelowBenchmark(
            f"rate {finding.rate} per {finding.unit} pays {finding.effective_hourly} an hour, "
            f"below the {finding.region} benchmark of {finding.benchmark_hourly}; "
            f"a fair rate is {finding.fair_rate}",
            finding=finding,
        )
