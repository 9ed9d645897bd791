"""The homeworker channels: USSD and SMS gateway callbacks, the disputes they open, the SMS sandbox.

Gateways are not API clients: they carry no API key. Each request is authenticated before
anything else is read or changed, and a request that fails gets ``401 invalid_signature``:

- **Our gateway format** (USSD and SMS): header ``X-Upah-Signature: t=<unix>,v1=<hex>``, the
  HMAC-SHA256 of ``"<t>." + raw body`` with the channel's secret (``UPAH_USSD_GATEWAY_SECRET``,
  ``UPAH_SMS_GATEWAY_SECRET``), at most 300 seconds from our clock.
- **USSD gateways that cannot sign** (Africa's Talking style): header
  ``X-Upah-Gateway-Token`` equal to ``UPAH_USSD_GATEWAY_TOKEN`` (constant-time), set by the
  gateway or the proxy in front of us. Disabled unless configured.
- **Twilio** (SMS): header ``X-Twilio-Signature`` — base64 HMAC-SHA1 with ``TWILIO_AUTH_TOKEN``
  over ``UPAH_PUBLIC_URL`` + path + query and the sorted form parameters.

An unset secret refuses that gateway's requests. Bodies are forms
(``application/x-www-form-urlencoded``). USSD always answers ``200 text/plain`` ``CON …``
or ``END …`` — for malformed input, unknown numbers, expired sessions, rate limits or our
own failures a clear ``END``, never a 500. SMS replies are sent asynchronously, only to the
number that wrote (through the outbox and the ``sms.send`` task); the callback itself
answers JSON ``{"received": true, "reply": "queued"|"none"}``, or an empty TwiML
``<Response/>`` to Twilio. Requests are limited per phone number
(``UPAH_USSD_REQUESTS_PER_MINUTE``, ``UPAH_SMS_REQUESTS_PER_MINUTE``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from api import schemas as s
from api.deps import PrincipalDep, Runtime, RuntimeDep
from api.errors import error_response
from integrations import signatures, sms, ussd
from integrations.sms_senders import TWILIO_SIGNATURE_HEADER, verify_twilio_signature
from payments import channels, pii, selfservice
from payments.errors import NotFound
from payments.parties import Role
from payments.selfservice import UssdOutcome

log = logging.getLogger(__name__)

router = APIRouter(tags=["channels"])

SIGNATURE_HEADER = "X-Upah-Signature"
TOKEN_HEADER = "X-Upah-Gateway-Token"  # noqa: S105 - a header name, not a secret
SIGNATURE_TOLERANCE = 300
MAX_FORM_FIELDS = 100
WINDOW = 60
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


_SIGNATURE_DOC = _header(
    SIGNATURE_HEADER,
    "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.' + raw body)>; at most 300 s old",
)


def _form_doc(fields: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {name: {"type": "string", "description": d} for name, d in fields.items()},
                    "required": required,
                }
            }
        },
    }


def _form(body: bytes) -> dict[str, str]:
    """A gateway's form, each field once (a repeated field is refused: which one would count?)."""
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise ValueError(f"field {name!r} appears twice")
        form[name] = value
    return form


def _verify_hmac(secret: str | None, header: str | None, body: bytes, now: datetime) -> None:
    signatures.verify(
        (secret or "").encode(), header, body, now=int(now.timestamp()), tolerance=SIGNATURE_TOLERANCE
    )


def _unauthorized() -> JSONResponse:
    return error_response(
        401, "invalid_signature", "the gateway request is not signed with a valid signature"
    )


def _phone_key(rt: Runtime, channel: str, phone: str) -> str:
    """A rate-limit key that names the phone without revealing it (keyed hash)."""
    return f"{channel}:{pii.blind_index(rt.keyring, phone, purpose='rate_limit')}"


def _allowed(rt: Runtime, channel: str, phone: str, limit: int) -> bool:
    if rt.limiter is None:
        return True
    return rt.limiter.hit(_phone_key(rt, channel, phone), limit=limit, window=WINDOW).allowed


# --- USSD ---------------------------------------------------------------------------------------


def _screen(outcome: UssdOutcome) -> str:
    """Render for the gateway; a screen that would not fit is a bug, shown as a clean END."""
    if outcome.text is not None:
        try:
            return ussd.render(ussd.UssdReply(text=outcome.text, end=outcome.end))
        except (ussd.ScreenTooLong, sms.NotGsm7) as exc:
            log.error("ussd screen refused by the renderer: %s", exc.code)
    fallback = selfservice.service_unavailable()
    assert fallback.text is not None
    return ussd.render(ussd.UssdReply(text=fallback.text, end=True))


def _ussd_turn(rt: Runtime, body: bytes, now: datetime) -> str:
    try:
        request = ussd.parse_request(_form(body))
    except ValueError:  # malformed: undecodable, repeated or missing fields, too many answers
        return _screen(selfservice.invalid_request())
    try:
        if not _allowed(rt, "ussd", request.phone_number, rt.settings.upah_ussd_requests_per_minute):
            return _screen(selfservice.service_unavailable())
        turn = channels.ussd_turn(
            rt.sessions,
            keyring=rt.keyring,
            session_id=request.session_id,
            phone=request.phone_number,
            steps=request.steps,
            now=now,
            timeout=timedelta(seconds=rt.settings.upah_ussd_session_timeout_seconds),
        )
    except Exception as exc:  # never a stack trace, a 500 or a PIN in a log: the type is enough
        session_ref = hashlib.sha256(request.session_id.encode()).hexdigest()[:12]
        log.error("ussd turn failed for session %s: %s", session_ref, type(exc).__name__)
        return _screen(selfservice.service_unavailable())
    if turn.sms_queued and rt.kick is not None:
        rt.kick()
    return _screen(turn.outcome)


@router.post(
    "/v1/gateway/ussd",
    response_class=PlainTextResponse,
    summary="A USSD gateway's callback: one key press in, one screen out",
    responses={
        200: {
            "content": {"text/plain": {"example": "CON Upah\nMasukkan PIN Anda:"}},
            "description": "CON <screen> (the menu continues) or END <screen> (the session is over); "
            "at most 160 GSM-7 characters of screen",
        },
        401: {
            "model": s.ErrorBody,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            "description": "missing or invalid gateway signature or token",
        },
    },
    openapi_extra={
        "parameters": [
            _SIGNATURE_DOC,
            _header(TOKEN_HEADER, "shared token, for USSD gateways that cannot sign (if configured)"),
        ],
        "requestBody": _form_doc(
            {
                "sessionId": "the gateway's session id",
                "serviceCode": "the dialled code, e.g. *384*123#",
                "phoneNumber": "the caller, any Indonesian spelling",
                "text": "every answer so far, joined by '*' ('' on the first request)",
            },
            ["sessionId", "serviceCode", "phoneNumber"],
        ),
    },
)
async def ussd_callback(request: Request, rt: RuntimeDep) -> Response:
    """Bahasa Indonesia by default, English when she chose it. The PIN (set on first use) is
    checked once per session; sessions end after 3 minutes without a key press."""
    body = await request.body()
    now = rt.clock()
    try:
        if request.headers.get(SIGNATURE_HEADER) is not None or not rt.settings.upah_ussd_gateway_token:
            _verify_hmac(
                rt.settings.upah_ussd_gateway_secret, request.headers.get(SIGNATURE_HEADER), body, now
            )
        else:
            signatures.verify_token(rt.settings.upah_ussd_gateway_token, request.headers.get(TOKEN_HEADER))
    except signatures.SignatureError:
        return _unauthorized()
    screen = await to_thread.run_sync(_ussd_turn, rt, body, now)
    return PlainTextResponse(screen)


# --- SMS ----------------------------------------------------------------------------------------


class SmsReceived(BaseModel):
    received: bool = True
    reply: Literal["queued", "none"] = Field(
        description="queued: a reply goes to the sender by SMS; none: the number is not registered"
    )


def _twilio_url(rt: Runtime, request: Request) -> str:
    """The URL Twilio signed: our public URL (as configured at Twilio), path and query."""
    url = rt.settings.upah_public_url.rstrip("/") + request.url.path
    return f"{url}?{request.url.query}" if request.url.query else url


def _receive(rt: Runtime, form: Mapping[str, str], dedupe_key: str, now: datetime) -> Response | str:
    try:
        inbound = sms.parse_inbound(form)
    except sms.MalformedSms as exc:
        return error_response(422, "validation_error", exc.message, {"code": exc.code})
    if not _allowed(rt, "sms", inbound.sender, rt.settings.upah_sms_requests_per_minute):
        return error_response(
            429, "rate_limited", "too many messages from this number; try again in a minute"
        )
    with rt.transaction() as session:
        outcome = channels.receive_sms(
            session,
            keyring=rt.keyring,
            sender=inbound.sender,
            text=inbound.text,
            dedupe_key=dedupe_key,
            now=now,
        )
    if outcome == "queued" and rt.kick is not None:
        rt.kick()
    return outcome


@router.post(
    "/v1/gateway/sms",
    response_model=SmsReceived,
    summary="An SMS gateway's callback for a message a homeworker sent",
    responses={
        200: {
            "content": {"application/xml": {"example": TWIML_EMPTY}},
            "description": "JSON for our format; an empty TwiML Response for Twilio (the reply is sent "
            "separately, only to the sender)",
        },
        401: {"model": s.ErrorBody, "description": "missing or invalid signature"},
        422: {"model": s.ErrorBody, "description": "not an SMS form"},
        429: {"model": s.ErrorBody, "description": "too many messages from this number"},
    },
    openapi_extra={
        "parameters": [
            _SIGNATURE_DOC,
            _header(TWILIO_SIGNATURE_HEADER, "Twilio's signature; its presence selects Twilio's format"),
        ],
        "requestBody": _form_doc(
            {
                "from": "the sender (Twilio: From)",
                "to": "our number or short code (Twilio: To)",
                "text": "SALDO, RIWAYAT, TARIF, BANTUAN or BAL, HIST, RATES, HELP (Twilio: Body)",
            },
            [],
        ),
    },
)
async def sms_callback(request: Request, rt: RuntimeDep) -> Response:
    """Commands in any case, with extra spaces or punctuation; other words get the help text. A
    number Upah does not know gets no reply. A repeated delivery of one message is answered once."""
    body = await request.body()
    now = rt.clock()
    twilio_signature = request.headers.get(TWILIO_SIGNATURE_HEADER)
    try:
        form = _form(body)
    except ValueError:
        form = None
    try:
        if twilio_signature is not None:
            if form is None:
                raise signatures.SignatureError("a Twilio request must be a form")
            verify_twilio_signature(
                rt.settings.twilio_auth_token, twilio_signature, url=_twilio_url(rt, request), params=form
            )
            message_sid = form.get("MessageSid") or form.get("SmsSid")
            dedupe = f"twilio:{message_sid or hashlib.sha256(body).hexdigest()}"
        else:
            header = request.headers.get(SIGNATURE_HEADER)
            _verify_hmac(rt.settings.upah_sms_gateway_secret, header, body, now)
            assert header is not None
            dedupe = signatures.replay_key(header, body)
    except signatures.SignatureError:
        return _unauthorized()
    if form is None:
        return error_response(422, "validation_error", "the body is not a form", {"code": "malformed_sms"})
    outcome = await to_thread.run_sync(_receive, rt, form, dedupe, now)
    if isinstance(outcome, Response):
        return outcome
    if twilio_signature is not None:
        return Response(TWIML_EMPTY, media_type="application/xml")
    return JSONResponse(SmsReceived(reply="queued" if outcome == "queued" else "none").model_dump())


# --- disputes and the SMS sandbox -----------------------------------------------------------------


class DisputeRead(BaseModel):
    id: int
    reference: str = Field(description="the code shown to her on the phone")
    homeworker_id: int
    buyer_id: int | None = Field(description="the buyer concerned when she works for one; else all hers")
    kind: Literal["not_paid", "wrong_amount", "pieces_not_counted", "other"]
    channel: str
    status: str
    created_at: datetime
    resolved_at: datetime | None


@router.get("/v1/disputes", response_model=list[DisputeRead], tags=["disputes"])
def list_disputes(
    who: PrincipalDep,
    rt: RuntimeDep,
    status: Annotated[Literal["open", "resolved"] | None, Query()] = None,
    homeworker_id: Annotated[s.IdParam | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DisputeRead]:
    """Problems homeworkers reported by USSD, newest first: a buyer sees its own homeworkers',
    an auditor those of its organisation (platform auditors and admins: all). Intermediaries
    get 403 — she may be reporting the intermediary."""
    with rt.read() as session:
        found = channels.list_disputes(
            session, principal=who, status=status, homeworker_id=homeworker_id, limit=limit
        )
    return [
        DisputeRead(
            id=d.id,
            reference=d.reference,
            homeworker_id=d.homeworker_id,
            buyer_id=d.buyer_id,
            kind=d.kind.value,
            channel=d.channel,
            status=d.status,
            created_at=d.created_at,
            resolved_at=d.resolved_at,
        )
        for d in found
    ]


class SandboxSmsRead(BaseModel):
    to: str = Field(description="E.164 for fictitious demo numbers, masked for any other")
    text: str
    sent_at: datetime
    kind: str
    homeworker_id: int


@router.get("/v1/sandbox/sms", response_model=list[SandboxSmsRead], tags=["sandbox"])
def sandbox_sms(
    who: PrincipalDep, rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[SandboxSmsRead]:
    """Messages the sandbox SMS sender took, newest first (admin; only while it is configured)."""
    who.require(Role.ADMIN)
    if rt.settings.upah_sms_provider != "sandbox":
        raise NotFound("the sandbox SMS sender is not configured")
    with rt.read() as session:
        sent = channels.list_sent(session, keyring=rt.keyring, provider="sandbox", limit=limit)
    return [
        SandboxSmsRead(to=m.to, text=m.text, sent_at=m.sent_at, kind=m.kind, homeworker_id=m.homeworker_id)
        for m in sent
    ]
