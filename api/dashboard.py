"""The web dashboard: server-rendered pages for buyers and auditors, on the same app as the API.

**Sign-in.** A form posts an API key; the key is checked with ``parties.authenticate`` and
kept in an ``HttpOnly; SameSite=Strict`` cookie, sealed with AES-GCM by the personal-data
keyring (``pii.encrypt`` with its own context) together with the time it was issued and a
random session id, new at each sign-in, so the cookie is opaque, tamper-proof, expires after
eight hours and works on any API process. The key is authenticated again on every request, so
revoking it ends the session. Signing out records the session id as ended
(``payments.dashboard_sessions``) until the cookie would have expired, so a copy of the cookie
is refused too; every page checks it with one primary-key read. The key never appears in a
page address or a log line.

**Scope.** Every page calls the same domain functions as the API with the caller's
``Principal``, so a page shows exactly what the API would answer to that key.

**Forms.** Every form carries a CSRF token that must equal the ``upah_csrf`` cookie
(double submit), and a POST whose ``Origin`` (or ``Referer``) names another site is refused;
the session cookie is ``SameSite=Strict`` as well. Pages are Jinja2 templates with
autoescaping on; charts are SVG drawn on the server; the Content-Security-Policy allows no
script at all and nothing from another origin.

**Language.** Bahasa Indonesia by default, English on request (``/lang/en``), remembered in
a cookie.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy.orm import Session

from api import dashboard_charts as charts
from api import dashboard_queries as queries
from api.dashboard_text import WIB, Language, label, language_of, text
from api.dashboard_text import duration as fmt_duration
from api.dashboard_text import number as fmt_number
from api.dashboard_text import percent as fmt_percent
from api.dashboard_text import rupiah as fmt_rupiah
from api.dashboard_text import when as fmt_when
from api.deps import Runtime, RuntimeDep
from ledger import reports as ledger_reports
from ledger.errors import LedgerError
from payments import (
    audit,
    channels,
    dashboard_sessions,
    deliveries,
    orders,
    parties,
    payouts,
    pii,
    reconciliation,
    wages,
)
from payments import reports as pilot_reports
from payments.errors import Forbidden, NotFound, PaymentsError, Unauthorized
from payments.parties import Principal, Role
from payments.payout_states import RunStatus

router = APIRouter(include_in_schema=False)

SESSION_COOKIE = "upah_session"
CSRF_COOKIE = "upah_csrf"
LANG_COOKIE = "upah_lang"
SESSION_LIFETIME = timedelta(hours=8)
SESSION_CONTEXT = "dashboard.session"
SESSION_ID_BYTES = 16

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

BUYER_ONLY = (Role.BUYER,)
ORDER_READERS = (Role.BUYER, Role.INTERMEDIARY, Role.ADMIN)
PAYOUT_READERS = (Role.BUYER, Role.ADMIN)
AUDIT_READERS = (Role.AUDITOR, Role.ADMIN)
DISPUTE_READERS = (Role.BUYER, Role.AUDITOR, Role.ADMIN)
REPORT_READERS = (Role.BUYER, Role.AUDITOR, Role.ADMIN)

NAV: tuple[tuple[str, str, tuple[Role, ...]], ...] = (
    ("/", "nav.overview", (Role.BUYER, Role.INTERMEDIARY, Role.AUDITOR, Role.ADMIN)),
    ("/orders", "nav.orders", ORDER_READERS),
    ("/deliveries", "nav.deliveries", BUYER_ONLY),
    ("/payouts", "nav.payouts", PAYOUT_READERS),
    ("/disputes", "nav.disputes", DISPUTE_READERS),
    ("/ledger", "nav.ledger", AUDIT_READERS),
    ("/reconciliations", "nav.reconciliations", AUDIT_READERS),
    ("/report", "nav.report", REPORT_READERS),
)

DONE_MESSAGES = {
    "confirmed": "deliveries.confirmed",
    "run_created": "payouts.run_created",
    "approved": "payouts.approved",
    "rejected": "payouts.rejected",
    "noted": "recon.noted",
    "reconciled": "recon.created",
}


# --- templates and words --------------------------------------------------------------------------


@cache
def _environment() -> Environment:
    """Built on first use, never at import; autoescaping is on for every template."""
    env = Environment(
        loader=PackageLoader("api", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@cache
def _stylesheet() -> bytes:
    return resources.files("api").joinpath("static/style.css").read_bytes()


@dataclass(frozen=True, slots=True)
class Words:
    """The reader's language, for templates: ``w.t("key")``, ``w.rp(amount)``, …"""

    lang: Language

    def t(self, key: str, **values: object) -> str:
        return text(self.lang, key, **values)

    def label(self, prefix: str, value: str) -> str:
        return label(self.lang, prefix, value)

    def rp(self, amount: int | Decimal | str | None) -> str:
        return fmt_rupiah(self.lang, amount)

    def num(self, value: int | Decimal | str) -> str:
        return fmt_number(self.lang, value)

    def pct(self, ratio: str | Decimal | None) -> str:
        return fmt_percent(self.lang, ratio)

    def when(self, moment: datetime | None) -> str:
        return fmt_when(moment)

    def dur(self, seconds: int | None) -> str:
        return fmt_duration(self.lang, seconds)


# --- the signed-in viewer ------------------------------------------------------------------------------


@dataclass
class Viewer:
    principal: Principal
    words: Words
    csrf: str
    organization: str | None
    set_cookies: dict[str, str] = field(default_factory=dict)

    @property
    def role(self) -> Role:
        return self.principal.role

    def may(self, roles: Iterable[Role]) -> bool:
        return self.principal.role in tuple(roles)


@dataclass(frozen=True, slots=True)
class SessionCookie:
    """What a session cookie holds, once unsealed."""

    key: str
    session_id: str
    expires_at: datetime


def _seal(rt: Runtime, key: str, now: datetime) -> str:
    """A new session's cookie: each sign-in gets a session id of its own."""
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    payload = json.dumps({"k": key, "s": session_id, "t": int(now.timestamp())}, separators=(",", ":"))
    return pii.encrypt(rt.keyring, payload, context=SESSION_CONTEXT)


def _unseal(rt: Runtime, token: str, now: datetime) -> SessionCookie | None:
    """What a session cookie holds, or None if it is forged, altered or expired, or was sealed
    before cookies carried a session id (its holder signs in again)."""
    try:
        payload = json.loads(pii.decrypt(rt.keyring, token, context=SESSION_CONTEXT))
    except (pii.DecryptionFailed, ValueError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("k"), str):
        return None
    issued = payload.get("t")
    if not isinstance(issued, int):
        return None
    session_id = payload.get("s")
    if not isinstance(session_id, str) or not 16 <= len(session_id) <= 32:
        return None
    age = now.timestamp() - issued
    if age < -60 or age > SESSION_LIFETIME.total_seconds():
        return None
    expires_at = datetime.fromtimestamp(issued, UTC) + SESSION_LIFETIME
    return SessionCookie(str(payload["k"]), session_id, expires_at)


def _csrf_token(request: Request) -> tuple[str, bool]:
    """The form token (the cookie's value), and whether it is new and must be set."""
    found = request.cookies.get(CSRF_COOKIE, "")
    if 32 <= len(found) <= 128 and found.replace("-", "").replace("_", "").isalnum():
        return found, False
    return secrets.token_urlsafe(32), True


def _words(request: Request) -> Words:
    return Words(language_of(request.cookies.get(LANG_COOKIE)))


def _viewer(request: Request, rt: Runtime) -> Viewer | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    cookie = _unseal(rt, token, rt.clock())
    if cookie is None:
        return None
    with rt.read() as session:
        if dashboard_sessions.is_ended(session, cookie.session_id):
            return None
        try:
            principal = parties.authenticate(session, cookie.key)
        except Unauthorized:
            return None
        org = None
        if principal.organization_id is not None:
            org = parties.get_organization(
                session, principal=principal, organization_id=principal.organization_id
            ).name
    csrf, new = _csrf_token(request)
    return Viewer(principal, _words(request), csrf, org, {CSRF_COOKIE: csrf} if new else {})


def _secure(request: Request, rt: Runtime) -> bool:
    return request.url.scheme == "https" or rt.settings.upah_public_url.startswith("https://")


def _set_cookie(
    response: Response, request: Request, rt: Runtime, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request, rt),
    )


def _same_origin(request: Request, rt: Runtime) -> bool:
    """A browser names the page a form came from; it must be this site."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return True  # not a browser; the CSRF token must still match
    if origin == "null":
        return False
    netloc = urlsplit(origin).netloc
    allowed = {request.headers.get("host", ""), urlsplit(rt.settings.upah_public_url).netloc}
    return bool(netloc) and netloc in allowed


def _form_ok(request: Request, rt: Runtime, token: str) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return (
        bool(cookie)
        and bool(token)
        and hmac.compare_digest(cookie.encode(), token.encode())
        and _same_origin(request, rt)
    )


# --- rendering ------------------------------------------------------------------------------------------


def _render(
    request: Request,
    rt: Runtime,
    template: str,
    *,
    viewer: Viewer | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    words = viewer.words if viewer else _words(request)
    csrf, new = (viewer.csrf, bool(viewer.set_cookies)) if viewer else _csrf_token(request)
    nav = []
    if viewer is not None:
        nav = [(href, words.t(key)) for href, key, roles in NAV if viewer.may(roles)]
    page = _environment().get_template(template)
    body = page.render(
        w=words,
        v=viewer,
        csrf=csrf,
        nav=nav,
        path=request.url.path,
        done=_done_message(request, words),
        error=context.pop("error", None),
        **context,
    )
    response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
    if new:
        _set_cookie(response, request, rt, CSRF_COOKIE, csrf, max_age=int(SESSION_LIFETIME.total_seconds()))
    return response


def _done_message(request: Request, words: Words) -> str | None:
    key = DONE_MESSAGES.get(request.query_params.get("done", ""))
    if key is None:
        return None
    values = {
        name: request.query_params.get(name, "")
        for name in ("id", "accepted", "rejected", "status")
        if request.query_params.get(name, "").replace("_", "").isalnum()
    }
    if "status" in values:
        values["status"] = words.label("status", values["status"])
    try:
        return words.t(key, **values)
    except (KeyError, IndexError):
        return None


def _redirect(path: str, **done: object) -> RedirectResponse:
    query = f"?{urlencode({k: str(v) for k, v in done.items()})}" if done else ""
    return RedirectResponse(path + query, status_code=303)


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


def _refused(request: Request, rt: Runtime, viewer: Viewer | None, key: str, status: int) -> HTMLResponse:
    words = viewer.words if viewer else _words(request)
    return _render(request, rt, "message.html", viewer=viewer, status=status, message=words.t(key))


def _problem(words: Words, exc: PaymentsError | LedgerError) -> str:
    code = exc.code
    message = exc.message if isinstance(exc, PaymentsError) else str(exc)
    key = f"error.{code}"
    return words.t(key if key in _KNOWN_ERRORS else "error.other", message=message)


_KNOWN_ERRORS = frozenset(
    {
        "error.validation_error",
        "error.invalid_state",
        "error.forbidden",
        "error.not_found",
        "error.insufficient_funds",
        "error.invalid_statement",
    }
)


def _status_of(exc: PaymentsError | LedgerError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Forbidden):
        return 403
    if exc.code in ("validation_error", "invalid_statement", "rate_below_minimum_wage"):
        return 422
    return 409


Page = Callable[[Viewer], dict[str, Any]]


def _page(request: Request, rt: Runtime, template: str, roles: tuple[Role, ...], build: Page) -> Response:
    viewer = _viewer(request, rt)
    if viewer is None:
        return _to_sign_in()
    if not viewer.may(roles):
        return _refused(request, rt, viewer, "forbidden.page", 403)
    try:
        context = build(viewer)
    except NotFound:
        return _refused(request, rt, viewer, "not_found.page", 404)
    return _render(request, rt, template, viewer=viewer, **context)


# --- sign in and out, language, stylesheet ----------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, rt: RuntimeDep) -> Response:
    if _viewer(request, rt) is not None:
        return _redirect("/")
    return _render(request, rt, "login.html", viewer=None)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    rt: RuntimeDep,
    key: Annotated[str, Form(max_length=400)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    words = _words(request)
    if not _form_ok(request, rt, csrf):
        return _render(request, rt, "login.html", viewer=None, status=403, error=words.t("csrf.failed"))
    with rt.read() as session:
        try:
            parties.authenticate(session, key.strip())
        except Unauthorized:
            return _render(request, rt, "login.html", viewer=None, status=401, error=words.t("login.failed"))
    response = _redirect("/")
    lifetime = int(SESSION_LIFETIME.total_seconds())
    _set_cookie(response, request, rt, SESSION_COOKIE, _seal(rt, key.strip(), rt.clock()), lifetime)
    _set_cookie(response, request, rt, CSRF_COOKIE, secrets.token_urlsafe(32), lifetime)
    return response


@router.post("/logout")
def logout(request: Request, rt: RuntimeDep, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    if not _form_ok(request, rt, csrf):
        return _refused(request, rt, None, "csrf.failed", 403)
    token = request.cookies.get(SESSION_COOKIE)
    cookie = _unseal(rt, token, rt.clock()) if token else None
    if cookie is not None:  # a copy of the cookie is refused from now on, not only this one
        with rt.transaction() as session:
            dashboard_sessions.end(session, session_id=cookie.session_id, expires_at=cookie.expires_at)
    response = _to_sign_in()
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request, rt)
    )
    return response


@router.get("/lang/{code}")
def switch_language(request: Request, rt: RuntimeDep, code: str, next: str = "/") -> Response:
    target = next if next.startswith("/") and not next.startswith("//") and "\\" not in next else "/"
    response = RedirectResponse(target, status_code=303)
    _set_cookie(response, request, rt, LANG_COOKIE, language_of(code).value, max_age=365 * 86400)
    return response


@router.get("/static/style.css")
def stylesheet() -> Response:
    return Response(
        _stylesheet(),
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


# --- overview --------------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, rt: RuntimeDep) -> Response:
    def build(v: Viewer) -> dict[str, Any]:
        p = v.principal
        cards: list[dict[str, Any]] = []
        with rt.read() as session:
            if p.role is Role.BUYER and p.organization_id is not None:
                balance = parties.organization_balance(
                    session, principal=p, organization_id=p.organization_id
                )
                buyers = frozenset({p.organization_id})
                cards += [
                    {
                        "title": "overview.available",
                        "value": v.words.rp(balance.available),
                        "href": "/payouts",
                    },
                    {"title": "overview.held", "value": v.words.rp(balance.held), "href": "/orders"},
                    {
                        "title": "overview.awaiting_deliveries",
                        "value": v.words.num(len(deliveries.list_awaiting(session, principal=p))),
                        "href": "/deliveries",
                    },
                    {
                        "title": "overview.awaiting_runs",
                        "value": v.words.num(queries.count_runs_awaiting(session, buyers=buyers)),
                        "href": "/payouts",
                    },
                    {
                        "title": "overview.open_disputes",
                        "value": v.words.num(_open_disputes(session, p)),
                        "href": "/disputes",
                    },
                ]
            if p.role is Role.INTERMEDIARY:
                open_orders = orders.list_for(
                    session, principal=p, status=orders.OrderStatus.OPEN, limit=1000
                )
                cards.append(
                    {
                        "title": "overview.open_orders",
                        "value": v.words.num(len(open_orders)),
                        "href": "/orders",
                    }
                )
            if p.role in AUDIT_READERS:
                chain = ledger_reports.verify_chain(session)
                cards += [
                    {
                        "title": "overview.chain",
                        "value": v.words.t("ledger.chain_ok" if chain.ok else "ledger.chain_broken"),
                        "href": "/ledger",
                        "bad": not chain.ok,
                    },
                    {
                        "title": "overview.open_exceptions",
                        "value": v.words.num(
                            queries.count_open_exceptions(session, organization_id=p.organization_id)
                        ),
                        "href": "/reconciliations",
                    },
                    {
                        "title": "overview.open_disputes",
                        "value": v.words.num(_open_disputes(session, p)),
                        "href": "/disputes",
                    },
                ]
        return {"cards": cards}

    return _page(request, rt, "overview.html", (Role.BUYER, Role.INTERMEDIARY, *AUDIT_READERS), build)


def _open_disputes(session: Session, principal: Principal) -> int:
    return len(channels.list_disputes(session, principal=principal, status="open", limit=1000))


# --- buyer pages -----------------------------------------------------------------------------------------


@router.get("/orders", response_class=HTMLResponse)
def orders_page(request: Request, rt: RuntimeDep) -> Response:
    def build(v: Viewer) -> dict[str, Any]:
        with rt.read() as session:
            found = orders.list_for(session, principal=v.principal, limit=200)
            waiting: dict[int, int] = {}
            if v.role is Role.BUYER:
                for d in deliveries.list_awaiting(session, principal=v.principal):
                    waiting[d.order_id] = waiting.get(d.order_id, 0) + d.pieces
        return {"orders": found, "waiting": waiting}

    return _page(request, rt, "orders.html", ORDER_READERS, build)


def _deliveries_context(rt: Runtime, v: Viewer) -> dict[str, Any]:
    with rt.read() as session:
        waiting = deliveries.list_awaiting(session, principal=v.principal)
        order_refs = {
            o.id: o
            for o in (
                orders.get(session, principal=v.principal, order_id=i) for i in {d.order_id for d in waiting}
            )
        }
        names = queries.homeworker_names(
            session, principal=v.principal, keyring=rt.keyring, ids={d.homeworker_id for d in waiting}
        )
    return {"deliveries": waiting, "orders": order_refs, "names": names}


@router.get("/deliveries", response_class=HTMLResponse)
def deliveries_page(request: Request, rt: RuntimeDep) -> Response:
    return _page(request, rt, "deliveries.html", BUYER_ONLY, lambda v: _deliveries_context(rt, v))


def _count(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 10 else None


@router.post("/deliveries/{delivery_id}/confirm", response_class=HTMLResponse)
def confirm_delivery(
    request: Request,
    rt: RuntimeDep,
    delivery_id: int,
    accepted: Annotated[str, Form(max_length=20)] = "",
    rejected: Annotated[str, Form(max_length=20)] = "0",
    reason: Annotated[str, Form(max_length=1000)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    return _act(
        request,
        rt,
        csrf,
        BUYER_ONLY,
        template="deliveries.html",
        context=lambda v: _deliveries_context(rt, v),
        act=lambda v: _confirm(rt, v, delivery_id, accepted, rejected, reason),
    )


def _confirm(rt: Runtime, v: Viewer, delivery_id: int, accepted: str, rejected: str, reason: str) -> Response:
    good, bad = _count(accepted), _count(rejected or "0")
    if good is None or bad is None:
        raise _Invalid(v.words.t("error.validation_error", message=v.words.t("deliveries.help")))
    with rt.transaction() as session:
        done = deliveries.confirm(
            session,
            principal=v.principal,
            delivery_id=delivery_id,
            accepted=good,
            rejected=bad,
            reason=reason or None,
            now=rt.clock(),
        )
    rt.metrics.deliveries_confirmed.inc()
    rt.metrics.pieces_accepted.inc(done.accepted or 0)
    rt.metrics.pieces_rejected.inc(done.rejected or 0)
    rt.metrics.earnings_posted.inc(done.earning or 0)
    return _redirect(
        "/deliveries", done="confirmed", id=done.id, accepted=done.accepted, rejected=done.rejected
    )


class _Invalid(Exception):
    """A refusal worded by the page itself (a form value it cannot read, or a known rule)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _act(
    request: Request,
    rt: Runtime,
    csrf: str,
    roles: tuple[Role, ...],
    *,
    template: str,
    context: Page,
    act: Callable[[Viewer], Response],
) -> Response:
    """A form post: signed in, allowed, same-site; the domain's refusal is shown on the page."""
    viewer = _viewer(request, rt)
    if viewer is None:
        return _to_sign_in()
    if not _form_ok(request, rt, csrf):
        return _refused(request, rt, viewer, "csrf.failed", 403)
    if not viewer.may(roles):
        return _refused(request, rt, viewer, "forbidden.page", 403)
    try:
        return act(viewer)
    except _Invalid as exc:
        error, status = exc.message, exc.status
    except (PaymentsError, LedgerError) as exc:
        error, status = _problem(viewer.words, exc), _status_of(exc)
    try:
        page = context(viewer)
    except NotFound:
        return _refused(request, rt, viewer, "not_found.page", 404)
    return _render(request, rt, template, viewer=viewer, status=status, error=error, **page)


def _payouts_context(rt: Runtime, v: Viewer) -> dict[str, Any]:
    p = v.principal
    buyers = None if p.platform_wide else frozenset({p.organization_id or 0})
    with rt.read() as session:
        runs = queries.payout_runs(session, buyers=buyers)
        recent = payouts.list_for(session, principal=p, status=None, limit=100)
        names = queries.homeworker_names(
            session, principal=p, keyring=rt.keyring, ids={x.homeworker_id for x in recent}
        )
    return {
        "runs": runs,
        "payouts": recent,
        "names": names,
        "awaiting": RunStatus.AWAITING_APPROVAL,
        "may_act": p.role is Role.BUYER,
    }


@router.get("/payouts", response_class=HTMLResponse)
def payouts_page(request: Request, rt: RuntimeDep) -> Response:
    return _page(request, rt, "payouts.html", PAYOUT_READERS, lambda v: _payouts_context(rt, v))


def _payouts_act(request: Request, rt: Runtime, csrf: str, act: Callable[[Viewer], Response]) -> Response:
    """A buyer's form on the payouts page: done, or the page again with what went wrong."""
    return _act(
        request,
        rt,
        csrf,
        BUYER_ONLY,
        template="payouts.html",
        context=lambda v: _payouts_context(rt, v),
        act=act,
    )


@router.post("/payouts/runs", response_class=HTMLResponse)
def create_run(request: Request, rt: RuntimeDep, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    def act(v: Viewer) -> Response:
        with rt.transaction() as session:
            run = payouts.create_run(session, principal=v.principal, policy=rt.run_policy, now=rt.clock())
        rt.metrics.payout_runs.inc()
        if rt.kick:
            rt.kick()
        return _redirect("/payouts", done="run_created", id=run.id, status=run.status.value)

    return _payouts_act(request, rt, csrf, act)


@router.post("/payouts/runs/{run_id}/approve", response_class=HTMLResponse)
def approve_run(
    request: Request, rt: RuntimeDep, run_id: int, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    def act(v: Viewer) -> Response:
        try:
            with rt.transaction() as session:
                run = payouts.approve_run(session, principal=v.principal, run_id=run_id, now=rt.clock())
        except Forbidden:  # the page only lets buyers here: this is maker–checker refusing the maker
            raise _Invalid(v.words.t("payouts.same_key"), status=403) from None
        if rt.kick:
            rt.kick()
        return _redirect("/payouts", done="approved", id=run.id)

    return _payouts_act(request, rt, csrf, act)


@router.post("/payouts/runs/{run_id}/reject", response_class=HTMLResponse)
def reject_run(
    request: Request, rt: RuntimeDep, run_id: int, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    def act(v: Viewer) -> Response:
        with rt.transaction() as session:
            run = payouts.reject_run(session, principal=v.principal, run_id=run_id, now=rt.clock())
        return _redirect("/payouts", done="rejected", id=run.id)

    return _payouts_act(request, rt, csrf, act)


@router.get("/disputes", response_class=HTMLResponse)
def disputes_page(request: Request, rt: RuntimeDep) -> Response:
    def build(v: Viewer) -> dict[str, Any]:
        with rt.read() as session:
            found = channels.list_disputes(session, principal=v.principal, limit=200)
            found.sort(key=lambda d: d.status != "open")  # open first, each part newest first
            notes = queries.dispute_notes(session, ids=[d.id for d in found])
            names = {}
            if v.role is Role.BUYER:
                names = queries.homeworker_names(
                    session, principal=v.principal, keyring=rt.keyring, ids={d.homeworker_id for d in found}
                )
        return {"disputes": found, "notes": notes, "names": names}

    return _page(request, rt, "disputes.html", DISPUTE_READERS, build)


# --- auditor pages ---------------------------------------------------------------------------------------


@router.get("/ledger", response_class=HTMLResponse)
def ledger_page(request: Request, rt: RuntimeDep) -> Response:
    def build(v: Viewer) -> dict[str, Any]:
        with rt.read() as session:
            visible = audit.accounts_in_scope(session, principal=v.principal)
            tb = ledger_reports.trial_balance(session)
            problems = ledger_reports.check_integrity(session)
            chain = ledger_reports.verify_chain(session)
        lines = [line for line in tb.lines if visible is None or line.account_id in visible]
        problems = [p for p in problems if visible is None or p.account_id is None or p.account_id in visible]
        return {
            "tb": tb,
            "lines": lines,
            "totals": sorted(tb.totals.items()),
            "problems": problems,
            "chain": chain,
            "scoped": visible is not None,
        }

    return _page(request, rt, "ledger.html", AUDIT_READERS, build)


def _reconciliations_context(rt: Runtime, v: Viewer) -> dict[str, Any]:
    with rt.read() as session:
        runs = reconciliation.list_runs(session, principal=v.principal, limit=50)
    return {
        "runs": runs,
        "providers": sorted(reconciliation.PROVIDER_FORMATS),
        "classes": reconciliation.CLASSES,
    }


@router.get("/reconciliations", response_class=HTMLResponse)
def reconciliations_page(request: Request, rt: RuntimeDep) -> Response:
    return _page(
        request, rt, "reconciliations.html", AUDIT_READERS, lambda v: _reconciliations_context(rt, v)
    )


@router.post("/reconciliations", response_class=HTMLResponse)
def upload_statement(
    request: Request,
    rt: RuntimeDep,
    provider: Annotated[str, Form(max_length=32)] = "sandbox",
    statement: Annotated[UploadFile | None, File()] = None,
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    def act(v: Viewer) -> Response:
        if statement is None or not statement.filename:
            raise _Invalid(v.words.t("recon.no_file"))
        parsed = reconciliation.parse_statement(
            statement.file.read(reconciliation.MAX_STATEMENT_BYTES + 1), provider=provider.strip()
        )
        with rt.transaction() as session:
            run = reconciliation.reconcile(
                session,
                statement=parsed,
                principal=v.principal,
                source=reconciliation.Source.API,
                keyring=rt.keyring,
                now=rt.clock(),
            )
        return _redirect(f"/reconciliations/{run.id}", done="reconciled", id=run.id)

    return _act(
        request,
        rt,
        csrf,
        AUDIT_READERS,
        template="reconciliations.html",
        context=lambda v: _reconciliations_context(rt, v),
        act=act,
    )


def _reconciliation_context(rt: Runtime, v: Viewer, run_id: int) -> dict[str, Any]:
    with rt.read() as session:
        run = reconciliation.get_run(session, principal=v.principal, run_id=run_id)
    exceptions = sorted(run.exceptions, key=lambda e: (e.status != "open", e.id))
    summary = [(c.value, run.summary.get(c.value, 0)) for c in reconciliation.CLASSES]
    return {"run": run, "exceptions": exceptions, "summary": summary}


@router.get("/reconciliations/{run_id}", response_class=HTMLResponse)
def reconciliation_page(request: Request, rt: RuntimeDep, run_id: int) -> Response:
    return _page(
        request, rt, "reconciliation.html", AUDIT_READERS, lambda v: _reconciliation_context(rt, v, run_id)
    )


@router.post("/reconciliations/{run_id}/exceptions/{exception_id}/notes", response_class=HTMLResponse)
def annotate_exception(
    request: Request,
    rt: RuntimeDep,
    run_id: int,
    exception_id: int,
    note: Annotated[str, Form(max_length=4000)] = "",
    action: Annotated[str, Form(max_length=16)] = "resolve",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    def act(v: Viewer) -> Response:
        try:
            chosen = reconciliation.NoteAction(action)
        except ValueError:
            raise _Invalid(v.words.t("error.validation_error", message="action")) from None
        with rt.transaction() as session:
            reconciliation.annotate(
                session,
                principal=v.principal,
                run_id=run_id,
                exception_id=exception_id,
                action=chosen,
                text=note,
                now=rt.clock(),
            )
        return _redirect(f"/reconciliations/{run_id}", done="noted", id=exception_id)

    return _act(
        request,
        rt,
        csrf,
        AUDIT_READERS,
        template="reconciliation.html",
        context=lambda v: _reconciliation_context(rt, v, run_id),
        act=act,
    )


# --- the pilot report ------------------------------------------------------------------------------------


@router.get("/report", response_class=HTMLResponse)
def report_page(request: Request, rt: RuntimeDep) -> Response:
    def build(v: Viewer) -> dict[str, Any]:
        now = rt.clock()
        w = v.words
        with rt.read() as session:
            report = pilot_reports.pilot(session, principal=v.principal, start=None, end=None, now=now)
            buyers = audit.scope_of(session, principal=v.principal, allow=REPORT_READERS).payout_buyers
            by_day = queries.payouts_by_day(session, buyers=buyers, today=now.astimezone(WIB).date())
            waits = queries.waits(session, buyers=buyers)
        data = report.as_dict()
        regions = data["by_region"]
        top = charts.scale_top([amount for _, amount in by_day])
        over_time = charts.columns(
            [(day.strftime("%d/%m"), amount) for day, amount in by_day],
            value_text=[w.rp(amount) for _, amount in by_day],
            tick_text=[w.num(0), w.num(top // 2), w.num(top)],
        )
        histogram = queries.wait_histogram(waits)
        wait_chart = charts.shares(
            [(w.t(key), Decimal(n)) for key, n in histogram],
            value_text=[w.num(n) for _, n in histogram],
            scale=Decimal(max([n for _, n in histogram] + [1])),
        )
        names = {r.code: r.name for r in wages.regions()}
        leakage = charts.shares(
            [(names.get(g["key"], g["key"]), _ratio(g["leakage"])) for g in regions],
            value_text=[w.pct(g["leakage"]) for g in regions],
            warn_above=Decimal("0"),
        )
        compliance = charts.shares(
            [(names.get(g["key"], g["key"]), _ratio(g["share_meeting_benchmark"])) for g in regions],
            value_text=[w.pct(g["share_meeting_benchmark"]) for g in regions],
            warn_below=Decimal("1"),
        )
        return {
            "report": data,
            "total": data["total"],
            "regions": regions,
            "region_names": names,
            "by_day": by_day,
            "histogram": histogram,
            "charts": {
                "over_time": over_time,
                "waits": wait_chart,
                "leakage": leakage,
                "compliance": compliance,
            },
            "paid_days": sum(1 for _, amount in by_day if amount),
            "waits_count": len(waits),
        }

    return _page(request, rt, "report.html", REPORT_READERS, build)


def _ratio(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


def _download(
    request: Request, rt: Runtime, roles: tuple[Role, ...], name: str, make: Callable[[Viewer], str]
) -> Response:
    viewer = _viewer(request, rt)
    if viewer is None:
        return _to_sign_in()
    if not viewer.may(roles):
        return _refused(request, rt, viewer, "forbidden.page", 403)
    try:
        body = make(viewer)
    except NotFound:
        return _refused(request, rt, viewer, "not_found.page", 404)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/report.csv")
def report_csv(request: Request, rt: RuntimeDep) -> Response:
    def make(v: Viewer) -> str:
        with rt.read() as session:
            report = pilot_reports.pilot(session, principal=v.principal, start=None, end=None, now=rt.clock())
        return pilot_reports.pilot_csv(report)

    return _download(request, rt, REPORT_READERS, "pilot-report.csv", make)


@router.get("/reconciliations/{run_id}/report.csv")
def reconciliation_csv(request: Request, rt: RuntimeDep, run_id: int) -> Response:
    def make(v: Viewer) -> str:
        with rt.read() as session:
            return reconciliation.report_csv(session, principal=v.principal, run_id=run_id)

    return _download(request, rt, AUDIT_READERS, f"reconciliation-{run_id}.csv", make)
