"""Money in the minor unit of its currency, and the one rounding rule.

Amounts are Python ints (whole rupiah for IDR); a float never touches money. Rates
may carry fractions of the minor unit, so they are ``Decimal``; the only way from a
``Decimal`` to money is :func:`round_minor`, which rounds half to even.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from ledger.errors import AmountOutOfRange, InvalidAmount

MAX_AMOUNT = 2**63 - 1
"""The largest amount a single posting may carry: it must fit PostgreSQL's bigint."""

_DIGITS = re.compile(r"[0-9]+")
_CURRENCY = re.compile(r"[A-Z]{3}")


def check_amount(amount: int, *, allow_zero: bool = False) -> int:
    """Refuse non-integers, negatives, zero (unless allowed) and beyond-int64 amounts."""
    if type(amount) is int and 0 < amount <= MAX_AMOUNT:  # the common case, at a batch's pace
        return amount
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(f"amount must be an integer in the minor unit, got {type(amount).__name__}")
    if amount < 0 or (amount == 0 and not allow_zero) or amount > MAX_AMOUNT:
        raise AmountOutOfRange(f"amount {amount} is outside 1..{MAX_AMOUNT}")
    return amount


def check_currency(currency: str) -> str:
    if type(currency) is str and currency in _CHECKED_CURRENCIES:
        return currency
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise InvalidAmount(f"currency must be a three-letter ISO 4217 code, got {currency!r}")
    if type(currency) is str:
        _CHECKED_CURRENCIES.add(currency)
    return currency


_CHECKED_CURRENCIES: set[str] = set()
"""Codes that passed the check once (at most 26³): a batch of postings checks each a set lookup."""


def parse_amount(text: str) -> int:
    """Parse the API's digit-string amount ("25000") into an int, strictly."""
    if not isinstance(text, str) or not _DIGITS.fullmatch(text):
        raise InvalidAmount("amount must be a string of digits in the minor unit")
    return check_amount(int(text), allow_zero=True)


def round_minor(value: Decimal) -> int:
    """The one rounding rule: half to even, to the minor unit."""
    try:
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    except InvalidOperation as exc:
        raise InvalidAmount(f"cannot round {value!r} to the minor unit") from exc


def ratio_split(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` so that the parts always sum to the whole.

    Largest-remainder method; ties go to the earlier weight.
    """
    if not weights or any(w < 0 for w in weights) or sum(weights) == 0:
        raise InvalidAmount("weights must be non-negative and not all zero")
    whole = sum(weights)
    parts = [total * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in remainders[: total - sum(parts)]:
        parts[i] += 1
    return parts


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        check_currency(self.currency)
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise InvalidAmount("Money.amount must be an int")

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
