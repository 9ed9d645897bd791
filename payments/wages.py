"""Indonesian minimum wages: the benchmark a piece rate is measured against.

Each province sets a monthly minimum (UMP, *upah minimum provinsi*) and most regencies
and cities set a higher one of their own (UMK, *upah minimum kabupaten/kota*), by
governor's decree, usually from 1 January and occasionally revised mid-year. The table
(``payments/data/minimum-wages-id.csv``, sources in its ``source`` column) is therefore
*effective-dated*: the minimum on a date is the latest row that took effect on or before
it. Some figures carry cents, so they are ``Decimal``, never float.

Where a regency or city has no UMK, the province's UMP applies (UMK is never below UMP).
So :func:`monthly_minimum` answers, in order: the region's own latest row effective on
the date; else its province's latest UMP effective on the date; else
:class:`NoWageForDate`. A regency code that is not listed but has the shape
``<province>-KAB-<NAME>`` or ``<province>-KOTA-<NAME>`` under a province with a UMP
(``ID-SU-KAB-LANGKAT``) is known and takes the UMP; any other code is
:class:`UnknownRegion`. Region codes follow ISO 3166-2:ID for the province (``ID-JK``,
``ID-JI``, ``ID-SU``, ``ID-YO``, ``ID-JT``).

Hourly benchmark: monthly ÷ 173, the divisor Indonesian regulation uses. Micro and small
enterprises are exempt from the minimum wage, so falling below it is a *benchmark*
finding, not proof of a breach.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cache
from importlib import resources

from payments.errors import ValidationFailed

HOURS_PER_MONTH = Decimal(173)
"""Monthly minimum ÷ 173 = hourly minimum (Indonesian regulation)."""

_REGENCY_CODE = re.compile(r"(ID-[A-Z]{2})-(?:KAB|KOTA)-[A-Z0-9]+(?:-[A-Z0-9]+)*")


class UnknownRegion(ValidationFailed):
    """A region code the minimum-wage table does not know."""

    code = "unknown_region"


class NoWageForDate(ValidationFailed):
    """A known region with no minimum wage in effect on the date asked."""

    code = "no_wage_for_date"


class WageKind(StrEnum):
    UMP = "ump"
    """Provincial minimum."""
    UMK = "umk"
    """Regency or city minimum."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MinimumWage:
    """One decree: a region's monthly minimum from a date, and where the figure came from."""

    region_code: str
    region_name: str
    province: str
    effective_from: date
    monthly_minimum_idr: Decimal
    kind: WageKind
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Region:
    """A wage region as a homeworker's registration can name it."""

    code: str
    name: str
    province: str
    kind: WageKind


def _parse_row(row: dict[str, str], line: int) -> MinimumWage:
    try:
        amount = Decimal(row["monthly_minimum_idr"])
        if not amount.is_finite() or amount <= 0:
            raise ValueError("monthly_minimum_idr must be positive")
        return MinimumWage(
            region_code=row["region_code"].strip(),
            region_name=row["region_name"].strip(),
            province=row["province"].strip(),
            effective_from=date.fromisoformat(row["effective_from"].strip()),
            monthly_minimum_idr=amount,
            kind=WageKind(row["kind"].strip().lower()),
            source=row["source"].strip(),
        )
    except (KeyError, ValueError, InvalidOperation) as exc:
        raise ValueError(f"minimum-wages-id.csv line {line}: {exc}") from exc


def parse_table(text: str) -> WageTable:
    """Parse the CSV strictly; a bad row is a packaging bug, reported with its line."""
    rows = [_parse_row(row, line) for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2)]
    return WageTable(rows=tuple(sorted(rows, key=lambda r: (r.region_code, r.effective_from))))


@dataclass(frozen=True, slots=True)
class WageTable:
    """An effective-dated minimum-wage table and the lookup rules over it."""

    rows: tuple[MinimumWage, ...]

    def _rows_for(self, code: str) -> list[MinimumWage]:
        return [row for row in self.rows if row.region_code == code]

    def _has_ump(self, province_code: str) -> bool:
        return any(row.kind is WageKind.UMP for row in self._rows_for(province_code))

    def regions(self) -> list[Region]:
        """The listed regions, for a registration form's choices (latest name wins)."""
        latest: dict[str, MinimumWage] = {}
        for row in self.rows:
            latest[row.region_code] = row
        return [
            Region(code=row.region_code, name=row.region_name, province=row.province, kind=row.kind)
            for row in sorted(latest.values(), key=lambda r: r.region_code)
        ]

    def is_known_region(self, code: str) -> bool:
        """True if a minimum wage can be looked up (listed, or a regency under a UMP)."""
        if self._rows_for(code):
            return True
        province = _province_code(code)
        return province is not None and self._has_ump(province)

    def minimum_wage(self, region_code: str, on: date) -> MinimumWage:
        """The decree that applies to a region on a date: own row, else the province's UMP."""
        if not self.is_known_region(region_code):
            raise UnknownRegion(f"unknown wage region {region_code!r}", region=region_code)
        own = _latest(self._rows_for(region_code), on)
        if own is not None:
            return own
        province = _province_code(region_code)
        if province is not None:
            umps = [row for row in self._rows_for(province) if row.kind is WageKind.UMP]
            ump = _latest(umps, on)
            if ump is not None:
                return ump
        raise NoWageForDate(
            f"no minimum wage in effect for {region_code} on {on.isoformat()}",
            region=region_code,
        )


def _province_code(code: str) -> str | None:
    match = _REGENCY_CODE.fullmatch(code)
    return match.group(1) if match else None


def _latest(rows: list[MinimumWage], on: date) -> MinimumWage | None:
    effective = [row for row in rows if row.effective_from <= on]
    return max(effective, key=lambda r: r.effective_from) if effective else None


@cache
def table() -> WageTable:
    """The packaged table, read once on first use (nothing happens at import)."""
    data = resources.files("payments").joinpath("data/minimum-wages-id.csv")
    return parse_table(data.read_text(encoding="utf-8"))


def regions() -> list[Region]:
    """The listed regions of the packaged table."""
    return table().regions()


def is_known_region(code: str) -> bool:
    """True if the packaged table can give a minimum wage for this region code."""
    return table().is_known_region(code)


def minimum_wage(region_code: str, on: date) -> MinimumWage:
    """The decree that applies to a region on a date, with its source, for display and audit."""
    return table().minimum_wage(region_code, on)


def monthly_minimum(region_code: str, on: date) -> Decimal:
    """The monthly minimum in rupiah (may carry cents) for a region on a date."""
    return minimum_wage(region_code, on).monthly_minimum_idr


def hourly_minimum(region_code: str, on: date) -> Decimal:
    """The hourly benchmark: monthly ÷ 173 (not rounded; quantize only for display)."""
    return monthly_minimum(region_code, on) / HOURS_PER_MONTH
