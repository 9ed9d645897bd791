"""Builders for provider statements, in the providers' own formats."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

SANDBOX_HEADER = ("reference", "idempotency_key", "account", "amount", "currency", "status", "settled_at")
XENDIT_HEADER = (
    "Product ID",
    "Type",
    "Status",
    "Channel Name",
    "Account Number",
    "Reference",
    "Currency",
    "Amount",
    "Total Fee",
    "Net Amount",
    "Created Date ISO",
    "Updated Date ISO",
)
WHEN = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def to_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def sandbox_row(
    reference: str,
    key: str,
    amount: int | str,
    *,
    account: str = "+6282000000001",
    status: str = "succeeded",
    at: datetime = WHEN,
    currency: str = "IDR",
) -> list[object]:
    return [reference, key, account, amount, currency, status, at.isoformat().replace("+00:00", "Z")]


def sandbox_csv(rows: Iterable[Sequence[object]]) -> str:
    return to_csv(SANDBOX_HEADER, rows)


def xendit_row(
    reference_id: str,
    amount: int | str,
    *,
    product_id: str = "disb-1",
    account: str = "082000000001",
    status: str = "SUCCESS",
    kind: str = "DISBURSEMENT",
    at: datetime = WHEN,
) -> list[object]:
    iso = at.isoformat().replace("+00:00", "Z")
    return [product_id, kind, status, "DANA", account, reference_id, "IDR", amount, 0, amount, iso, iso]


def xendit_csv(rows: Iterable[Sequence[object]]) -> str:
    return to_csv(XENDIT_HEADER, rows)
