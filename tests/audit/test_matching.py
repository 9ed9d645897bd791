"""Matching a statement to the ledger's payouts, on in-memory records: every class, deterministically."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from payments.reconciliation import (
    Finding,
    LedgerPayout,
    ReconClass,
    StatementLine,
    match,
    parse_statement,
)
from tests.audit.statements import WHEN, sandbox_csv, sandbox_row, xendit_csv, xendit_row

WALLETS = {n: f"+62820000000{n:02d}" for n in range(100)}


def payout(
    n: int,
    amount: int = 100_000,
    status: str = "succeeded",
    *,
    at: datetime = WHEN,
    buyer: int = 1,
    provider_reference: str | None = None,
) -> LedgerPayout:
    return LedgerPayout(n, buyer, f"UPH{n:04d}", f"key-{n}", provider_reference, amount, "IDR", status, at)


def wallets(found: list[LedgerPayout]) -> dict[int, str | None]:
    return {p.id: WALLETS[p.id] for p in found}


def lines(*rows: list[object]) -> tuple[StatementLine, ...]:
    return parse_statement(sandbox_csv(rows), provider="sandbox").lines


def classes(findings: list[Finding]) -> Counter[str]:
    return Counter(f.kind.value for f in findings)


def test_every_exception_class_at_once() -> None:
    ledger = [
        payout(1),  # matched by reference
        payout(2),  # the statement says reversed: status_mismatch
        payout(3, amount=50_000),  # the statement says 55,000: amount_mismatch
        payout(4),  # two lines: duplicate
        payout(5),  # not on the statement: missing_at_provider
        payout(6, status="failed"),  # failed on both sides: matched
    ]
    statement = lines(
        sandbox_row("UPH0001", "key-1", 100_000, account=WALLETS[1]),
        sandbox_row("UPH0002", "key-2", 100_000, account=WALLETS[2], status="reversed"),
        sandbox_row("UPH0003", "key-3", 55_000, account=WALLETS[3]),
        sandbox_row("UPH0004", "key-4", 100_000, account=WALLETS[4]),
        sandbox_row("UPH0004", "key-4", 100_000, account=WALLETS[4]),
        sandbox_row("UPH9999", "key-x", 77_000, account=WALLETS[9]),  # unknown_at_provider
        sandbox_row("UPH0006", "key-6", 100_000, account=WALLETS[6], status="failed"),
    )
    findings = match(statement, ledger, wallets=wallets)
    assert classes(findings) == {
        "matched": 3,
        "status_mismatch": 1,
        "amount_mismatch": 1,
        "duplicate": 1,
        "unknown_at_provider": 1,
        "missing_at_provider": 1,
    }
    by_line = {f.line.line: f for f in findings if f.line}
    assert by_line[3].kind is ReconClass.STATUS_MISMATCH and by_line[3].payout == ledger[1]
    assert by_line[4].kind is ReconClass.AMOUNT_MISMATCH
    assert (by_line[5].kind, by_line[6].kind) == (ReconClass.MATCHED, ReconClass.DUPLICATE)
    assert by_line[7].kind is ReconClass.UNKNOWN_AT_PROVIDER and by_line[7].payout is None
    [missing] = [f for f in findings if f.kind is ReconClass.MISSING_AT_PROVIDER]
    assert missing.payout == ledger[4] and missing.line is None


def test_the_same_input_gives_the_same_findings_in_the_same_order() -> None:
    ledger = [payout(n) for n in range(1, 30)]
    statement = lines(*[sandbox_row(f"UPH{n:04d}", f"key-{n}", 100_000) for n in range(30, 0, -2)])
    assert match(statement, ledger) == match(statement, list(reversed(ledger)))


def test_the_idempotency_key_alone_is_enough() -> None:
    findings = match(lines(sandbox_row("", "key-1", 100_000)), [payout(1)])
    assert [(f.kind, f.matched_by) for f in findings] == [(ReconClass.MATCHED, "idempotency_key")]


def test_the_providers_own_id_matches_first() -> None:
    statement = parse_statement(
        xendit_csv([xendit_row("something-else", 100_000, product_id="disb-7")]), provider="xendit"
    ).lines
    findings = match(statement, [payout(1, provider_reference="disb-7")])
    assert [(f.kind, f.matched_by) for f in findings] == [(ReconClass.MATCHED, "provider_reference")]


def test_a_xendit_reference_is_our_idempotency_key() -> None:
    statement = parse_statement(
        xendit_csv([xendit_row("key-1", 100_000, product_id="disb-new")]), provider="xendit"
    ).lines
    [finding] = match(statement, [payout(1)])
    assert (finding.kind, finding.matched_by) == (ReconClass.MATCHED, "idempotency_key")


def test_a_line_without_identifiers_matches_by_amount_wallet_and_date() -> None:
    statement = lines(sandbox_row("", "", 100_000, account="082000000002", at=WHEN + timedelta(hours=5)))
    findings = match(statement, [payout(1), payout(2), payout(3, amount=90_000)], wallets=wallets)
    matched = [f for f in findings if f.kind is ReconClass.MATCHED]
    assert [(f.payout.id if f.payout else None, f.matched_by) for f in matched] == [(2, "amount_wallet_date")]


def test_an_unknown_payout_id_from_the_provider_still_matches_by_wallet() -> None:
    """The timeout case: we never learnt the provider's id; the line has it, and no key."""
    statement = parse_statement(
        xendit_csv([xendit_row("", 100_000, product_id="disb-late", account="082000000001")]),
        provider="xendit",
    ).lines
    [finding] = match(statement, [payout(1, status="unknown")], wallets=wallets)
    assert (finding.kind, finding.matched_by) == (ReconClass.STATUS_MISMATCH, "amount_wallet_date")


def test_a_line_naming_another_instruction_is_never_matched_by_amount() -> None:
    """A second payment to the same wallet under another key is a double payment, not a match."""
    statement = lines(
        sandbox_row("UPH0001", "key-1", 100_000, account=WALLETS[1]),
        sandbox_row("UPH7777", "key-7777", 100_000, account=WALLETS[2]),
    )
    findings = match(statement, [payout(1), payout(2)], wallets=wallets)
    assert classes(findings) == {"matched": 1, "unknown_at_provider": 1, "missing_at_provider": 1}


def test_outside_the_window_nothing_matches_by_amount() -> None:
    statement = lines(sandbox_row("", "", 100_000, account=WALLETS[1], at=WHEN + timedelta(days=4)))
    findings = match(statement, [payout(1)], wallets=wallets, window=timedelta(days=3))
    assert classes(findings) == {"unknown_at_provider": 1, "missing_at_provider": 1}


def test_a_different_wallet_does_not_match() -> None:
    statement = lines(sandbox_row("", "", 100_000, account=WALLETS[5]))
    assert classes(match(statement, [payout(1)], wallets=wallets))["matched"] == 0


def test_without_wallets_nothing_matches_by_amount() -> None:
    statement = lines(sandbox_row("", "", 100_000, account=WALLETS[1]))
    assert classes(match(statement, [payout(1)]))["matched"] == 0


def test_only_payouts_in_the_period_are_missing() -> None:
    early, late = payout(1, at=WHEN - timedelta(days=40)), payout(2, at=WHEN)
    findings = match((), [early, late], period=(WHEN - timedelta(days=1), WHEN + timedelta(days=1)))
    assert [(f.kind, f.payout.id if f.payout else 0) for f in findings] == [
        (ReconClass.MISSING_AT_PROVIDER, 2)
    ]


def test_payouts_never_paid_are_not_missing() -> None:
    ledger = [payout(1, status=s) for s in ("created", "submitted", "unknown", "failed")]
    ledger = [p._replace(id=i, reference=f"R{i}", idempotency_key=f"K{i}") for i, p in enumerate(ledger)]
    assert match((), ledger) == []


def test_a_reversed_payout_absent_from_the_statement_is_missing() -> None:
    assert classes(match((), [payout(1, status="reversed")])) == {"missing_at_provider": 1}


def test_pending_at_the_provider_and_unknown_here_is_consistent() -> None:
    findings = match(
        lines(sandbox_row("UPH0001", "key-1", 100_000, status="accepted")), [payout(1, status="unknown")]
    )
    assert classes(findings) == {"matched": 1}


def test_succeeded_at_the_provider_while_failed_here_is_a_status_mismatch() -> None:
    """We gave her the money back; the provider says it paid her: an auditor must look."""
    findings = match(lines(sandbox_row("UPH0001", "key-1", 100_000)), [payout(1, status="failed")])
    assert classes(findings) == {"status_mismatch": 1}


def test_of_duplicate_lines_the_one_that_agrees_is_the_match() -> None:
    statement = lines(
        sandbox_row("UPH0001", "key-1", 100_000, status="failed"),
        sandbox_row("UPH0001", "key-1", 100_000),
    )
    findings = match(statement, [payout(1)])
    assert [(f.line.line if f.line else 0, f.kind) for f in findings] == [
        (2, ReconClass.DUPLICATE),
        (3, ReconClass.MATCHED),
    ]


def test_a_currency_difference_is_an_amount_mismatch() -> None:
    statement = lines(sandbox_row("UPH0001", "key-1", 100_000, currency="USD"))
    assert classes(match(statement, [payout(1)])) == {"amount_mismatch": 1}


@settings(max_examples=60, deadline=None)
@given(
    amounts=st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=25),
    drops=st.sets(st.integers(min_value=0, max_value=24)),
    dupes=st.sets(st.integers(min_value=0, max_value=24)),
    extra=st.integers(min_value=0, max_value=5),
)
def test_every_line_and_every_paid_payout_is_classified_exactly_once(
    amounts: list[int], drops: set[int], dupes: set[int], extra: int
) -> None:
    ledger = [payout(i + 1, amount=a) for i, a in enumerate(amounts)]
    rows = []
    for i, p in enumerate(ledger):
        if i in drops:
            continue
        rows.append(sandbox_row(p.reference, p.idempotency_key, p.amount))
        if i in dupes:
            rows.append(sandbox_row(p.reference, p.idempotency_key, p.amount))
    rows += [sandbox_row(f"X{n}", f"XK{n}", 5) for n in range(extra)]
    statement = lines(*rows)
    findings = match(statement, ledger)
    with_line = [f.line.line for f in findings if f.line]
    assert sorted(with_line) == [line.line for line in statement]
    counts = classes(findings)
    kept = [i for i in range(len(ledger)) if i not in drops]
    assert counts["matched"] == len(kept)
    assert counts["missing_at_provider"] == len(ledger) - len(kept)
    assert counts["duplicate"] == len([i for i in kept if i in dupes])
    assert counts["unknown_at_provider"] == extra


def _by_the_book(lines: tuple[StatementLine, ...], ledger: list[LedgerPayout]) -> dict[int, str]:
    """The matching rules written the slow, obvious way: line number → class (identifiers only)."""
    consistent = {
        "succeeded": {"succeeded"},
        "failed": {"failed"},
        "reversed": {"reversed"},
        "submitted": {"pending"},
        "unknown": {"pending"},
        "created": set(),
    }

    def find(line: StatementLine) -> LedgerPayout | None:
        for p in ledger:
            if line.provider_reference and p.provider_reference == line.provider_reference:
                return p
        for ours in (line.reference, line.idempotency_key):
            for p in ledger:
                if ours and ours in (p.reference, p.idempotency_key):
                    return p
        return None

    def agrees(p: LedgerPayout, line: StatementLine) -> bool:
        return p.amount == line.amount and line.status.value in consistent[p.status]

    hits: dict[int, list[StatementLine]] = {}
    verdict: dict[int, str] = {}
    for line in lines:
        p = find(line)
        if p is None:
            verdict[line.line] = "unknown_at_provider"
        else:
            hits.setdefault(p.id, []).append(line)
    for pid, found in hits.items():
        p = next(x for x in ledger if x.id == pid)
        primary = next((line for line in found if agrees(p, line)), found[0])
        for line in found:
            if line is not primary:
                verdict[line.line] = "duplicate"
            elif p.amount != line.amount:
                verdict[line.line] = "amount_mismatch"
            elif not agrees(p, line):
                verdict[line.line] = "status_mismatch"
            else:
                verdict[line.line] = "matched"
    return verdict


@settings(max_examples=120, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=7),  # which payout the line names (7: none of ours)
            st.sampled_from(["reference", "key", "key-in-reference-column", "provider"]),
            st.sampled_from([0, 0, 0, 1]),  # amount off by this
            st.sampled_from(["succeeded", "succeeded", "failed", "reversed", "accepted"]),
        ),
        max_size=20,
    ),
    statuses=st.lists(
        st.sampled_from(["succeeded", "failed", "reversed", "unknown", "submitted"]), min_size=7, max_size=7
    ),
)
def test_the_fast_matcher_agrees_with_the_rules_written_out(
    data: list[tuple[int, str, int, str]], statuses: list[str]
) -> None:
    ledger = [
        payout(n + 1, amount=1_000 * (n + 1), status=statuses[n], provider_reference=f"disb-{n + 1}")
        for n in range(7)
    ]
    rows = []
    for which, how, off, status in data:
        n = which + 1
        amount = 1_000 * n + off
        if how == "reference":
            rows.append(sandbox_row(f"UPH{n:04d}", "", amount, status=status))
        elif how == "key":
            rows.append(sandbox_row("", f"key-{n}", amount, status=status))
        elif how == "key-in-reference-column":
            rows.append(sandbox_row(f"key-{n}", "", amount, status=status))
        else:
            rows.append(sandbox_row("", "", amount, status=status))
    statement = lines(*rows)
    if any(how == "provider" for _w, how, _o, _s in data):
        statement = tuple(
            line._replace(provider_reference=f"disb-{data[i][0] + 1}") if data[i][1] == "provider" else line
            for i, line in enumerate(statement)
        )
    found = {f.line.line: f.kind.value for f in match(statement, ledger) if f.line is not None}
    assert found == _by_the_book(statement, ledger)
