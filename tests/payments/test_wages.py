"""Minimum wages: effective-dated lookups, the UMP fallback, and the hourly benchmark."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from payments import wages
from payments.errors import ValidationFailed
from payments.wages import (
    NoWageForDate,
    UnknownRegion,
    WageKind,
    hourly_minimum,
    is_known_region,
    minimum_wage,
    monthly_minimum,
    parse_table,
    regions,
)


def test_the_packaged_table_loads_every_row() -> None:
    assert len(wages.table().rows) == 18


def test_amounts_with_cents_are_kept_exactly() -> None:
    assert monthly_minimum("ID-YO-KOTA-YOGYAKARTA", date(2025, 6, 1)) == Decimal("2655041.81")


def test_the_latest_row_in_effect_on_the_date_applies() -> None:
    assert monthly_minimum("ID-JK", date(2025, 12, 31)) == Decimal(5396761)


def test_a_new_decree_applies_from_its_first_day() -> None:
    assert monthly_minimum("ID-JK", date(2026, 1, 1)) == Decimal(5729876)


def test_a_mid_year_revision_replaces_the_january_figure() -> None:
    assert monthly_minimum("ID-JI-KOTA-MALANG", date(2025, 11, 1)) == Decimal(3524238)


def test_before_a_mid_year_revision_the_january_figure_applies() -> None:
    assert monthly_minimum("ID-JI-KOTA-MALANG", date(2025, 10, 31)) == Decimal(3507693)


def test_a_regency_uses_its_own_umk_over_the_provincial_ump() -> None:
    assert monthly_minimum("ID-SU-KOTA-MEDAN", date(2026, 3, 1)) == Decimal(4335198)


def test_an_unlisted_regency_falls_back_to_its_provinces_ump() -> None:
    wage = minimum_wage("ID-SU-KAB-LANGKAT", date(2026, 3, 1))
    assert (wage.region_code, wage.kind, wage.monthly_minimum_idr) == (
        "ID-SU",
        WageKind.UMP,
        Decimal(3228917),
    )


def test_a_jakarta_city_falls_back_to_the_jakarta_ump() -> None:
    assert monthly_minimum("ID-JK-KOTA-JAKARTA-UTARA", date(2026, 3, 1)) == Decimal(5729876)


def test_a_listed_regency_without_a_umk_on_the_date_falls_back_to_the_ump() -> None:
    table = parse_table(
        "region_code,region_name,province,effective_from,monthly_minimum_idr,kind,source\n"
        "ID-SU,Sumatera Utara,Sumatera Utara,2025-01-01,3000000,UMP,test\n"
        "ID-SU-KAB-X,Kabupaten X,Sumatera Utara,2026-01-01,4000000,UMK,test\n"
    )
    wage = table.minimum_wage("ID-SU-KAB-X", date(2025, 6, 1))
    assert (wage.kind, wage.monthly_minimum_idr) == (WageKind.UMP, Decimal(3000000))


def test_a_listed_regency_uses_its_umk_once_it_takes_effect() -> None:
    table = parse_table(
        "region_code,region_name,province,effective_from,monthly_minimum_idr,kind,source\n"
        "ID-SU,Sumatera Utara,Sumatera Utara,2025-01-01,3000000,UMP,test\n"
        "ID-SU-KAB-X,Kabupaten X,Sumatera Utara,2026-01-01,4000000,UMK,test\n"
    )
    assert table.minimum_wage("ID-SU-KAB-X", date(2026, 6, 1)).kind is WageKind.UMK


def test_a_regency_with_no_umk_and_no_ump_on_the_date_has_no_wage() -> None:
    with pytest.raises(NoWageForDate) as caught:
        monthly_minimum("ID-SU-KAB-DELI-SERDANG", date(2025, 6, 1))
    assert caught.value.code == "no_wage_for_date"


def test_a_date_before_any_decree_has_no_wage() -> None:
    with pytest.raises(NoWageForDate):
        monthly_minimum("ID-JK", date(2024, 12, 31))


@pytest.mark.parametrize("code", ["ID-XX", "ID-ZZ-KOTA-NOWHERE", "id-jk", "", "ID-JT-KAB-X"])
def test_unknown_region_codes_are_refused(code: str) -> None:
    with pytest.raises(UnknownRegion) as caught:
        monthly_minimum(code, date(2026, 3, 1))
    assert caught.value.code == "unknown_region"


def test_unknown_region_is_a_validation_failure_for_the_api() -> None:
    assert issubclass(UnknownRegion, ValidationFailed)


def test_a_province_without_a_ump_row_does_not_make_its_regencies_known() -> None:
    assert not is_known_region("ID-JT-KAB-KLATEN")


@pytest.mark.parametrize("code", ["ID-JK", "ID-SU-KOTA-MEDAN", "ID-JI-KAB-MALANG", "ID-SU-KAB-LANGKAT"])
def test_listed_regions_and_regencies_under_a_ump_are_known(code: str) -> None:
    assert is_known_region(code)


def test_regions_lists_each_code_once_sorted() -> None:
    codes = [region.code for region in regions()]
    assert codes == sorted(set(codes))
    assert "ID-JI-KOTA-MALANG" in codes


def test_every_listed_region_is_known() -> None:
    assert all(is_known_region(region.code) for region in regions())


def test_the_decree_keeps_its_source_for_audit() -> None:
    wage = minimum_wage("ID-JI-KOTA-MALANG", date(2026, 2, 1))
    assert "Kepgub" in wage.source


def test_hourly_benchmark_is_monthly_divided_by_173() -> None:
    hourly = hourly_minimum("ID-JK", date(2026, 3, 1))
    assert hourly * 173 == pytest.approx(Decimal(5729876), abs=Decimal("0.000001"))
    assert hourly.quantize(Decimal("0.01")) == Decimal("33120.67")


def test_a_malformed_table_row_is_a_packaging_error_naming_its_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_table(
            "region_code,region_name,province,effective_from,monthly_minimum_idr,kind,source\n"
            "ID-JK,DKI Jakarta,DKI Jakarta,2026-01-01,lots,UMP,x\n"
        )


def test_a_non_positive_minimum_is_a_packaging_error() -> None:
    with pytest.raises(ValueError, match="positive"):
        parse_table(
            "region_code,region_name,province,effective_from,monthly_minimum_idr,kind,source\n"
            "ID-JK,DKI Jakarta,DKI Jakarta,2026-01-01,0,UMP,x\n"
        )
