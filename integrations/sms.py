"""The SMS gateway format: GSM-7 length rules and parsing an inbound message.

One SMS carries 160 characters only while every character is in the GSM 03.38 7-bit
alphabet. A single character outside it — a curly quote, an emoji, an em dash — switches
the whole message to UCS-2 and the limit to 70, so a reply silently becomes two or three
paid messages, and some feature phones show them out of order. Characters of the
*extension table* (``^ { } \\ [ ~ ] | €`` and form feed) are sent as an escape plus a
character, so each counts twice.

:func:`parse_inbound` reads what a gateway POSTs for an incoming message: our own and
Africa's Talking-style forms use ``from``, ``to``, ``text``; Twilio uses ``From``, ``To``,
``Body``. The sender is normalised to E.164 and the first word becomes the *command*:
stripped, case-folded and without punctuation, so ``"Saldo!"``, ``" saldo"`` and
``"SALDO."`` are the same request.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from integrations.phones import InvalidPhone, normalise

SMS_LIMIT = 160
"""GSM-7 units in one single-part SMS."""

MAX_INBOUND_LENGTH = 1600
"""An inbound text longer than ten concatenated parts is not a command: refuse it."""

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The GSM 03.38 basic character set (the escape code itself excluded): one unit each."""

GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
"""The GSM 03.38 extension table: an escape plus a character, so two units each."""


class MalformedSms(ValueError):
    """An inbound SMS form that lacks a field or is not plausibly a message."""

    code = "malformed_sms"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotGsm7(ValueError):
    """A text with a character outside the GSM-7 alphabet (it would be sent as UCS-2)."""

    code = "not_gsm7"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundSms:
    """One message received from a homeworker's phone."""

    sender: str
    """E.164; a reply goes to this number and nowhere else."""
    to: str
    """The short code or long number it was sent to, as the gateway spelled it."""
    text: str
    command: str
    """The first word, stripped, case-folded and without punctuation ("" if none)."""
    args: tuple[str, ...]
    """The remaining words, normalised the same way."""


def is_gsm7(text: str) -> bool:
    """True if every character is in the GSM-7 basic set or its extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def gsm7_length(text: str) -> int:
    """Count GSM-7 units (extension characters count twice), so limits are real limits."""
    length = 0
    for ch in text:
        if ch in GSM7_BASIC:
            length += 1
        elif ch in GSM7_EXTENSION:
            length += 2
        else:
            raise NotGsm7(f"character U+{ord(ch):04X} is not in the GSM-7 alphabet")
    return length


def fits_one_sms(text: str) -> bool:
    """True if the text goes out as one 160-unit GSM-7 message, not several or UCS-2."""
    return is_gsm7(text) and gsm7_length(text) <= SMS_LIMIT


def command_words(text: str) -> tuple[str, ...]:
    """Split a message into words, case-folded and with punctuation dropped."""
    kept = []
    for ch in text.casefold():
        category = unicodedata.category(ch)[0]
        if category in "ZC":
            kept.append(" ")
        elif category not in "PS":
            kept.append(ch)
    cleaned = "".join(kept)
    return tuple(cleaned.split())


def _field(form: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = form.get(name)
        if value is not None:
            return value
    return None


def parse_inbound(form: Mapping[str, str]) -> InboundSms:
    """Read a gateway's inbound-message form (ours, Africa's Talking or Twilio) strictly."""
    sender = _field(form, "from", "From")
    to = _field(form, "to", "To")
    text = _field(form, "text", "Body")
    if sender is None or to is None or text is None:
        raise MalformedSms("an inbound SMS needs from, to and text (or From, To, Body)")
    if len(text) > MAX_INBOUND_LENGTH:
        raise MalformedSms("inbound text is too long to be a command")
    try:
        e164 = normalise(sender)
    except InvalidPhone as exc:
        raise MalformedSms("the sender is not a valid phone number") from exc
    words = command_words(text)
    return InboundSms(
        sender=e164,
        to=to.strip(),
        text=text,
        command=words[0] if words else "",
        args=words[1:],
    )
