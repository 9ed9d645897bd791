"""The homeworker's self-service: the USSD menu tree and SMS commands, text in, text out.

Nothing here touches the database. The caller loads a :class:`WorkerView` — what one
homeworker may see — and passes it in with the USSD answers so far; this module decides
the screen and, where one is needed, the *action* the caller must perform (hash and store
a PIN, check a PIN, record a language, open a dispute). The HTTP layer therefore does::

    request = ussd.parse_request(form)                      # integrations.ussd
    view = load the homeworker by phone                     # unknown → unknown_number()
    outcome = ussd_screen(view, request.steps, pin_ok=cached_verdict, now=now)
    if outcome.action is CheckPin → verify, record the try (pins.after_failure /
        after_success), cache the verdict for this session, reload the view, call again
        with pin_ok=verdict
    if outcome.action is OpenDispute → create it (idempotent per USSD session), call
        again with dispute_ref=its code
    other actions (SetPin, ChangePin, SetLanguage) → perform, then show outcome.text
    reply = ussd.render(UssdReply(text=outcome.text, end=outcome.end))

An outcome whose ``text`` is ``None`` is not a screen: it asks for its action's result.

**Replay.** The gateway sends every answer of the session on each request, so the menu
is replayed from the first answer each time. An action is emitted only for the *last*
answer; earlier ones were performed on earlier requests. Answers after a screen that
ended the session mean a broken gateway session and end it again, emitting nothing.

**The flow.** A homeworker without a PIN first creates one (4–6 digits, twice; guessable
ones refused) and dials again. With a PIN, the first well-formed answer is the PIN
(checked once per session, see :mod:`payments.pins`); a wrong one ends the session with
the tries left; three lock the menu for 15 minutes. Then the main menu: balance, last
three payments, open work, report a problem, language, change PIN; ``0`` goes back. A
letter, an empty answer or an unknown choice re-shows the screen with a short error;
three in a row end the session. Nothing raises on input.

SMS commands (:func:`sms_reply`) need no PIN — the reply goes only to the registered
number that asked — and show no more than the USSD would. Nothing here ever shows a NIK
or a full wallet number: the view does not carry them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TypeAlias

from payments import messages
from payments.messages import Language, MessageKey
from payments.payout_states import PayoutStatus
from payments.pins import is_locked, is_trivial, tries_left, valid_pin_format
from payments.rates import Unit

_K = MessageKey

MAX_STEPS = 20
"""More answers than this in one session is not a person at a keypad."""

MAX_ERRORS = 3
"""Invalid answers in a row before the session ends."""

RECENT_PAYOUTS = 3
BACK = "0"


class DisputeKind(StrEnum):
    NOT_PAID = "not_paid"
    WRONG_AMOUNT = "wrong_amount"
    PIECES_NOT_COUNTED = "pieces_not_counted"
    OTHER = "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class PayoutLine:
    """One recent payout as the homeworker sees it."""

    day: date
    amount: int
    status: PayoutStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkLine:
    """One open assignment: what, at what rate (per ``unit``), how much is left, by when."""

    order_ref: str
    product: str
    rate: Decimal
    unit: Unit
    pieces_left: int
    deadline: date


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerView:
    """What the self-service may know about one homeworker, loaded by the caller."""

    homeworker_id: int
    language: Language
    pin_set: bool
    locked_until: datetime | None
    owed: int
    """Earned and not yet paid out."""
    on_hold: int
    """In process: payouts sent but not yet confirmed."""
    paid_this_month: int
    recent_payouts: Sequence[PayoutLine] = ()
    """Newest first; the first three are shown."""
    open_work: Sequence[WorkLine] = ()
    pin_failures: int = 0
    """Wrong PINs in a row so far (after the current try has been recorded)."""


@dataclass(frozen=True, slots=True)
class SetPin:
    """Hash and store the homeworker's first PIN."""

    pin: str


@dataclass(frozen=True, slots=True)
class CheckPin:
    """Verify this PIN, record the try, then call again with ``pin_ok``."""

    pin: str


@dataclass(frozen=True, slots=True)
class SetLanguage:
    language: Language


@dataclass(frozen=True, slots=True)
class OpenDispute:
    """Open a dispute of this kind, then call again with ``dispute_ref``."""

    kind: DisputeKind


@dataclass(frozen=True, slots=True)
class ChangePin:
    """Replace the PIN; ``old`` is the one this session logged in with (already checked)."""

    old: str
    new: str


Action = SetPin | CheckPin | SetLanguage | OpenDispute | ChangePin


@dataclass(frozen=True, slots=True, kw_only=True)
class UssdOutcome:
    text: str | None
    """The screen; ``None`` when the action's result is needed to draw it."""
    end: bool
    action: Action | None = None


class _Screen(StrEnum):
    SET_PIN = "set_pin"
    CONFIRM_PIN = "confirm_pin"
    ENTER_PIN = "enter_pin"
    MAIN = "main"
    BALANCE = "balance"
    PAYOUTS = "payouts"
    WORK = "work"
    REPORT = "report"
    LANGUAGE = "language"
    NEW_PIN = "new_pin"
    CONFIRM_NEW_PIN = "confirm_new_pin"


@dataclass(frozen=True, slots=True, kw_only=True)
class _State:
    screen: _Screen
    lang: Language
    error: MessageKey | None = None
    errors: int = 0
    pending_pin: str | None = None
    heading: MessageKey | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _End:
    """A screen that ends the session; ``key`` is ``None`` until the action's result is known."""

    key: MessageKey | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Context:
    login_pin: str
    dispute_ref: str | None


_MAIN_CHOICES = {
    "1": _Screen.BALANCE,
    "2": _Screen.PAYOUTS,
    "3": _Screen.WORK,
    "4": _Screen.REPORT,
    "5": _Screen.LANGUAGE,
    "6": _Screen.NEW_PIN,
}
_DISPUTE_CHOICES = {
    "1": DisputeKind.NOT_PAID,
    "2": DisputeKind.WRONG_AMOUNT,
    "3": DisputeKind.PIECES_NOT_COUNTED,
    "4": DisputeKind.OTHER,
}
_LANGUAGE_CHOICES = {"1": Language.ID, "2": Language.EN}


def _end(key: MessageKey, lang: Language, **params: str | int) -> UssdOutcome:
    return UssdOutcome(text=messages.text(key, lang, **params), end=True)


def unknown_number(language: Language = Language.ID) -> UssdOutcome:
    """The polite END for a number Upah does not know; it says nothing about anyone."""
    return _end(_K.USSD_UNKNOWN_NUMBER, language)


def session_expired(language: Language = Language.ID) -> UssdOutcome:
    """The END for a session the caller can no longer continue."""
    return _end(_K.USSD_SESSION_EXPIRED, language)


def pin_unusable(language: Language = Language.ID) -> UssdOutcome:
    """The END for a PIN that can no longer be checked (made with a retired key): only a reset helps."""
    return _end(_K.USSD_PIN_UNUSABLE, language)


def invalid_request(language: Language = Language.ID) -> UssdOutcome:
    """The END for a gateway request that could not be read (too long, too many answers)."""
    return _end(_K.USSD_TOO_MANY_ERRORS, language)


def service_unavailable(language: Language = Language.ID) -> UssdOutcome:
    """The END when something failed on our side: never a stack trace on a phone."""
    return _end(_K.USSD_SERVICE_ERROR, language)


_Step: TypeAlias = tuple[_State | _End, Action | None]


def _invalid(state: _State, error: MessageKey) -> _Step:
    if state.errors + 1 >= MAX_ERRORS:
        return _End(key=_K.USSD_TOO_MANY_ERRORS), None
    return replace(state, error=error, errors=state.errors + 1, heading=None), None


def _go(
    state: _State,
    screen: _Screen,
    *,
    error: MessageKey | None = None,
    errors: int = 0,
    pending_pin: str | None = None,
) -> _Step:
    return _State(screen=screen, lang=state.lang, error=error, errors=errors, pending_pin=pending_pin), None


def _pin_problem(answer: str) -> MessageKey | None:
    if not valid_pin_format(answer):
        return _K.ERR_PIN_FORMAT
    if is_trivial(answer):
        return _K.ERR_PIN_TRIVIAL
    return None


def _choose_pin(state: _State, answer: str, *, confirm: _Screen) -> _Step:
    problem = _pin_problem(answer)
    if problem is not None:
        return _invalid(state, problem)
    return _go(state, confirm, pending_pin=answer)


def _mismatch(state: _State, *, retry: _Screen) -> _Step:
    if state.errors + 1 >= MAX_ERRORS:
        return _End(key=_K.USSD_TOO_MANY_ERRORS), None
    return _go(state, retry, error=_K.ERR_PIN_MISMATCH, errors=state.errors + 1)


def _first_use_step(state: _State, answer: str) -> _Step:
    if state.screen is _Screen.SET_PIN:
        return _choose_pin(state, answer, confirm=_Screen.CONFIRM_PIN)
    if answer == state.pending_pin:
        return _End(key=_K.USSD_PIN_SAVED), SetPin(answer)
    return _mismatch(state, retry=_Screen.SET_PIN)


def _menu_step(state: _State, answer: str, ctx: _Context) -> _Step:
    screen = state.screen
    if screen is _Screen.MAIN:
        target = _MAIN_CHOICES.get(answer)
        if target is None:
            return _invalid(state, _K.USSD_INVALID_INPUT)
        return _go(state, target)
    if screen is _Screen.NEW_PIN:
        return _choose_pin(state, answer, confirm=_Screen.CONFIRM_NEW_PIN)
    if screen is _Screen.CONFIRM_NEW_PIN:
        if answer == state.pending_pin:
            return _End(key=_K.USSD_PIN_CHANGED), ChangePin(old=ctx.login_pin, new=answer)
        return _mismatch(state, retry=_Screen.NEW_PIN)
    if answer == BACK:
        return _go(state, _Screen.MAIN)
    if screen is _Screen.REPORT and answer in _DISPUTE_CHOICES:
        if ctx.dispute_ref is None:
            return _End(key=None), OpenDispute(_DISPUTE_CHOICES[answer])
        return _End(key=_K.USSD_REPORT_DONE), None
    if screen is _Screen.LANGUAGE and answer in _LANGUAGE_CHOICES:
        language = _LANGUAGE_CHOICES[answer]
        chosen = _State(screen=_Screen.MAIN, lang=language, heading=_K.USSD_LANGUAGE_SET)
        return chosen, SetLanguage(language)
    return _invalid(state, _K.USSD_INVALID_INPUT)


def _payout_lines(view: WorkerView, lang: Language) -> list[str]:
    return [
        messages.payout_line(day=p.day, amount=p.amount, status=p.status, lang=lang)
        for p in view.recent_payouts[:RECENT_PAYOUTS]
    ]


def _work_lines(view: WorkerView, lang: Language) -> list[str]:
    return [
        messages.work_line(
            order_ref=w.order_ref,
            product=w.product,
            rate=w.rate,
            unit=w.unit,
            pieces_left=w.pieces_left,
            deadline=w.deadline,
            lang=lang,
        )
        for w in view.open_work
    ]


def _body(state: _State, view: WorkerView, limit: int) -> str:
    lang = state.lang
    back = messages.text(_K.USSD_BACK, lang)
    screen = state.screen
    if screen is _Screen.MAIN:
        heading = messages.text(state.heading, lang) if state.heading else "Upah"
        return f"{heading}\n{messages.text(_K.USSD_MAIN_MENU, lang)}"
    if screen is _Screen.BALANCE:
        balance = messages.text(
            _K.USSD_BALANCE,
            lang,
            owed=messages.format_rupiah(view.owed),
            on_hold=messages.format_rupiah(view.on_hold),
            paid=messages.format_rupiah(view.paid_this_month),
        )
        return f"{balance}\n{back}"
    if screen is _Screen.PAYOUTS:
        lines = _payout_lines(view, lang) or [messages.text(_K.USSD_NO_PAYOUTS, lang)]
        head = messages.text(_K.USSD_PAYOUTS_TITLE, lang)
        return messages.join_lines(lines, head=head, tail=back, lang=lang, limit=limit)
    if screen is _Screen.WORK:
        lines = _work_lines(view, lang) or [messages.text(_K.USSD_NO_WORK, lang)]
        head = messages.text(_K.USSD_WORK_TITLE, lang)
        return messages.join_lines(lines, head=head, tail=back, lang=lang, limit=limit)
    simple = {
        _Screen.SET_PIN: _K.USSD_SET_PIN,
        _Screen.CONFIRM_PIN: _K.USSD_CONFIRM_PIN,
        _Screen.ENTER_PIN: _K.USSD_ENTER_PIN,
        _Screen.NEW_PIN: _K.USSD_NEW_PIN,
        _Screen.CONFIRM_NEW_PIN: _K.USSD_CONFIRM_NEW_PIN,
    }
    if screen in simple:
        return messages.text(simple[screen], lang)
    menu = _K.USSD_REPORT_MENU if screen is _Screen.REPORT else _K.USSD_LANGUAGE_MENU
    return f"{messages.text(menu, lang)}\n{back}"


def _screen(state: _State, view: WorkerView) -> str:
    if state.error is None:
        return _body(state, view, messages.LIMIT)
    error = messages.text(state.error, state.lang)
    return f"{error}\n{_body(state, view, messages.LIMIT - len(error) - 1)}"


def _finish(end: _End, action: Action | None, lang: Language, dispute_ref: str | None) -> UssdOutcome:
    if end.key is None:
        return UssdOutcome(text=None, end=True, action=action)
    params: dict[str, str | int] = {}
    if end.key is _K.USSD_REPORT_DONE:
        params["reference"] = dispute_ref or ""
    return UssdOutcome(text=messages.text(end.key, lang, **params), end=True, action=action)


def _locked_minutes(locked_until: datetime, now: datetime) -> int:
    return max(1, math.ceil((locked_until - now).total_seconds() / 60))


def ussd_screen(
    view: WorkerView,
    steps: Sequence[str],
    *,
    pin_ok: bool | None,
    now: datetime,
    dispute_ref: str | None = None,
) -> UssdOutcome:
    """Decide the next USSD screen (and any action) from a view and the answers so far."""
    lang = view.language
    answers = [step.strip() for step in steps]
    if len(answers) > MAX_STEPS:
        return _end(_K.USSD_TOO_MANY_ERRORS, lang)
    if view.locked_until is not None and is_locked(view.locked_until, now=now):
        return _end(_K.USSD_LOCKED, lang, minutes=_locked_minutes(view.locked_until, now))
    if not view.pin_set:
        return _replay(view, answers, _State(screen=_Screen.SET_PIN, lang=lang), _first_use_step, None)
    login = _State(screen=_Screen.ENTER_PIN, lang=lang)
    position = 0
    while position < len(answers) and not valid_pin_format(answers[position]):
        outcome, _ = _invalid(login, _K.ERR_PIN_FORMAT)
        if isinstance(outcome, _End):
            return _finish(outcome, None, lang, None)
        login = outcome
        position += 1
    if position == len(answers):
        return UssdOutcome(text=_screen(login, view), end=False)
    pin = answers[position]
    if pin_ok is None:
        return UssdOutcome(text=None, end=False, action=CheckPin(pin))
    if not pin_ok:
        return _end(_K.USSD_WRONG_PIN, lang, tries=tries_left(view.pin_failures))
    ctx = _Context(login_pin=pin, dispute_ref=dispute_ref)
    return _replay(
        view,
        answers[position + 1 :],
        _State(screen=_Screen.MAIN, lang=lang),
        lambda state, answer: _menu_step(state, answer, ctx),
        dispute_ref,
    )


def _replay(
    view: WorkerView,
    answers: list[str],
    start: _State,
    step: Callable[[_State, str], _Step],
    dispute_ref: str | None,
) -> UssdOutcome:
    """Walk the answers from ``start``; only the last answer's action is emitted."""
    state: _State | _End = start
    action: Action | None = None
    for answer in answers:
        if isinstance(state, _End):
            return _end(_K.USSD_SESSION_EXPIRED, view.language)
        state, action = step(state, answer)
    if isinstance(state, _End):
        return _finish(state, action, view.language, dispute_ref)
    return UssdOutcome(text=_screen(state, view), end=False, action=action)


_SMS_COMMANDS: dict[str, tuple[str, Language | None]] = {
    "saldo": ("balance", None),
    "riwayat": ("history", None),
    "tarif": ("rates", None),
    "bantuan": ("help", None),
    "bal": ("balance", Language.EN),
    "balance": ("balance", Language.EN),
    "hist": ("history", Language.EN),
    "history": ("history", Language.EN),
    "rates": ("rates", Language.EN),
    "help": ("help", Language.EN),
}


def sms_command(command_text: str) -> str:
    """The first word of an SMS, case-folded and without punctuation."""
    kept = (" " if ch.isspace() else ch for ch in command_text.casefold() if ch.isalnum() or ch.isspace())
    words = "".join(kept).split()
    return words[0] if words else ""


def sms_reply(view: WorkerView, command_text: str) -> str:
    """Answer an SMS command in one message: English words answer in English, others in hers."""
    command, forced = _SMS_COMMANDS.get(sms_command(command_text), ("help", None))
    lang = forced or view.language
    if command == "balance":
        return messages.text(
            _K.SMS_BALANCE,
            lang,
            owed=messages.format_rupiah(view.owed),
            on_hold=messages.format_rupiah(view.on_hold),
            paid=messages.format_rupiah(view.paid_this_month),
        )
    if command == "history":
        lines = _payout_lines(view, lang)
        if not lines:
            return messages.text(_K.SMS_NO_HISTORY, lang)
        return _sms_list(_K.SMS_HISTORY, lines, lang)
    if command == "rates":
        lines = _work_lines(view, lang)
        if not lines:
            return messages.text(_K.SMS_NO_WORK, lang)
        return _sms_list(_K.SMS_RATES, lines, lang)
    return messages.text(_K.SMS_HELP, lang)


def _sms_list(key: MessageKey, lines: list[str], lang: Language) -> str:
    head = messages.text(key, lang, lines="").rstrip("\n")
    return messages.join_lines(lines, head=head, lang=lang)


def sms_unknown_number(language: Language = Language.ID) -> str:
    """The reply to a number Upah does not know, if the caller chooses to reply at all."""
    return messages.text(_K.SMS_UNKNOWN_NUMBER, language)
