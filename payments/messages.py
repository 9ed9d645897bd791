"""Everything a homeworker reads, in Bahasa Indonesia (first) and English.

Homeworkers read Upah on feature phones: USSD screens and SMS. Every text here is
GSM-7 only — one curly quote would turn a 160-character SMS into a 70-character UCS-2
one, split and billed three times — and fits one screen or one SMS (:data:`LIMIT`, 160;
a USSD reply adds ``CON ``/``END `` and gateways allow 182). Templates are written in the
printable-ASCII part of GSM-7 and :func:`text` enforces the rest at runtime: every
parameter passes through :func:`plain` (ASCII, no GSM-7 escape characters, one line),
free-text parameters (a product name, an order reference) are shortened to a fixed width
(:data:`PARAM_WIDTHS`), and a result over the limit raises :class:`MessageDoesNotFit` rather
than being cut at the gateway.

Money reads as Indonesians write it, in both languages: ``Rp25.000`` (dot thousands, no
decimals), a rate with a fraction as ``Rp12,5``. Dates are ``dd/mm``.

The catalogue is keyed by :class:`MessageKey`; screens and replies are assembled by
:mod:`payments.selfservice`, notices by the ``*_notice`` functions below.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from enum import StrEnum

from ledger.money import round_minor
from payments.errors import PaymentsError
from payments.payout_states import PayoutStatus
from payments.rates import Unit

LIMIT = 160
"""Characters in one SMS and in one USSD screen."""

SAFE_CHARS = frozenset(
    " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
"""Printable ASCII that is in the GSM-7 basic set (so one unit each): no ``[]{}^~|\\```."""

PARAM_WIDTHS: dict[str, int] = {"product": 16, "order_ref": 16, "reference": 16}
"""Free-text parameters are shortened to these widths so every message fits."""

_REPLACEMENTS = {
    "‘": "'",
    "’": "'",
    "‚": "'",
    "‛": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "–": "-",
    "—": "-",
    "‐": "-",
    "‑": "-",
    "−": "-",
    "…": "...",
    "[": "(",
    "]": ")",
    "{": "(",
    "}": ")",
    "|": "/",
    "\\": "/",
    "~": "-",
    "^": "",
    "`": "'",
    "\u00a0": " ",
    "\u202f": " ",
}


class Language(StrEnum):
    ID = "id"
    """Bahasa Indonesia, the default."""
    EN = "en"


class FailureReason(StrEnum):
    """Why a payout failed, as a homeworker is told it (providers' codes map onto these)."""

    WALLET_LIMIT = "wallet_limit"
    NAME_MISMATCH = "name_mismatch"
    ACCOUNT_NOT_FOUND = "account_not_found"
    ACCOUNT_BLOCKED = "account_blocked"
    OTHER = "other"


class MessageDoesNotFit(PaymentsError):
    """A message over one screen or SMS, or outside GSM-7: a catalogue bug, caught in tests."""

    code = "message_does_not_fit"


class MessageKey(StrEnum):
    # USSD: PIN
    USSD_SET_PIN = "ussd.set_pin"
    USSD_CONFIRM_PIN = "ussd.confirm_pin"
    USSD_PIN_SAVED = "ussd.pin_saved"
    USSD_ENTER_PIN = "ussd.enter_pin"
    USSD_WRONG_PIN = "ussd.wrong_pin"
    USSD_LOCKED = "ussd.locked"
    USSD_NEW_PIN = "ussd.new_pin"
    USSD_CONFIRM_NEW_PIN = "ussd.confirm_new_pin"
    USSD_PIN_CHANGED = "ussd.pin_changed"
    ERR_PIN_FORMAT = "err.pin_format"
    ERR_PIN_TRIVIAL = "err.pin_trivial"
    ERR_PIN_MISMATCH = "err.pin_mismatch"
    # USSD: menus and screens
    USSD_MAIN_MENU = "ussd.main_menu"
    USSD_BACK = "ussd.back"
    USSD_BALANCE = "ussd.balance"
    USSD_PAYOUTS_TITLE = "ussd.payouts_title"
    USSD_NO_PAYOUTS = "ussd.no_payouts"
    USSD_WORK_TITLE = "ussd.work_title"
    USSD_NO_WORK = "ussd.no_work"
    USSD_REPORT_MENU = "ussd.report_menu"
    USSD_REPORT_DONE = "ussd.report_done"
    USSD_LANGUAGE_MENU = "ussd.language_menu"
    USSD_LANGUAGE_SET = "ussd.language_set"
    USSD_UNKNOWN_NUMBER = "ussd.unknown_number"
    USSD_SESSION_EXPIRED = "ussd.session_expired"
    USSD_PIN_UNUSABLE = "ussd.pin_unusable"
    USSD_INVALID_INPUT = "ussd.invalid_input"
    USSD_TOO_MANY_ERRORS = "ussd.too_many_errors"
    USSD_SERVICE_ERROR = "ussd.service_error"
    # Lines shared by USSD screens and SMS replies
    PAYOUT_LINE = "line.payout"
    WORK_LINE = "line.work"
    MORE = "line.more"
    STATUS_PAID = "status.paid"
    STATUS_PROCESSING = "status.processing"
    STATUS_FAILED = "status.failed"
    STATUS_REVERSED = "status.reversed"
    UNIT_PIECE = "unit.piece"
    UNIT_PASANG = "unit.pasang"
    UNIT_LUSIN = "unit.lusin"
    UNIT_KODI = "unit.kodi"
    UNIT_SLOP = "unit.slop"
    # SMS replies
    SMS_BALANCE = "sms.balance"
    SMS_HISTORY = "sms.history"
    SMS_NO_HISTORY = "sms.no_history"
    SMS_RATES = "sms.rates"
    SMS_NO_WORK = "sms.no_work"
    SMS_HELP = "sms.help"
    SMS_UNKNOWN_NUMBER = "sms.unknown_number"
    # Notices (SMS we send first)
    NOTICE_PAYOUT_SUCCEEDED = "notice.payout_succeeded"
    NOTICE_PAYOUT_FAILED = "notice.payout_failed"
    NOTICE_PAYOUT_REVERSED = "notice.payout_reversed"
    NOTICE_ORDER_ASSIGNED = "notice.order_assigned"
    NOTICE_PIN_LOCKED = "notice.pin_locked"
    NOTICE_PIN_RESET = "notice.pin_reset"
    REASON_WALLET_LIMIT = "reason.wallet_limit"
    REASON_NAME_MISMATCH = "reason.name_mismatch"
    REASON_ACCOUNT_NOT_FOUND = "reason.account_not_found"
    REASON_ACCOUNT_BLOCKED = "reason.account_blocked"
    REASON_OTHER = "reason.other"


_K = MessageKey
_ID, _EN = Language.ID, Language.EN

CATALOGUE: dict[MessageKey, dict[Language, str]] = {
    _K.USSD_SET_PIN: {
        _ID: "Selamat datang di Upah.\nBuat PIN 4-6 angka:",
        _EN: "Welcome to Upah.\nCreate a PIN of 4-6 digits:",
    },
    _K.USSD_CONFIRM_PIN: {
        _ID: "Ketik ulang PIN Anda:",
        _EN: "Enter the same PIN again:",
    },
    _K.USSD_PIN_SAVED: {
        _ID: (
            "PIN Anda tersimpan. Hubungi Upah lagi untuk masuk.\nJangan beri tahu PIN Anda kepada siapa pun."
        ),
        _EN: "Your PIN is saved. Dial Upah again to log in.\nNever tell anyone your PIN.",
    },
    _K.USSD_ENTER_PIN: {
        _ID: "Upah\nMasukkan PIN Anda:",
        _EN: "Upah\nEnter your PIN:",
    },
    _K.USSD_WRONG_PIN: {
        _ID: "PIN salah. Sisa {tries} kali coba, lalu menu terkunci 15 menit.",
        _EN: "Wrong PIN. {tries} tries left, then the menu locks for 15 minutes.",
    },
    _K.USSD_LOCKED: {
        _ID: "Menu terkunci karena 3 kali PIN salah. Coba lagi dalam {minutes} menit.",
        _EN: "The menu is locked after 3 wrong PINs. Try again in {minutes} minutes.",
    },
    _K.USSD_NEW_PIN: {
        _ID: "Masukkan PIN baru (4-6 angka):",
        _EN: "Enter a new PIN (4-6 digits):",
    },
    _K.USSD_CONFIRM_NEW_PIN: {
        _ID: "Ketik ulang PIN baru:",
        _EN: "Enter the new PIN again:",
    },
    _K.USSD_PIN_CHANGED: {
        _ID: "PIN baru tersimpan. Jangan beri tahu PIN Anda kepada siapa pun.",
        _EN: "Your new PIN is saved. Never tell anyone your PIN.",
    },
    _K.ERR_PIN_FORMAT: {
        _ID: "PIN harus 4-6 angka.",
        _EN: "A PIN is 4-6 digits.",
    },
    _K.ERR_PIN_TRIVIAL: {
        _ID: "PIN mudah ditebak (1234, 0000, 1212).",
        _EN: "Too easy to guess (1234, 0000, 1212).",
    },
    _K.ERR_PIN_MISMATCH: {
        _ID: "PIN tidak sama.",
        _EN: "The PINs did not match.",
    },
    _K.USSD_MAIN_MENU: {
        _ID: "1 Saldo\n2 Pembayaran terakhir\n3 Pekerjaan\n4 Lapor masalah\n5 Bahasa\n6 Ganti PIN",
        _EN: "1 Balance\n2 Last payments\n3 Open work\n4 Report a problem\n5 Language\n6 Change PIN",
    },
    _K.USSD_BACK: {
        _ID: "0 Kembali",
        _EN: "0 Back",
    },
    _K.USSD_BALANCE: {
        _ID: "Belum dibayar: {owed}\nDalam proses: {on_hold}\nDibayar bulan ini: {paid}",
        _EN: "Owed to you: {owed}\nIn process: {on_hold}\nPaid this month: {paid}",
    },
    _K.USSD_PAYOUTS_TITLE: {
        _ID: "Pembayaran terakhir:",
        _EN: "Last payments:",
    },
    _K.USSD_NO_PAYOUTS: {
        _ID: "Belum ada pembayaran.",
        _EN: "No payments yet.",
    },
    _K.USSD_WORK_TITLE: {
        _ID: "Pekerjaan:",
        _EN: "Open work:",
    },
    _K.USSD_NO_WORK: {
        _ID: "Tidak ada pekerjaan terbuka.",
        _EN: "No open work.",
    },
    _K.USSD_REPORT_MENU: {
        _ID: "Lapor masalah:\n1 Belum dibayar\n2 Jumlah salah\n3 Setoran tidak dihitung\n4 Lainnya",
        _EN: "Report a problem:\n1 Not paid\n2 Wrong amount\n3 Pieces not counted\n4 Other",
    },
    _K.USSD_REPORT_DONE: {
        _ID: "Laporan diterima. Kode: {reference}. Petugas Upah akan menghubungi Anda. Simpan kode ini.",
        _EN: "Report received. Code: {reference}. Upah staff will contact you. Keep this code.",
    },
    _K.USSD_LANGUAGE_MENU: {
        _ID: "Pilih bahasa:\n1 Bahasa Indonesia\n2 English",
        _EN: "Choose a language:\n1 Bahasa Indonesia\n2 English",
    },
    _K.USSD_LANGUAGE_SET: {
        _ID: "Bahasa: Indonesia",
        _EN: "Language: English",
    },
    _K.USSD_UNKNOWN_NUMBER: {
        _ID: "Maaf, layanan Upah tidak tersedia untuk nomor ini.",
        _EN: "Sorry, Upah is not available for this number.",
    },
    _K.USSD_PIN_UNUSABLE: {
        _ID: "PIN Anda tidak dapat diperiksa lagi. Minta perantara atau pembeli Anda menghapusnya, "
        "lalu buat PIN baru.",
        _EN: "Your PIN can no longer be checked. Ask your agent or buyer to clear it, then choose a new one.",
    },
    _K.USSD_SESSION_EXPIRED: {
        _ID: "Sesi telah berakhir. Silakan hubungi Upah lagi.",
        _EN: "Your session has ended. Please dial Upah again.",
    },
    _K.USSD_INVALID_INPUT: {
        _ID: "Pilihan tidak valid.",
        _EN: "Invalid choice.",
    },
    _K.USSD_TOO_MANY_ERRORS: {
        _ID: "Terlalu banyak jawaban salah. Silakan hubungi Upah lagi.",
        _EN: "Too many invalid answers. Please dial Upah again.",
    },
    _K.USSD_SERVICE_ERROR: {
        _ID: "Maaf, layanan Upah sedang gangguan. Silakan coba lagi nanti.",
        _EN: "Sorry, Upah is not working right now. Please try again later.",
    },
    _K.PAYOUT_LINE: {
        _ID: "{date} {amount} {status}",
        _EN: "{date} {amount} {status}",
    },
    _K.WORK_LINE: {
        _ID: "{order_ref} {product} {rate}/{unit} sisa {pieces_left} s/d {deadline}",
        _EN: "{order_ref} {product} {rate}/{unit} {pieces_left} left by {deadline}",
    },
    _K.MORE: {
        _ID: "+{count} lagi",
        _EN: "+{count} more",
    },
    _K.STATUS_PAID: {_ID: "berhasil", _EN: "paid"},
    _K.STATUS_PROCESSING: {_ID: "diproses", _EN: "processing"},
    _K.STATUS_FAILED: {_ID: "gagal", _EN: "failed"},
    _K.STATUS_REVERSED: {_ID: "dibatalkan", _EN: "reversed"},
    _K.UNIT_PIECE: {_ID: "buah", _EN: "piece"},
    _K.UNIT_PASANG: {_ID: "pasang", _EN: "pair"},
    _K.UNIT_LUSIN: {_ID: "lusin", _EN: "dozen"},
    _K.UNIT_KODI: {_ID: "kodi", _EN: "kodi"},
    _K.UNIT_SLOP: {_ID: "slop", _EN: "slop"},
    _K.SMS_BALANCE: {
        _ID: "Upah: belum dibayar {owed}, dalam proses {on_hold}, dibayar bulan ini {paid}. "
        "Kirim RIWAYAT untuk pembayaran terakhir.",
        _EN: "Upah: owed to you {owed}, in process {on_hold}, paid this month {paid}. "
        "Send HIST for your last payments.",
    },
    _K.SMS_HISTORY: {
        _ID: "Upah, pembayaran terakhir:\n{lines}",
        _EN: "Upah, last payments:\n{lines}",
    },
    _K.SMS_NO_HISTORY: {
        _ID: "Upah: belum ada pembayaran. Kirim SALDO untuk melihat saldo.",
        _EN: "Upah: no payments yet. Send BAL to see your balance.",
    },
    _K.SMS_RATES: {
        _ID: "Upah, pekerjaan dan tarif:\n{lines}",
        _EN: "Upah, open work and rates:\n{lines}",
    },
    _K.SMS_NO_WORK: {
        _ID: "Upah: tidak ada pekerjaan terbuka.",
        _EN: "Upah: no open work.",
    },
    _K.SMS_HELP: {
        _ID: "Upah: kirim SALDO (saldo), RIWAYAT (pembayaran), TARIF (pekerjaan dan tarif). "
        "Menu lengkap lewat USSD. Upah tidak pernah meminta PIN Anda.",
        _EN: "Upah: send BAL (balance), HIST (payments), RATES (work and rates). "
        "Full menu by USSD. Upah never asks for your PIN.",
    },
    _K.SMS_UNKNOWN_NUMBER: {
        _ID: "Maaf, layanan Upah tidak tersedia untuk nomor ini.",
        _EN: "Sorry, Upah is not available for this number.",
    },
    _K.NOTICE_PAYOUT_SUCCEEDED: {
        _ID: "Upah: {amount} dikirim ke dompet Anda untuk {pieces} buah, {period}. "
        "Ref {reference}. Upah tidak pernah meminta PIN Anda.",
        _EN: "Upah: {amount} sent to your wallet for {pieces} pieces, {period}. "
        "Ref {reference}. Upah never asks for your PIN.",
    },
    _K.NOTICE_PAYOUT_FAILED: {
        _ID: "Upah: pembayaran {amount} gagal, {reason}. Uang tetap tercatat sebagai hak Anda. "
        "Ref {reference}.",
        _EN: "Upah: payment of {amount} failed, {reason}. The money is still owed to you. Ref {reference}.",
    },
    _K.NOTICE_PAYOUT_REVERSED: {
        _ID: "Upah: pembayaran {amount} dibatalkan oleh penyedia dompet. Uang kembali tercatat sebagai "
        "hak Anda dan dibayar lagi. Ref {reference}.",
        _EN: "Upah: the wallet provider reversed the payment of {amount}. The money is owed to you "
        "again and will be paid again. Ref {reference}.",
    },
    _K.NOTICE_ORDER_ASSIGNED: {
        _ID: "Upah: pesanan {order_ref} {product}, {quantity} buah, tarif {rate}/{unit}, "
        "s/d {deadline}. Upah per jam {hourly}, acuan UMR {benchmark}.",
        _EN: "Upah: order {order_ref} {product}, {quantity} pieces at {rate}/{unit}, "
        "by {deadline}. Pay per hour {hourly}, minimum wage {benchmark}.",
    },
    _K.NOTICE_PIN_LOCKED: {
        _ID: "Upah: menu terkunci 15 menit karena 3 kali PIN salah. Jika bukan Anda, "
        "hubungi perantara. Upah tidak pernah meminta PIN Anda.",
        _EN: "Upah: the menu is locked for 15 minutes after 3 wrong PINs. If it was not you, "
        "tell your agent. Upah never asks for your PIN.",
    },
    _K.NOTICE_PIN_RESET: {
        _ID: "Upah: PIN menu Anda dihapus. Buat PIN baru saat membuka menu lagi. Jika Anda tidak "
        "memintanya, hubungi perantara. Upah tidak pernah meminta PIN Anda.",
        _EN: "Upah: your menu PIN was cleared. Choose a new one next time you dial. If you did not "
        "ask for this, tell your agent. Upah never asks for your PIN.",
    },
    _K.REASON_WALLET_LIMIT: {
        _ID: "dompet Anda sudah mencapai batas saldo",
        _EN: "your wallet has reached its limit",
    },
    _K.REASON_NAME_MISMATCH: {
        _ID: "nama di dompet tidak cocok",
        _EN: "the name on the wallet does not match",
    },
    _K.REASON_ACCOUNT_NOT_FOUND: {
        _ID: "nomor dompet tidak ditemukan",
        _EN: "the wallet was not found",
    },
    _K.REASON_ACCOUNT_BLOCKED: {
        _ID: "dompet Anda diblokir",
        _EN: "your wallet is blocked",
    },
    _K.REASON_OTHER: {
        _ID: "ada gangguan di penyedia dompet",
        _EN: "the wallet provider had a problem",
    },
}

_STATUS_KEYS: dict[PayoutStatus, MessageKey] = {
    PayoutStatus.CREATED: _K.STATUS_PROCESSING,
    PayoutStatus.SUBMITTED: _K.STATUS_PROCESSING,
    PayoutStatus.UNKNOWN: _K.STATUS_PROCESSING,
    PayoutStatus.SUCCEEDED: _K.STATUS_PAID,
    PayoutStatus.FAILED: _K.STATUS_FAILED,
    PayoutStatus.REVERSED: _K.STATUS_REVERSED,
}

_UNIT_KEYS: dict[Unit, MessageKey] = {
    Unit.PIECE: _K.UNIT_PIECE,
    Unit.PASANG: _K.UNIT_PASANG,
    Unit.LUSIN: _K.UNIT_LUSIN,
    Unit.KODI: _K.UNIT_KODI,
    Unit.SLOP: _K.UNIT_SLOP,
}

_REASON_KEYS: dict[FailureReason, MessageKey] = {
    FailureReason.WALLET_LIMIT: _K.REASON_WALLET_LIMIT,
    FailureReason.NAME_MISMATCH: _K.REASON_NAME_MISMATCH,
    FailureReason.ACCOUNT_NOT_FOUND: _K.REASON_ACCOUNT_NOT_FOUND,
    FailureReason.ACCOUNT_BLOCKED: _K.REASON_ACCOUNT_BLOCKED,
    FailureReason.OTHER: _K.REASON_OTHER,
}


def plain(value: str) -> str:
    """Reduce any text to one line of GSM-7-safe ASCII: quotes and dashes mapped, accents dropped."""
    mapped = "".join(_REPLACEMENTS.get(ch, ch) for ch in value)
    decomposed = unicodedata.normalize("NFKD", mapped)
    kept = []
    for ch in decomposed:
        if ch in SAFE_CHARS:
            kept.append(ch)
        elif unicodedata.category(ch)[0] in "ZC":
            kept.append(" ")
    return " ".join("".join(kept).split())


def shorten(value: str, width: int) -> str:
    """Fit free text into ``width`` characters, marking a cut with a final '.'."""
    if width < 2:
        raise ValueError("width must be at least 2")
    if len(value) <= width:
        return value
    return value[: width - 1].rstrip() + "."


def _group(number: int) -> str:
    return f"{number:,}".replace(",", ".")


def format_number(number: int) -> str:
    """A count as Indonesians write it: ``1.250``."""
    return _group(number) if number >= 0 else "-" + _group(-number)


def format_rupiah(amount: int) -> str:
    """An amount of whole rupiah: ``Rp25.000``, ``-Rp25.000``."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("format_rupiah takes an int amount in whole rupiah")
    sign = "-" if amount < 0 else ""
    return f"{sign}Rp{_group(abs(amount))}"


def format_rate(rate: Decimal) -> str:
    """A rate exactly as agreed, with a decimal comma if it has a fraction: ``Rp12,5``."""
    if not rate.is_finite():
        raise ValueError("a rate must be finite")
    sign = "-" if rate < 0 else ""
    whole, _, fraction = f"{abs(rate):f}".partition(".")
    fraction = fraction.rstrip("0")
    text = f"{sign}Rp{_group(int(whole))}"
    return f"{text},{fraction}" if fraction else text


def format_hourly(hourly: Decimal) -> str:
    """Hourly pay for display, to the whole rupiah: ``Rp4.512/jam`` needs no cents."""
    return format_rupiah(round_minor(hourly))


def format_date(day: date) -> str:
    """A short date for a small screen: ``05/03``."""
    return f"{day.day:02d}/{day.month:02d}"


def format_period(start: date, end: date) -> str:
    """A pay period: ``01/03-15/03`` (one date if it is one day)."""
    if start == end:
        return format_date(start)
    return f"{format_date(start)}-{format_date(end)}"


def _param(name: str, value: str | int) -> str:
    if isinstance(value, bool):
        raise TypeError(f"parameter {name} is a bool")
    if isinstance(value, int):
        return format_number(value)
    cleaned = plain(value)
    width = PARAM_WIDTHS.get(name)
    return shorten(cleaned, width) if width is not None else cleaned


def text(key: MessageKey, lang: Language, **params: str | int) -> str:
    """The catalogue text for ``key`` in ``lang``, filled in, GSM-7 safe and within one SMS."""
    template = CATALOGUE[key][lang]
    filled = template.format(**{name: _param(name, value) for name, value in params.items()})
    _check(filled, key=key)
    return filled


def _check(message: str, *, key: str) -> None:
    if len(message) > LIMIT:
        raise MessageDoesNotFit(f"{key}: {len(message)} characters, more than {LIMIT}")
    if any(ch not in SAFE_CHARS and ch != "\n" for ch in message):
        raise MessageDoesNotFit(f"{key}: contains a character outside safe GSM-7")


def join_lines(
    lines: Sequence[str],
    *,
    head: str,
    tail: str = "",
    lang: Language,
    limit: int = LIMIT,
) -> str:
    """Join ``head``, as many ``lines`` as fit, a "+N more" note and ``tail`` within ``limit``."""

    def assemble(shown: int) -> str:
        parts = [head, *lines[:shown]]
        if shown < len(lines):
            parts.append(text(_K.MORE, lang, count=len(lines) - shown))
        if tail:
            parts.append(tail)
        return "\n".join(part for part in parts if part)

    for shown in range(len(lines), -1, -1):
        candidate = assemble(shown)
        if len(candidate) <= limit:
            return candidate
    raise MessageDoesNotFit("even the heading and footer do not fit one screen")


def unit_name(unit: Unit, lang: Language) -> str:
    return text(_UNIT_KEYS[unit], lang)


def status_word(status: PayoutStatus, lang: Language) -> str:
    """A payout status in words a homeworker uses (submitted and unknown are both 'processing')."""
    return text(_STATUS_KEYS[status], lang)


def reason_words(reason: FailureReason, lang: Language) -> str:
    return text(_REASON_KEYS[reason], lang)


def payout_line(*, day: date, amount: int, status: PayoutStatus, lang: Language) -> str:
    """``05/03 Rp250.000 berhasil``."""
    return text(
        _K.PAYOUT_LINE,
        lang,
        date=format_date(day),
        amount=format_rupiah(amount),
        status=status_word(status, lang),
    )


def work_line(
    *,
    order_ref: str,
    product: str,
    rate: Decimal,
    unit: Unit,
    pieces_left: int,
    deadline: date,
    lang: Language,
) -> str:
    """``ORD-17 Sandal jepit Rp1.250/pasang sisa 40 s/d 20/03``."""
    return text(
        _K.WORK_LINE,
        lang,
        order_ref=order_ref,
        product=product,
        rate=format_rate(rate),
        unit=unit_name(unit, lang),
        pieces_left=pieces_left,
        deadline=format_date(deadline),
    )


def payout_succeeded_notice(
    *,
    lang: Language,
    amount: int,
    pieces: int,
    period_start: date,
    period_end: date,
    reference: str,
) -> str:
    """The SMS a homeworker gets when money reached her wallet."""
    return text(
        _K.NOTICE_PAYOUT_SUCCEEDED,
        lang,
        amount=format_rupiah(amount),
        pieces=pieces,
        period=format_period(period_start, period_end),
        reference=reference,
    )


def payout_failed_notice(*, lang: Language, amount: int, reason: FailureReason, reference: str) -> str:
    """The SMS when a payout failed: why, in plain words, and that the money is still hers."""
    return text(
        _K.NOTICE_PAYOUT_FAILED,
        lang,
        amount=format_rupiah(amount),
        reason=reason_words(reason, lang),
        reference=reference,
    )


def payout_reversed_notice(*, lang: Language, amount: int, reference: str) -> str:
    """The SMS when the provider took back a payment she had been told reached her: the money
    is owed to her again."""
    return text(_K.NOTICE_PAYOUT_REVERSED, lang, amount=format_rupiah(amount), reference=reference)


def order_assigned_notice(
    *,
    lang: Language,
    order_ref: str,
    product: str,
    quantity: int,
    rate: Decimal,
    unit: Unit,
    deadline: date,
    effective_hourly: Decimal,
    benchmark_hourly: Decimal,
) -> str:
    """The SMS for new work: what, how much, by when, and its hourly pay against the benchmark."""
    return text(
        _K.NOTICE_ORDER_ASSIGNED,
        lang,
        order_ref=order_ref,
        product=product,
        quantity=quantity,
        rate=format_rate(rate),
        unit=unit_name(unit, lang),
        deadline=format_date(deadline),
        hourly=format_hourly(effective_hourly),
        benchmark=format_hourly(benchmark_hourly),
    )


def pin_locked_notice(*, lang: Language) -> str:
    """The SMS sent when the USSD menu locks, in case it was not her at the keypad."""
    return text(_K.NOTICE_PIN_LOCKED, lang)


def pin_reset_notice(*, lang: Language) -> str:
    """The SMS sent when an organisation clears her PIN, in case she did not ask for it."""
    return text(_K.NOTICE_PIN_RESET, lang)
