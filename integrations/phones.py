"""Phone numbers: one canonical form (E.164), and a masked form for people and logs.

Homeworkers and intermediaries write Indonesian mobile numbers as ``0812-3456-7890``,
``62812…`` or ``+62 812…``; gateways send them in yet other shapes. Everything inside
Upah uses E.164 (``+6281234567890``), produced by :func:`normalise` with Google's
libphonenumber metadata (the ``phonenumbers`` package), so that one number is one key.
A number is accepted only if the metadata calls it *valid* (right length and prefix for
its country), not merely *possible*.

:func:`mask` keeps the country code, the first three digits of the national number and
the last four (``+62812****7890``): enough for a person to recognise her own number on a
screen or a payslip, not enough to call it. Logs should carry IDs, never even this.

Demo and test numbers are fictitious. Indonesia publishes no range reserved for drama or
testing, so the demo uses the block ``+62 820 00…`` (:data:`DEMO_PREFIX`): valid under
libphonenumber's Indonesian mobile pattern (``8[1-35-9]…``) — so it passes
:func:`normalise` like a real number — yet allocated to no operator in libphonenumber's
carrier data (Telkomsel, Indosat, XL, Smartfren and Tri hold 081x, 0821–0823, 0831–0833,
0838, 085x, 087x, 088x, 0895–0899). :func:`is_demo` lets a real SMS sender refuse them, so
demo numbers never reach a real gateway.
"""

from __future__ import annotations

import phonenumbers

DEMO_PREFIX = "+6282000"
"""E.164 prefix of the fictitious numbers used by the demo and the tests."""

MAX_INPUT_LENGTH = 40
"""Longer input is not a phone number, however it is punctuated."""


class InvalidPhone(ValueError):
    """A text that is not a valid phone number (for its country)."""

    code = "invalid_phone"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def normalise(text: str, *, default_region: str = "ID") -> str:
    """Turn any local or international spelling into E.164, so one number is one key."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidPhone("phone number is empty")
    if len(text) > MAX_INPUT_LENGTH:
        raise InvalidPhone("phone number is too long")
    candidate = text.strip()
    # Gateways sometimes drop the '+' of an international number ("6281234567890").
    if default_region == "ID" and candidate[:2] == "62" and candidate.isdigit():
        candidate = "+" + candidate
    try:
        number = phonenumbers.parse(candidate, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask(e164: str) -> str:
    """Show a number so its owner recognises it but nobody else can dial it."""
    if not isinstance(e164, str) or not e164.startswith("+"):
        raise InvalidPhone("mask expects an E.164 number starting with '+'")
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("not a phone number") from exc
    national = phonenumbers.national_significant_number(number)
    country = f"+{number.country_code}"
    if len(national) >= 9:
        head, tail = national[:3], national[-4:]
    else:
        head, tail = "", national[-2:]
    hidden = len(national) - len(head) - len(tail)
    return f"{country}{head}{'*' * hidden}{tail}"


def is_demo(e164: str) -> bool:
    """True for the fictitious demo range, which a real SMS or USSD gateway must never see."""
    return e164.startswith(DEMO_PREFIX)


def demo_number(index: int) -> str:
    """The ``index``-th fictitious demo number (``+628200000000n``), for seeds and tests."""
    if not 0 <= index < 100_000:
        raise InvalidPhone("demo numbers run from 0 to 99999")
    return f"{DEMO_PREFIX}{index:06d}"
