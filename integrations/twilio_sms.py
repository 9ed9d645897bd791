"""Twilio's Programmable Messaging API as an :class:`~integrations.sms_senders.SmsSender`.

One message is one ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP basic
auth (account SID and auth token) and a form of ``To`` (E.164), ``From`` (our number or
sender ID — or ``MessagingServiceSid``) and ``Body``. Twilio answers ``201 Created`` with the
Message resource (``sid`` ``SM…``, ``status`` ``queued`` or ``accepted``), and errors as
``{"code", "message", "more_info", "status"}``:

- ``429`` (code 20429, too many concurrent requests) is never processed and always safe
  to retry → :class:`SmsTemporaryFailure` with ``Retry-After`` when given; ``5xx`` and
  timeouts likewise (a timeout may hide a sent message: delivery is at-least-once).
- ``400`` about the destination — 21211 invalid ``To``, 21614 not a mobile number, 21610
  unsubscribed (the recipient sent STOP), 21612/21408 not reachable from our number or
  region — can never succeed → :class:`SmsRejected` with code ``twilio_<code>``.
- ``401``/``403``/``404`` (bad credentials, a suspended or mistyped account) are an
  operator's to fix, so the message waits: :class:`SmsTemporaryFailure`. Any other ``4xx``
  is Twilio refusing this message as it is → :class:`SmsRejected`.

Fictitious demo numbers (``+62820…``, :func:`integrations.phones.is_demo`) are refused
before any request, so the demo can never text a stranger.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from integrations import phones
from integrations.sms_senders import SandboxSmsSender, SentSms, SmsRejected, SmsSender, SmsTemporaryFailure

__all__ = ["TwilioSmsSender", "build_sender"]

log = logging.getLogger(__name__)

API_BASE = "https://api.twilio.com"


class TwilioSmsSender:
    """Sends through Twilio's Messages API; refuses demo numbers before any request."""

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        status_callback: str | None = None,
        base_url: str = API_BASE,
        timeout: tuple[float, float] = (3.05, 10.0),
        session: requests.Session | None = None,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("Twilio needs an account SID and an auth token")
        if not from_number and not messaging_service_sid:
            raise ValueError("Twilio needs a From number or a MessagingServiceSid")
        self._sid = account_sid
        self._token = auth_token
        self._from = from_number
        self._service = messaging_service_sid
        self._status_callback = status_callback
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._timeout = timeout
        self._http = session or requests.Session()

    def send(self, *, to: str, text: str) -> SentSms:
        if phones.is_demo(to):
            raise SmsRejected("demo_number", "fictitious demo numbers never reach a real gateway")
        if not to.startswith("+") or not to[1:].isdigit():
            raise SmsRejected("invalid_number", "the destination must be given in E.164")
        if not text:
            raise SmsRejected("empty_message", "refusing to send an empty message")
        form = {"To": to, "Body": text}
        if self._service:
            form["MessagingServiceSid"] = self._service
        else:
            assert self._from is not None
            form["From"] = self._from
        if self._status_callback:
            form["StatusCallback"] = self._status_callback
        try:
            response = self._http.post(
                self._url, data=form, auth=(self._sid, self._token), timeout=self._timeout
            )
        except requests.Timeout as exc:
            raise SmsTemporaryFailure("timeout", "Twilio did not answer in time") from exc
        except requests.RequestException as exc:
            raise SmsTemporaryFailure(
                "unreachable", f"could not reach Twilio ({type(exc).__name__})"
            ) from exc
        return self._outcome(response)

    def _outcome(self, response: requests.Response) -> SentSms:
        body = _json(response)
        if response.status_code in (200, 201):
            sid = body.get("sid")
            if not isinstance(sid, str) or not sid:
                # Twilio took it (2xx) but the body is unreadable: never send it twice.
                log.warning("Twilio accepted a message without a readable sid")
                return SentSms(message_id="unknown", status="accepted")
            return SentSms(message_id=sid, status=str(body.get("status") or "queued"))
        code = body.get("code")
        message = str(body.get("message") or f"HTTP {response.status_code}")[:200]
        if response.status_code == 429:
            raise SmsTemporaryFailure("twilio_20429", message, retry_after=_retry_after(response))
        if response.status_code >= 500:
            raise SmsTemporaryFailure(f"http_{response.status_code}", message)
        if response.status_code in (401, 403, 404):
            log.error("Twilio refused our account settings (HTTP %d, code %s)", response.status_code, code)
            raise SmsTemporaryFailure(f"twilio_{code or response.status_code}", message)
        if isinstance(code, int):
            raise SmsRejected(f"twilio_{code}", message)
        raise SmsRejected(f"http_{response.status_code}", message)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def build_sender(
    provider: str,
    *,
    twilio_account_sid: str | None = None,
    twilio_auth_token: str | None = None,
    twilio_from_number: str | None = None,
    twilio_messaging_service_sid: str | None = None,
    twilio_status_callback: str | None = None,
) -> SmsSender:
    """The sender a deployment chose (``UPAH_SMS_PROVIDER``): ``sandbox`` (default) or ``twilio``."""
    if provider == "sandbox":
        return SandboxSmsSender()
    if provider == "twilio":
        if not twilio_account_sid or not twilio_auth_token:
            raise ValueError("UPAH_SMS_PROVIDER=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        return TwilioSmsSender(
            account_sid=twilio_account_sid,
            auth_token=twilio_auth_token,
            from_number=twilio_from_number,
            messaging_service_sid=twilio_messaging_service_sid,
            status_callback=twilio_status_callback,
        )
    raise ValueError(f"unknown SMS provider {provider!r}; use 'sandbox' or 'twilio'")
