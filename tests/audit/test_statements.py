"""Provider statements are read strictly: a bad file is refused naming its line, never half-read."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments.reconciliation import (
    InvalidStatement,
    ProviderStatus,
    StatementFormat,
    parse_statement,
)
from tests.audit.statements import (
    SANDBOX_HEADER,
    XENDIT_HEADER,
    sandbox_csv,
    sandbox_row,
    to_csv,
    xendit_csv,
    xendit_row,
)


def refused(text: str | bytes, provider: str = "sandbox") -> InvalidStatement:
    with pytest.raises(InvalidStatement) as caught:
        parse_statement(text, provider=provider)
    assert caught.value.code == "invalid_statement"
    return caught.value


def test_a_sandbox_statement_is_read_line_by_line_with_our_reference_and_key() -> None:
    text = sandbox_csv(
        [sandbox_row("UPH1", "key-1", 125_000), sandbox_row("UPH2", "key-2", 5_000, status="reversed")]
    )
    statement = parse_statement(text, provider="sandbox")
    assert statement.format is StatementFormat.SANDBOX
    assert statement.sha256 == hashlib.sha256(text.encode()).hexdigest()
    first, second = statement.lines
    assert (first.line, first.reference, first.idempotency_key, first.provider_reference) == (
        2,
        "UPH1",
        "key-1",
        None,
    )
    assert (first.amount, first.currency, first.status) == (125_000, "IDR", ProviderStatus.SUCCEEDED)
    assert first.at == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert (second.line, second.status) == (3, ProviderStatus.REVERSED)
    assert isinstance(first.amount, int)


def test_a_xendit_report_carries_our_key_as_reference_and_its_own_id() -> None:
    text = xendit_csv(
        [
            xendit_row("upah-payout-abc", 70_000, product_id="disb-9"),
            xendit_row("inv-1", 10_000, kind="PAYMENT"),
            xendit_row("upah-payout-def", "-30000", product_id="disb-10", status="FAILED"),
        ]
    )
    statement = parse_statement(text, provider="xendit")
    assert statement.format is StatementFormat.XENDIT
    assert statement.skipped == 1
    first, second = statement.lines
    assert (first.idempotency_key, first.provider_reference, first.account) == (
        "upah-payout-abc",
        "disb-9",
        "082000000001",
    )
    assert (second.amount, second.status, second.line) == (30_000, ProviderStatus.FAILED, 4)


def test_an_excel_byte_order_mark_and_crlf_line_ends_are_accepted() -> None:
    text = "\ufeff" + sandbox_csv([sandbox_row("UPH1", "k1", 10)]).replace("\n", "\r\n")
    assert parse_statement(text, provider="sandbox").lines[0].amount == 10


def test_a_decimal_amount_is_refused_naming_its_line() -> None:
    text = sandbox_csv([sandbox_row("UPH1", "k1", 10), sandbox_row("UPH2", "k2", "12500.50")])
    error = refused(text)
    assert error.line == 3
    assert "line 3" in error.message and "whole number" in error.message


@pytest.mark.parametrize("amount", ["12,500.00", "1e5", "12.0"])
def test_every_decimal_spelling_is_refused(amount: str) -> None:
    assert refused(sandbox_csv([sandbox_row("UPH1", "k1", amount)])).line == 2


@pytest.mark.parametrize("amount", ["abc", "", "0", "-5", "12 500", "١٢٣"])
def test_non_numeric_zero_and_negative_amounts_are_refused(amount: str) -> None:
    error = refused(sandbox_csv([sandbox_row("UPH1", "k1", 5), sandbox_row("UPH2", "k2", amount)]))
    assert error.line == 3
    assert error.details["column"] == "amount"


def test_wrong_columns_are_refused_on_line_one() -> None:
    text = to_csv(("reference", "amount", "status"), [["UPH1", "5", "succeeded"]])
    error = refused(text)
    assert error.line == 1
    assert "idempotency_key" in error.message


def test_a_duplicated_header_is_refused_naming_its_line() -> None:
    first = sandbox_csv([sandbox_row("UPH1", "k1", 5)])
    second = sandbox_csv([sandbox_row("UPH2", "k2", 6)])
    error = refused(first + second)
    assert error.line == 3
    assert "header" in error.message


def test_a_row_with_a_missing_field_is_refused() -> None:
    text = sandbox_csv([sandbox_row("UPH1", "k1", 5)]) + "UPH2,k2,+6282000000001,6,IDR,succeeded\n"
    assert refused(text).line == 3


def test_an_unknown_status_is_refused() -> None:
    error = refused(sandbox_csv([sandbox_row("UPH1", "k1", 5, status="paid-ish")]))
    assert (error.line, error.details["column"]) == (2, "status")


def test_a_bad_time_is_refused() -> None:
    text = sandbox_csv([["UPH1", "k1", "+6282000000001", 5, "IDR", "succeeded", "yesterday"]])
    assert refused(text).line == 2


def test_a_bad_currency_is_refused() -> None:
    assert refused(sandbox_csv([sandbox_row("UPH1", "k1", 5, currency="rupiah")])).line == 2


def test_another_providers_file_is_refused_as_such() -> None:
    error = refused(xendit_csv([xendit_row("k1", 5)]), provider="sandbox")
    assert error.line == 1
    assert "xendit" in error.message
    error = refused(sandbox_csv([sandbox_row("UPH1", "k1", 5)]), provider="xendit")
    assert "sandbox" in error.message


def test_an_unknown_provider_is_refused() -> None:
    error = refused(sandbox_csv([]), provider="mpesa")
    assert error.details["field"] == "provider"


def test_ten_megabytes_of_junk_is_refused_at_its_first_line() -> None:
    junk = os.urandom(10 * 1024 * 1024)
    error = refused(junk)
    assert error.line is not None and error.line >= 1


def test_printable_junk_is_refused_on_line_one() -> None:
    junk = ("lorem ipsum dolor sit amet " * 40 + "\n") * 10_000
    assert refused(junk).line == 1


def test_binary_data_is_refused_naming_its_line() -> None:
    text = sandbox_csv([sandbox_row("UPH1", "k1", 5)]) + "UPH2,k2\x00,x\n"
    assert refused(text).line == 3


def test_an_empty_statement_is_refused() -> None:
    assert "empty" in refused("").message
    assert "empty" in refused("\n\n").message


def test_a_header_only_statement_is_an_empty_list_of_lines() -> None:
    assert parse_statement(sandbox_csv([]), provider="sandbox").lines == ()


def test_a_statement_too_large_is_refused_before_reading() -> None:
    from payments import reconciliation

    big = b"x" * (reconciliation.MAX_STATEMENT_BYTES + 1)
    assert "bytes" in refused(big).message


def test_an_unterminated_quote_is_refused() -> None:
    text = sandbox_csv([sandbox_row("UPH1", "k1", 5)]) + '"UPH2,k2,+62,5,IDR,succeeded,\n'
    assert refused(text).line is not None


def test_xendit_requires_its_identifying_columns() -> None:
    header = tuple(h for h in XENDIT_HEADER if h != "Product ID")
    text = to_csv(header, [])
    error = refused(text, provider="xendit")
    assert error.line == 1 and "product id" in error.message


def test_the_sandbox_header_is_exact() -> None:
    text = to_csv((*SANDBOX_HEADER, "extra"), [])
    assert refused(text).line == 1


_ident_text = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-_ ", min_size=0, max_size=30)


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            _ident_text,
            _ident_text,
            st.sampled_from(["+6282000000001", "082000000002", "", " +6281234567890 "]),
            st.integers(min_value=1, max_value=10**17),
            st.sampled_from(["IDR", "USD", "IDR "]),
            st.sampled_from(["succeeded", "failed", "reversed", "accepted", "pending", " Succeeded"]),
            st.sampled_from(["2026-11-20T08:00:00Z", "2026-11-20T15:00:00+07:00", "2026-11-20 08:00:00", ""]),
        ),
        max_size=30,
    )
)
def test_the_fast_path_reads_exactly_what_the_line_by_line_parser_reads(
    rows: list[tuple[object, ...]],
) -> None:
    from payments.reconciliation import _sandbox_row

    text = sandbox_csv([list(r) for r in rows])
    expected = tuple(_sandbox_row([str(v) for v in r], n) for n, r in enumerate(rows, start=2))
    assert parse_statement(text, provider="sandbox").lines == expected


@pytest.mark.parametrize(
    "ending",
    [pytest.param("\r\n", id="windows"), pytest.param("\n", id="unix")],
)
def test_a_statement_reads_the_same_whatever_its_line_endings_and_last_newline(ending: str) -> None:
    rows = [
        ["UPAH-1", "key-1", "+6282000000001", 25000, "IDR", "succeeded", "2026-11-20T08:00:00Z"],
        ["", "", "082000000002", 1000, "IDR", "failed", "2026-11-20T09:00:00+07:00"],
    ]
    text = sandbox_csv(rows)
    expected = parse_statement(text, provider="sandbox").lines
    reread = ending.join(text.splitlines())
    assert parse_statement(reread, provider="sandbox").lines == expected
    assert parse_statement(reread + ending, provider="sandbox").lines == expected
