"""Piece rates: units, the one earning rule, holds, commission, the fair-rate benchmark."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.money import round_minor
from payments.errors import RateBelowMinimumWage, ValidationFailed
from payments.rates import (
    Commission,
    CommissionKind,
    FairRatePolicy,
    InvalidCommission,
    InvalidCount,
    InvalidMinutes,
    InvalidRate,
    RateBelowBenchmark,
    Unit,
    assess,
    cap_deductions,
    check_policy,
    commission_amount,
    cumulative_commission,
    cumulative_earning,
    delivery_amounts,
    earning,
    effective_hourly,
    fair_rate,
    order_hold_amount,
    parse_minutes,
    parse_rate,
    per_piece,
)
from payments.wages import UnknownRegion

MARCH_2026 = date(2026, 3, 1)

rates_st = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(100_000), places=4, allow_nan=False)
units_st = st.sampled_from(list(Unit))
commissions_st = st.one_of(
    st.none(),
    st.builds(Commission.per_piece, st.decimals(min_value=0, max_value=1000, places=2)),
    st.builds(Commission.percent, st.decimals(min_value=0, max_value=100, places=2)),
)


@st.composite
def splits(draw: st.DrawFn) -> tuple[int, list[int]]:
    """An order quantity and a split of up to that many accepted pieces into deliveries."""
    quantity = draw(st.integers(min_value=1, max_value=5000))
    accepted_total = draw(st.integers(min_value=0, max_value=quantity))
    cuts = sorted(draw(st.lists(st.integers(0, accepted_total), max_size=30)))
    bounds = [0, *cuts, accepted_total]
    return quantity, [b - a for a, b in itertools.pairwise(bounds)]


# Units


@pytest.mark.parametrize(
    ("unit", "pieces"),
    [(Unit.PIECE, 1), (Unit.PASANG, 1), (Unit.LUSIN, 12), (Unit.KODI, 20), (Unit.SLOP, 12)],
)
def test_each_unit_has_its_pieces_per_unit(unit: Unit, pieces: int) -> None:
    assert unit.pieces_per_unit == pieces


def test_unit_values_are_lower_case_names() -> None:
    assert [unit.value for unit in Unit] == ["piece", "pasang", "lusin", "kodi", "slop"]


def test_a_pair_is_one_unit_of_work() -> None:
    assert Unit.PASANG.to_pieces(40) == 40


def test_counts_quoted_in_kodi_convert_to_pieces_exactly() -> None:
    assert Unit.KODI.to_pieces(10) == 200


def test_rate_per_kodi_converts_to_pieces_exactly() -> None:
    assert per_piece(Decimal(10_000), Unit.KODI) == Decimal(500)


def test_rate_per_slop_keeps_the_fraction_of_a_rupiah() -> None:
    assert per_piece(Decimal(2000), Unit.SLOP) * 12 == pytest.approx(Decimal(2000))


def test_a_negative_count_cannot_be_converted() -> None:
    with pytest.raises(InvalidCount):
        Unit.LUSIN.to_pieces(-1)


# Parsing rates


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("1250", Decimal(1250)),
        ("12.5", Decimal("12.5")),
        ("0.0001", Decimal("0.0001")),
        ("99999999999.9999", Decimal("99999999999.9999")),
    ],
)
def test_a_decimal_string_parses_to_the_exact_rate(text: str, rate: Decimal) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "0.0",
        "-5",
        "+5",
        "1e3",
        "NaN",
        "Infinity",
        "12.",
        ".5",
        "12.34567",
        "123456789012",
        "1234567890123",
        " 12",
        "12 ",
        "1,5",
        "١٢",
    ],
)
def test_anything_but_a_positive_bounded_decimal_string_is_not_a_rate(text: str) -> None:
    with pytest.raises(InvalidRate) as caught:
        parse_rate(text)
    assert caught.value.code == "invalid_rate"


def test_an_invalid_rate_is_a_validation_failure_for_the_api() -> None:
    assert issubclass(InvalidRate, ValidationFailed)


def test_minutes_per_piece_parse_from_a_decimal_string() -> None:
    assert parse_minutes("2.5") == Decimal("2.5")


@pytest.mark.parametrize("text", ["0", "-1", "abc", "99999", "1.234"])
def test_implausible_minutes_per_piece_are_refused(text: str) -> None:
    with pytest.raises(InvalidMinutes):
        parse_minutes(text)


# The one earning rule


def test_earning_rounds_half_to_even_down() -> None:
    assert earning(1, rate=Decimal("12.5")) == 12


def test_earning_rounds_half_to_even_up() -> None:
    assert earning(3, rate=Decimal("12.5")) == 38


def test_earning_at_a_rate_per_slop_divides_once_at_the_end() -> None:
    assert earning(5, rate=Decimal(2000), unit=Unit.SLOP) == 833


def test_a_full_slop_earns_exactly_the_quoted_rate() -> None:
    assert earning(12, rate=Decimal(2000), unit=Unit.SLOP) == 2000


def test_earning_of_zero_pieces_is_zero() -> None:
    assert earning(0, rate=Decimal(1250)) == 0


def test_a_rate_given_as_int_is_refused_so_money_math_stays_decimal() -> None:
    with pytest.raises(InvalidRate):
        earning(1, rate=5)  # type: ignore[arg-type]


def test_a_negative_piece_count_is_refused() -> None:
    with pytest.raises(InvalidCount):
        earning(-1, rate=Decimal(1))


def test_a_boolean_piece_count_is_refused() -> None:
    with pytest.raises(InvalidCount):
        earning(True, rate=Decimal(1))


def test_ten_single_piece_deliveries_at_12_5_earn_exactly_125() -> None:
    parts = [cumulative_earning(before=n, accepted=1, rate=Decimal("12.5")) for n in range(10)]
    assert sum(parts) == 125


def test_a_delivery_earning_is_the_increment_of_the_rounded_cumulative_total() -> None:
    assert cumulative_earning(before=1, accepted=1, rate=Decimal("12.5")) == 13


@given(splits(), rates_st, units_st)
def test_any_split_into_deliveries_sums_exactly_to_the_whole(
    split: tuple[int, list[int]], rate: Decimal, unit: Unit
) -> None:
    _, deliveries = split
    before, total = 0, 0
    for accepted in deliveries:
        total += cumulative_earning(before=before, accepted=accepted, rate=rate, unit=unit)
        before += accepted
    assert total == earning(before, rate=rate, unit=unit)


@given(splits(), rates_st, units_st)
def test_no_delivery_earns_a_negative_amount(split: tuple[int, list[int]], rate: Decimal, unit: Unit) -> None:
    _, deliveries = split
    before = 0
    for accepted in deliveries:
        assert cumulative_earning(before=before, accepted=accepted, rate=rate, unit=unit) >= 0
        before += accepted


@given(splits(), rates_st, units_st, commissions_st)
def test_any_split_never_captures_more_than_the_orders_hold(
    split: tuple[int, list[int]], rate: Decimal, unit: Unit, commission: Commission | None
) -> None:
    quantity, deliveries = split
    hold = order_hold_amount(quantity=quantity, rate=rate, unit=unit, commission=commission)
    before, captured = 0, 0
    for accepted in deliveries:
        amounts = delivery_amounts(
            before=before, accepted=accepted, rate=rate, unit=unit, commission=commission
        )
        captured += amounts.total
        before += accepted
    assert captured <= hold


@given(st.integers(min_value=1, max_value=5000), rates_st, units_st, commissions_st)
def test_accepting_the_whole_quantity_captures_exactly_the_hold(
    quantity: int, rate: Decimal, unit: Unit, commission: Commission | None
) -> None:
    amounts = delivery_amounts(before=0, accepted=quantity, rate=rate, unit=unit, commission=commission)
    assert amounts.total == order_hold_amount(quantity=quantity, rate=rate, unit=unit, commission=commission)


@given(splits(), rates_st, commissions_st)
def test_commission_of_any_split_sums_to_the_commission_on_the_whole(
    split: tuple[int, list[int]], rate: Decimal, commission: Commission | None
) -> None:
    _, deliveries = split
    before, total = 0, 0
    for accepted in deliveries:
        total += cumulative_commission(commission, before=before, accepted=accepted, rate=rate)
        before += accepted
    whole = commission_amount(commission, pieces=before, earning=earning(before, rate=rate))
    assert total == whole


# Holds and commission


def test_the_hold_covers_earnings_and_commission_of_the_whole_order() -> None:
    hold = order_hold_amount(
        quantity=200, rate=Decimal(1000), unit=Unit.PASANG, commission=Commission.per_piece(Decimal(100))
    )
    assert hold == 200 * 1000 + 200 * 100


def test_the_hold_without_commission_is_the_rounded_earning_of_the_quantity() -> None:
    assert order_hold_amount(quantity=3, rate=Decimal("12.5")) == 38


def test_a_percentage_commission_is_a_share_of_the_earning_on_top() -> None:
    assert commission_amount(Commission.percent(Decimal(10)), pieces=50, earning=125_000) == 12_500


def test_a_percentage_commission_rounds_half_to_even() -> None:
    assert commission_amount(Commission.percent(Decimal(10)), pieces=1, earning=125) == 12


def test_a_per_piece_commission_is_rate_times_pieces() -> None:
    assert commission_amount(Commission.per_piece(Decimal(100)), pieces=37, earning=0) == 3700


def test_no_commission_is_zero() -> None:
    assert commission_amount(None, pieces=10, earning=10_000) == 0


def test_commission_never_reduces_the_homeworkers_earning() -> None:
    amounts = delivery_amounts(
        before=0, accepted=10, rate=Decimal(1000), commission=Commission.percent(Decimal(10))
    )
    assert (amounts.earning, amounts.commission) == (10_000, 1000)


def test_a_percentage_over_100_is_not_a_commission() -> None:
    with pytest.raises(InvalidCommission) as caught:
        Commission.percent(Decimal(101))
    assert caught.value.code == "invalid_commission"


def test_a_negative_commission_is_refused() -> None:
    with pytest.raises(InvalidCommission):
        Commission.per_piece(Decimal(-1))


def test_commission_kinds_are_lower_case() -> None:
    assert [kind.value for kind in CommissionKind] == ["per_piece", "percent"]


# Deductions


def test_deductions_take_at_most_half_of_a_payment() -> None:
    assert cap_deductions(payment=100_000, requested=150_000) == 50_000


def test_a_smaller_deduction_is_taken_whole() -> None:
    assert cap_deductions(payment=100_000, requested=20_000) == 20_000


def test_half_of_an_odd_payment_is_floored_in_the_workers_favour() -> None:
    assert cap_deductions(payment=100_001, requested=100_001) == 50_000


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_the_worker_always_keeps_at_least_half_of_a_payment(payment: int, requested: int) -> None:
    taken = cap_deductions(payment=payment, requested=requested)
    assert 0 <= taken <= requested
    assert 2 * (payment - taken) >= payment


def test_a_negative_deduction_request_is_refused() -> None:
    with pytest.raises(InvalidCount):
        cap_deductions(payment=100, requested=-1)


# Fair-rate benchmark


def test_effective_hourly_is_rate_times_60_over_minutes() -> None:
    assert effective_hourly(rate=Decimal(1000), minutes_per_piece=6) == Decimal(10_000)


def test_effective_hourly_of_a_rate_per_slop_counts_each_piece() -> None:
    hourly = effective_hourly(rate=Decimal(2000), minutes_per_piece=3, unit=Unit.SLOP)
    assert hourly.quantize(Decimal("0.01")) == Decimal("3333.33")


def test_zero_minutes_per_piece_is_refused() -> None:
    with pytest.raises(InvalidMinutes):
        effective_hourly(rate=Decimal(1000), minutes_per_piece=0)


def test_fair_rate_is_the_hourly_minimum_times_minutes_over_60_rounded_up() -> None:
    assert fair_rate(region="ID-JK", on=MARCH_2026, minutes_per_piece=6) == Decimal("3312.07")


def test_fair_rate_per_kodi_is_twenty_pieces_worth() -> None:
    per_kodi = fair_rate(region="ID-JK", on=MARCH_2026, minutes_per_piece=6, unit=Unit.KODI)
    assert per_kodi == Decimal("66241.35")


def test_fair_rate_for_an_unknown_region_is_refused() -> None:
    with pytest.raises(UnknownRegion):
        fair_rate(region="ID-XX", on=MARCH_2026, minutes_per_piece=6)


def test_a_typical_sandal_rate_falls_below_the_jakarta_benchmark() -> None:
    finding = assess(rate=Decimal(1000), minutes_per_piece=6, region="ID-JK", on=MARCH_2026)
    assert not finding.meets_benchmark
    assert finding.shortfall_ratio == Decimal("0.6981")


def test_a_finding_reports_display_figures_to_two_places() -> None:
    finding = assess(rate=Decimal(1000), minutes_per_piece=6, region="ID-JK", on=MARCH_2026)
    assert (finding.effective_hourly, finding.benchmark_hourly, finding.fair_rate_per_piece) == (
        Decimal("10000.00"),
        Decimal("33120.67"),
        Decimal("3312.07"),
    )


def test_a_finding_names_the_decree_it_used() -> None:
    finding = assess(rate=Decimal(1000), minutes_per_piece=6, region="ID-JK", on=MARCH_2026)
    assert finding.benchmark.region_code == "ID-JK"


def test_a_rate_exactly_at_the_benchmark_meets_it() -> None:
    # Sukoharjo 2026: Rp2,500,000 a month; 519 minutes a piece = 3 × 173.
    finding = assess(
        rate=Decimal(125_000), minutes_per_piece=519, region="ID-JT-KAB-SUKOHARJO", on=MARCH_2026
    )
    assert finding.meets_benchmark
    assert finding.shortfall_ratio == 0


def test_a_rate_a_ten_thousandth_below_the_benchmark_does_not_meet_it() -> None:
    finding = assess(
        rate=Decimal("124999.9999"),
        minutes_per_piece=519,
        region="ID-JT-KAB-SUKOHARJO",
        on=MARCH_2026,
    )
    assert not finding.meets_benchmark


@given(
    st.decimals(min_value=Decimal("0.1"), max_value=Decimal(600), places=1),
    units_st,
    st.sampled_from(["ID-JK", "ID-JI-KOTA-MALANG", "ID-SU-KOTA-MEDAN", "ID-YO-KOTA-YOGYAKARTA"]),
)
def test_paying_the_fair_rate_always_meets_the_benchmark(minutes: Decimal, unit: Unit, region: str) -> None:
    rate = fair_rate(region=region, on=MARCH_2026, minutes_per_piece=minutes, unit=unit)
    finding = assess(rate=rate, minutes_per_piece=minutes, region=region, on=MARCH_2026, unit=unit)
    assert finding.meets_benchmark


@given(
    st.decimals(min_value=Decimal("0.1"), max_value=Decimal(600), places=1),
    units_st,
)
def test_a_cent_below_the_fair_rate_does_not_meet_the_benchmark(minutes: Decimal, unit: Unit) -> None:
    rate = fair_rate(region="ID-JK", on=MARCH_2026, minutes_per_piece=minutes, unit=unit)
    below = rate - Decimal("0.01")
    finding = assess(rate=below, minutes_per_piece=minutes, region="ID-JK", on=MARCH_2026, unit=unit)
    assert not finding.meets_benchmark


def test_block_policy_refuses_a_rate_below_the_benchmark() -> None:
    finding = assess(rate=Decimal(1000), minutes_per_piece=6, region="ID-JK", on=MARCH_2026)
    with pytest.raises(RateBelowBenchmark) as caught:
        check_policy(finding, policy=FairRatePolicy.BLOCK)
    assert caught.value.code == "rate_below_minimum_wage"
    assert caught.value.details["fair_rate"] == "3312.07"


def test_a_refused_rate_is_the_apis_rate_below_minimum_wage_error() -> None:
    assert issubclass(RateBelowBenchmark, RateBelowMinimumWage)


@pytest.mark.parametrize("policy", [FairRatePolicy.WARN, FairRatePolicy.OFF])
def test_warn_and_off_policies_let_a_low_rate_through(policy: FairRatePolicy) -> None:
    finding = assess(rate=Decimal(1000), minutes_per_piece=6, region="ID-JK", on=MARCH_2026)
    check_policy(finding, policy=policy)


def test_block_policy_lets_a_fair_rate_through() -> None:
    finding = assess(rate=Decimal(4000), minutes_per_piece=6, region="ID-JK", on=MARCH_2026)
    check_policy(finding, policy=FairRatePolicy.BLOCK)


def test_round_minor_is_the_rounding_used_for_earnings() -> None:
    rate = Decimal("0.5")
    assert [earning(n, rate=rate) for n in range(1, 6)] == [round_minor(rate * n) for n in range(1, 6)]


def test_a_rate_with_absurd_precision_is_refused_before_any_arithmetic() -> None:
    with pytest.raises(InvalidRate):
        earning(1, rate=Decimal("1." + "1" * 40))
