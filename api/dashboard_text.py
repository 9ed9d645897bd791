"""The dashboard's words and numbers in Bahasa Indonesia (the default) and English.

One catalogue, keyed by a short id, each entry ``(Indonesian, English)``. Numbers follow the
reader's language: ``Rp 1.250.000`` and ``12,5`` in Indonesian, ``Rp 1,250,000`` and ``12.5``
in English. Times are shown in WIB (UTC+7), where every pilot region lies.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import StrEnum


class Language(StrEnum):
    ID = "id"
    EN = "en"


DEFAULT_LANGUAGE = Language.ID
WIB = timezone(timedelta(hours=7), "WIB")

CATALOGUE: dict[str, tuple[str, str]] = {
    # frame
    "app.tagline": (
        "Upah — pembayaran borongan untuk pekerja rumahan",
        "Upah — piece-rate pay for homeworkers",
    ),
    "nav.overview": ("Ringkasan", "Overview"),
    "nav.orders": ("Pesanan", "Orders"),
    "nav.deliveries": ("Setoran", "Deliveries"),
    "nav.payouts": ("Pembayaran", "Payouts"),
    "nav.disputes": ("Pengaduan", "Disputes"),
    "nav.ledger": ("Buku besar", "Ledger"),
    "nav.reconciliations": ("Rekonsiliasi", "Reconciliation"),
    "nav.report": ("Laporan pilot", "Pilot report"),
    "nav.sign_out": ("Keluar", "Sign out"),
    "nav.language": ("Bahasa", "Language"),
    "nav.menu": ("Menu", "Menu"),
    "role.buyer": ("pembeli", "buyer"),
    "role.auditor": ("auditor", "auditor"),
    "role.admin": ("admin", "admin"),
    "role.intermediary": ("perantara", "intermediary"),
    "signed_in_as": ("Masuk sebagai", "Signed in as"),
    "platform_wide": ("seluruh platform", "platform-wide"),
    "organization": ("organisasi", "organisation"),
    "none_yet": ("Belum ada.", "None yet."),
    "yes": ("ya", "yes"),
    "no": ("tidak", "no"),
    "times_in_wib": ("Waktu dalam WIB (UTC+7).", "Times in WIB (UTC+7)."),
    # sign in
    "login.title": ("Masuk", "Sign in"),
    "login.key": ("Kunci API", "API key"),
    "login.help": (
        "Tempel kunci API organisasi Anda. Kunci disimpan terenkripsi dalam cookie sesi, "
        "tidak pernah di alamat halaman.",
        "Paste your organisation's API key. It is kept encrypted in a session cookie, "
        "never in a page address.",
    ),
    "login.submit": ("Masuk", "Sign in"),
    "login.failed": ("Kunci API tidak dikenal atau sudah dicabut.", "Unknown or revoked API key."),
    "login.expired": ("Sesi berakhir. Silakan masuk lagi.", "Your session ended. Please sign in again."),
    "csrf.failed": (
        "Formulir kedaluwarsa atau tidak berasal dari halaman ini. Muat ulang dan coba lagi.",
        "The form expired or did not come from this site. Reload the page and try again.",
    ),
    "forbidden.page": ("Halaman ini bukan untuk peran Anda.", "This page is not for your role."),
    "not_found.page": ("Tidak ditemukan.", "Not found."),
    # overview
    "overview.title": ("Ringkasan", "Overview"),
    "overview.available": ("Dana tersedia", "Available funds"),
    "overview.held": ("Dana ditahan untuk pesanan", "Held for orders"),
    "overview.awaiting_deliveries": ("Setoran menunggu konfirmasi", "Deliveries awaiting confirmation"),
    "overview.awaiting_runs": ("Putaran pembayaran menunggu persetujuan", "Payout runs awaiting approval"),
    "overview.open_orders": ("Pesanan terbuka", "Open orders"),
    "overview.open_disputes": ("Pengaduan terbuka", "Open disputes"),
    "overview.chain": ("Rantai hash buku besar", "Ledger hash chain"),
    "overview.open_exceptions": ("Pengecualian rekonsiliasi terbuka", "Open reconciliation exceptions"),
    "overview.go": ("Buka", "Open"),
    # orders
    "orders.title": ("Pesanan kerja", "Work orders"),
    "orders.reference": ("Referensi", "Reference"),
    "orders.product": ("Produk", "Product"),
    "orders.rate": ("Tarif per unit", "Rate per unit"),
    "orders.region": ("Wilayah", "Region"),
    "orders.progress": ("Kemajuan", "Progress"),
    "orders.accepted_of": ("{accepted} dari {quantity} diterima", "{accepted} of {quantity} accepted"),
    "orders.rejected": ("{rejected} ditolak", "{rejected} rejected"),
    "orders.awaiting": ("{pieces} menunggu", "{pieces} awaiting"),
    "orders.deadline": ("Tenggat", "Deadline"),
    "orders.status": ("Status", "Status"),
    "orders.fair_rate": ("Tarif layak", "Fair rate"),
    "orders.effective_hourly": ("Upah per jam efektif", "Effective hourly pay"),
    "orders.benchmark_hourly": ("Patokan per jam (UMK/UMP ÷ 173)", "Benchmark per hour (UMK/UMP ÷ 173)"),
    "orders.fair_rate_per_piece": ("Tarif layak per unit", "Fair rate per unit"),
    "orders.meets": ("Memenuhi patokan", "Meets the benchmark"),
    "orders.below": ("Di bawah patokan", "Below the benchmark"),
    "orders.benchmark_note": (
        "Patokan terhadap upah minimum wilayah, bukan temuan hukum.",
        "A benchmark against the regional minimum wage, not a legal finding.",
    ),
    "orders.held_remaining": ("Sisa dana ditahan", "Held remaining"),
    # deliveries
    "deliveries.title": ("Setoran menunggu konfirmasi", "Deliveries awaiting confirmation"),
    "deliveries.help": (
        "Terima semua potongan, atau tulis berapa yang ditolak beserta alasannya. Diterima + ditolak harus "
        "sama dengan jumlah yang disetor.",
        "Accept every piece, or say how many are rejected and why. Accepted + rejected must equal the pieces "
        "delivered.",
    ),
    "deliveries.id": ("Setoran", "Delivery"),
    "deliveries.order": ("Pesanan", "Order"),
    "deliveries.homeworker": ("Pekerja rumahan", "Homeworker"),
    "deliveries.pieces": ("Potongan disetor", "Pieces delivered"),
    "deliveries.recorded": ("Dicatat", "Recorded"),
    "deliveries.accepted": ("Diterima", "Accepted"),
    "deliveries.rejected": ("Ditolak", "Rejected"),
    "deliveries.reason": ("Alasan penolakan", "Reason for rejection"),
    "deliveries.confirm": ("Konfirmasi", "Confirm"),
    "deliveries.confirmed": (
        "Setoran #{id} dikonfirmasi: {accepted} diterima, {rejected} ditolak; upah dicatat.",
        "Delivery #{id} confirmed: {accepted} accepted, {rejected} rejected; earnings posted.",
    ),
    "deliveries.none": ("Tidak ada setoran yang menunggu.", "No deliveries are waiting."),
    # payouts
    "payouts.title": ("Pembayaran", "Payouts"),
    "payouts.runs": ("Putaran pembayaran", "Payout runs"),
    "payouts.new_run": ("Mulai putaran pembayaran", "Start a payout run"),
    "payouts.new_run_help": (
        "Satu pembayaran per pekerja rumahan yang berhak menerima setidaknya batas minimum. Di atas ambang "
        "persetujuan, kunci lain dari organisasi Anda harus menyetujui.",
        "One payout per homeworker owed at least the minimum. Above the approval threshold, another key of "
        "your organisation must approve.",
    ),
    "payouts.run_created": ("Putaran #{id} dibuat: {status}.", "Run #{id} created: {status}."),
    "payouts.approve": ("Setujui dan kirim", "Approve and send"),
    "payouts.approved": ("Putaran #{id} disetujui dan sedang dikirim.", "Run #{id} approved and sending."),
    "payouts.reject": ("Tolak", "Reject"),
    "payouts.rejected": (
        "Putaran #{id} ditolak; uang yang ditahan dilepas untuk putaran berikutnya.",
        "Run #{id} rejected; what it held is released for a later run.",
    ),
    "payouts.same_key": (
        "Kunci yang membuat putaran tidak dapat menyetujuinya; orang kedua harus menyetujui.",
        "The key that created a run cannot approve it; a second person must.",
    ),
    "payouts.run": ("Putaran", "Run"),
    "payouts.count": ("Jumlah pembayaran", "Payouts"),
    "payouts.total": ("Total", "Total"),
    "payouts.fee": ("Biaya (dibayar pembeli)", "Fee (paid by the buyer)"),
    "payouts.created": ("Dibuat", "Created"),
    "payouts.approved_at": ("Disetujui", "Approved"),
    "payouts.completed": ("Selesai", "Completed"),
    "payouts.awaiting": ("Menunggu persetujuan", "Awaiting approval"),
    "payouts.recent": ("Pembayaran terbaru", "Recent payouts"),
    "payouts.payout": ("Pembayaran", "Payout"),
    "payouts.amount": ("Jumlah", "Amount"),
    "payouts.settled": ("Diselesaikan", "Settled"),
    "payouts.failure": ("Alasan gagal", "Failure reason"),
    # disputes
    "disputes.title": ("Pengaduan pekerja rumahan", "Homeworkers' disputes"),
    "disputes.reference": ("Referensi", "Reference"),
    "disputes.kind": ("Jenis", "Kind"),
    "disputes.channel": ("Saluran", "Channel"),
    "disputes.opened": ("Dibuka", "Opened"),
    "disputes.resolved": ("Diselesaikan", "Resolved"),
    "disputes.notes": ("Catatan", "Notes"),
    "disputes.help": (
        "Pengaduan dibuka oleh pekerja rumahan lewat USSD atau SMS. Auditor dapat menambahkan catatan lewat "
        "API (POST /v1/disputes/{id}/notes).",
        "Disputes are opened by homeworkers over USSD or SMS. Auditors add notes through the API "
        "(POST /v1/disputes/{id}/notes).",
    ),
    "dispute.not_paid": ("belum dibayar", "not paid"),
    "dispute.wrong_amount": ("jumlah salah", "wrong amount"),
    "dispute.pieces_not_counted": ("potongan tidak dihitung", "pieces not counted"),
    "dispute.other": ("lainnya", "other"),
    # ledger
    "ledger.title": ("Buku besar", "Ledger"),
    "ledger.trial_balance": ("Neraca saldo", "Trial balance"),
    "ledger.balanced": ("Seimbang: debit = kredit", "Balanced: debits = credits"),
    "ledger.unbalanced": ("TIDAK seimbang", "NOT balanced"),
    "ledger.account": ("Akun", "Account"),
    "ledger.code": ("Kode", "Code"),
    "ledger.type": ("Jenis", "Type"),
    "ledger.debits": ("Debit", "Debits"),
    "ledger.credits": ("Kredit", "Credits"),
    "ledger.balance": ("Saldo", "Balance"),
    "ledger.totals": ("Total", "Totals"),
    "ledger.chain": ("Verifikasi rantai hash", "Hash-chain verification"),
    "ledger.chain_ok": ("Utuh", "Intact"),
    "ledger.chain_broken": ("RUSAK", "BROKEN"),
    "ledger.entries_checked": ("Entri diperiksa", "Entries checked"),
    "ledger.checkpoints_checked": ("Checkpoint bertanda tangan diperiksa", "Signed checkpoints checked"),
    "ledger.unsealed": ("Entri belum disegel", "Entries not yet sealed"),
    "ledger.first_break": ("Kerusakan pertama", "First break"),
    "ledger.integrity": ("Pemeriksaan integritas", "Integrity check"),
    "ledger.integrity_ok": ("Tidak ada masalah.", "No problems."),
    "ledger.scoped": (
        "Hanya akun organisasi Anda yang ditampilkan; total dan rantai mencakup seluruh buku.",
        "Only your organisation's accounts are listed; totals and the chain cover the whole book.",
    ),
    # reconciliation
    "recon.title": ("Rekonsiliasi laporan penyedia", "Provider statement reconciliation"),
    "recon.upload": ("Unggah laporan penyedia (CSV)", "Upload a provider statement (CSV)"),
    "recon.provider": ("Penyedia", "Provider"),
    "recon.statement": ("Berkas laporan", "Statement file"),
    "recon.submit": ("Rekonsiliasi", "Reconcile"),
    "recon.run": ("Putaran", "Run"),
    "recon.lines": ("Baris", "Lines"),
    "recon.period": ("Periode", "Period"),
    "recon.source": ("Sumber", "Source"),
    "recon.summary": ("Ringkasan", "Summary"),
    "recon.exceptions": ("Pengecualian", "Exceptions"),
    "recon.no_exceptions": ("Tidak ada pengecualian: semua cocok.", "No exceptions: everything matched."),
    "recon.class": ("Kelas", "Class"),
    "recon.line": ("Baris", "Line"),
    "recon.ledger_amount": ("Menurut buku besar", "Ledger says"),
    "recon.provider_amount": ("Menurut penyedia", "Provider says"),
    "recon.status": ("Status", "Status"),
    "recon.message": ("Keterangan", "Message"),
    "recon.note": ("Catatan", "Note"),
    "recon.resolve": ("Selesaikan dengan catatan", "Resolve with note"),
    "recon.add_note": ("Tambah catatan", "Add note"),
    "recon.reopen": ("Buka kembali", "Reopen"),
    "recon.noted": ("Catatan disimpan untuk pengecualian #{id}.", "Note saved on exception #{id}."),
    "recon.created": ("Rekonsiliasi #{id} selesai.", "Reconciliation #{id} done."),
    "recon.digest": ("Sidik laporan (SHA-256)", "Report digest (SHA-256)"),
    "recon.input": ("Sidik berkas (SHA-256)", "File digest (SHA-256)"),
    "recon.csv": ("Unduh laporan CSV", "Download the CSV report"),
    "recon.open_run": ("Lihat", "View"),
    "recon.no_file": ("Pilih berkas laporan.", "Choose a statement file."),
    "type.asset": ("aset", "asset"),
    "type.liability": ("kewajiban", "liability"),
    "type.income": ("pendapatan", "income"),
    "type.expense": ("beban", "expense"),
    "type.equity": ("ekuitas", "equity"),
    "action.note": ("catatan", "note"),
    "action.resolve": ("diselesaikan", "resolved"),
    "action.reopen": ("dibuka kembali", "reopened"),
    "class.matched": ("cocok", "matched"),
    "class.missing_at_provider": ("tidak ada di penyedia", "missing at provider"),
    "class.unknown_at_provider": ("tak dikenal buku besar", "unknown to the ledger"),
    "class.amount_mismatch": ("jumlah berbeda", "amount mismatch"),
    "class.duplicate": ("ganda", "duplicate"),
    "class.status_mismatch": ("status berbeda", "status mismatch"),
    # report
    "report.title": ("Laporan pilot", "Pilot report"),
    "report.intro": (
        "Apakah yang disepakati sampai ke dompet pekerja rumahan, seberapa cepat, dan dengan tarif berapa.",
        "Did what was agreed reach the homeworkers' wallets, how fast, and at what rates.",
    ),
    "report.agreed": ("Disepakati", "Agreed"),
    "report.received": ("Diterima di dompet", "Received in wallets"),
    "report.owed": ("Masih terutang", "Still owed"),
    "report.leakage": ("Kebocoran", "Leakage"),
    "report.leakage_help": ("1 − diterima ÷ disepakati", "1 − received ÷ agreed"),
    "report.median_wait": ("Median waktu sampai dibayar", "Median time to payment"),
    "report.p95_wait": ("Persentil ke-95", "95th percentile"),
    "report.benchmark_share": ("Potongan pada/di atas patokan upah", "Pieces at or above the wage benchmark"),
    "report.payouts": ("Pembayaran", "Payouts"),
    "report.payouts_over_time": ("Pembayaran berhasil per hari (Rp)", "Successful payouts per day (Rp)"),
    "report.leakage_by_region": ("Kebocoran per wilayah", "Leakage by region"),
    "report.wait_distribution": ("Sebaran waktu sampai dibayar", "Time-to-payment distribution"),
    "report.wait_help": (
        "Dari konfirmasi setoran sampai penyedia mengonfirmasi pembayaran berikutnya untuk pekerja itu.",
        "From a delivery's confirmation to the provider's confirmation of her next payout.",
    ),
    "report.compliance_by_region": (
        "Kepatuhan patokan upah per wilayah (bagian potongan)",
        "Wage-benchmark compliance by region (share of pieces)",
    ),
    "report.by_region": ("Per wilayah", "By region"),
    "report.region": ("Wilayah", "Region"),
    "report.disputes": ("Pengaduan dibuka / selesai", "Disputes opened / resolved"),
    "report.deliveries_paid": ("Setoran lunas", "Deliveries paid"),
    "report.no_data": ("Belum ada data.", "No data yet."),
    "report.csv": ("Unduh CSV", "Download CSV"),
    "report.table": ("Data grafik", "Chart data"),
    "wait.lt_1h": ("< 1 jam", "< 1 h"),
    "wait.1h_6h": ("1–6 jam", "1–6 h"),
    "wait.6h_24h": ("6–24 jam", "6–24 h"),
    "wait.1d_3d": ("1–3 hari", "1–3 d"),
    "wait.3d_7d": ("3–7 hari", "3–7 d"),
    "wait.gt_7d": ("> 7 hari", "> 7 d"),
    # statuses
    "status.created": ("dibuat", "created"),
    "status.awaiting_approval": ("menunggu persetujuan", "awaiting approval"),
    "status.dispatching": ("sedang dikirim", "sending"),
    "status.completed": ("selesai", "completed"),
    "status.rejected": ("ditolak", "rejected"),
    "status.submitted": ("terkirim ke penyedia", "submitted"),
    "status.unknown": ("belum pasti (dicek)", "unknown (checking)"),
    "status.succeeded": ("dibayar", "paid"),
    "status.failed": ("gagal", "failed"),
    "status.reversed": ("dibatalkan penyedia", "reversed"),
    "status.open": ("terbuka", "open"),
    "status.closed": ("ditutup", "closed"),
    "status.cancelled": ("dibatalkan", "cancelled"),
    "status.resolved": ("selesai", "resolved"),
    "status.awaiting_confirmation": ("menunggu konfirmasi", "awaiting confirmation"),
    "status.confirmed": ("dikonfirmasi", "confirmed"),
    # errors by code
    "error.validation_error": ("Isian tidak valid: {message}", "Invalid input: {message}"),
    "error.invalid_state": ("Tidak dapat dilakukan sekarang: {message}", "Not possible now: {message}"),
    "error.forbidden": ("Tidak diizinkan: {message}", "Not allowed: {message}"),
    "error.not_found": ("Tidak ditemukan.", "Not found."),
    "error.insufficient_funds": ("Dana tidak cukup.", "Insufficient funds."),
    "error.invalid_statement": (
        "Laporan tidak dapat dibaca: {message}",
        "Cannot read the statement: {message}",
    ),
    "error.other": ("Ditolak: {message}", "Refused: {message}"),
}


def language_of(value: str | None) -> Language:
    try:
        return Language(value or DEFAULT_LANGUAGE)
    except ValueError:
        return DEFAULT_LANGUAGE


def text(lang: Language, key: str, **values: object) -> str:
    """The entry in the reader's language, with ``{name}`` filled in; the key itself if unknown."""
    entry = CATALOGUE.get(key)
    if entry is None:
        return key
    template = entry[0] if lang is Language.ID else entry[1]
    return template.format(**values) if values else template


def label(lang: Language, prefix: str, value: str) -> str:
    """A status, class or kind in words, falling back to the raw value."""
    key = f"{prefix}.{value}"
    return text(lang, key) if key in CATALOGUE else value


def _group(digits: str, separator: str) -> str:
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return separator.join(parts)


def number(lang: Language, value: int | Decimal | str, *, keep_zeros: bool = False) -> str:
    """A whole or decimal number with the language's separators (never via float); trailing
    zeros of the fraction are dropped unless ``keep_zeros``."""
    try:
        exact = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    sign = "-" if exact < 0 else ""
    whole, _, fraction = format(abs(exact), "f").partition(".")
    thousands, point = (".", ",") if lang is Language.ID else (",", ".")
    if not keep_zeros:
        fraction = fraction.rstrip("0")
    return sign + _group(whole, thousands) + (point + fraction if fraction else "")


def rupiah(lang: Language, amount: int | Decimal | str | None) -> str:
    if amount is None:
        return "—"
    return f"Rp {number(lang, amount)}"


def percent(lang: Language, ratio: str | Decimal | None) -> str:
    """A ratio such as ``"0.0125"`` as ``1,25 %`` / ``1.25 %``."""
    if ratio is None:
        return "—"
    scaled = (Decimal(str(ratio)) * 100).quantize(Decimal("0.01"))
    return f"{number(lang, scaled, keep_zeros=True)} %"


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(WIB).strftime("%Y-%m-%d %H:%M")


def duration(lang: Language, seconds: int | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 3600:
        return f"{seconds // 60} {'menit' if lang is Language.ID else 'min'}"
    if seconds < 2 * 86400:
        hours = Decimal(seconds) / 3600
        return f"{number(lang, hours.quantize(Decimal('0.1')))} {'jam' if lang is Language.ID else 'h'}"
    days = Decimal(seconds) / 86400
    return f"{number(lang, days.quantize(Decimal('0.1')))} {'hari' if lang is Language.ID else 'd'}"
