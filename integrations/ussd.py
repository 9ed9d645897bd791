"""The USSD gateway format: one request per key press, one screen per reply.

A USSD session is a conversation the *gateway* remembers, not us: on every answer it
POSTs ``sessionId``, ``serviceCode``, ``phoneNumber`` and ``text`` — all the answers so
far joined by ``*`` (``""`` on the first screen, then ``"4821"``, then ``"4821*1"``).
So each request carries the whole path, and :class:`UssdRequest` exposes it as ``steps``.
The reply is plain text: ``CON `` and a screen keeps the session open for another
answer, ``END `` and a screen closes it. Gateways cut a reply at 182 characters and a
phone shows GSM-7 only, so :func:`render` refuses anything longer or wider
(:class:`ScreenTooLong`, :class:`~integrations.sms.NotGsm7`) instead of letting a
homeworker see half a balance.

A request with more than :data:`MAX_STEPS` answers or :data:`MAX_TEXT` characters is not
a person pressing keys; :func:`parse_request` calls it malformed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from integrations.phones import InvalidPhone, normalise
from integrations.sms import NotGsm7, gsm7_length, is_gsm7

SCREEN_LIMIT = 182
"""Characters a gateway delivers in one reply, ``CON ``/``END `` included."""

MAX_STEPS = 20
MAX_TEXT = 200
MAX_ID_LENGTH = 100


class MalformedUssd(ValueError):
    """A gateway request that lacks a field or carries implausible input."""

    code = "malformed_ussd"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ScreenTooLong(ValueError):
    """A reply the gateway would cut: a bug in the menu, never shown to a homeworker."""

    code = "screen_too_long"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class UssdRequest:
    """One gateway request: who is dialling and every answer given so far."""

    session_id: str
    service_code: str
    phone_number: str
    """E.164."""
    text: str
    steps: tuple[str, ...]
    """The answers in order, each stripped of spaces; ``()`` on the first screen."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UssdReply:
    """A screen and whether the session continues (``CON``) or ends (``END``)."""

    text: str
    end: bool


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if value is None or not value.strip():
        raise MalformedUssd(f"missing {name}")
    if len(value) > MAX_ID_LENGTH:
        raise MalformedUssd(f"{name} is too long")
    return value.strip()


def split_steps(text: str) -> tuple[str, ...]:
    """Split the gateway's ``*``-joined answers; an empty text is the first screen."""
    if text == "":
        return ()
    return tuple(step.strip() for step in text.split("*"))


def parse_request(form: Mapping[str, str]) -> UssdRequest:
    """Read a gateway's form strictly; anything implausible is malformed, never a crash."""
    session_id = _required(form, "sessionId")
    service_code = _required(form, "serviceCode")
    phone = _required(form, "phoneNumber")
    text = form.get("text", "")
    if text is None:
        text = ""
    if len(text) > MAX_TEXT:
        raise MalformedUssd(f"text longer than {MAX_TEXT} characters")
    steps = split_steps(text)
    if len(steps) > MAX_STEPS:
        raise MalformedUssd(f"more than {MAX_STEPS} answers in one session")
    try:
        e164 = normalise(phone)
    except InvalidPhone as exc:
        raise MalformedUssd("phoneNumber is not a valid phone number") from exc
    return UssdRequest(
        session_id=session_id,
        service_code=service_code,
        phone_number=e164,
        text=text,
        steps=steps,
    )


def render(reply: UssdReply) -> str:
    """Produce the gateway's ``CON …``/``END …`` body, refusing what it would cut or garble."""
    if not is_gsm7(reply.text):
        raise NotGsm7("a USSD screen must be GSM-7 only")
    body = ("END " if reply.end else "CON ") + reply.text
    if gsm7_length(body) > SCREEN_LIMIT:
        raise ScreenTooLong(
            f"USSD reply is {gsm7_length(body)} characters; the gateway delivers {SCREEN_LIMIT}"
        )
    return body
