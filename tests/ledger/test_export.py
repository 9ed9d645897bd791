"""The Beancount export passes the real bean-check, and fails it when a posting is altered."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountType, EntryDraft, Posting, atomic, export, journal, sealing
from ledger.tables import AccountRow, EntryRow, PostingRow
from tests.factories import make_account
from upah.db import make_engine, make_session_factory

BEAN_CHECK = Path(sys.executable).parent / "bean-check"


def bean_check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"books-{len(list(tmp_path.iterdir()))}.beancount"
    path.write_text(text)
    return subprocess.run([str(BEAN_CHECK), str(path)], capture_output=True, text=True, check=False)  # noqa: S603


@pytest.fixture
def fresh(fresh_pg_url: str) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    engine = make_engine(fresh_pg_url)
    yield engine, make_session_factory(engine)
    engine.dispose()


def _days_of_entries(factory: sessionmaker[Session], days: int = 5) -> list[int]:
    """Cash in, money moving between three liabilities over several days, one reversal."""
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    with atomic(factory) as s:
        cash = make_account(s, type=AccountType.ASSET)
        a, b, c = (make_account(s, type=AccountType.LIABILITY) for _ in range(3))
        ids = [a.id, b.id, c.id, cash.id]
        journal.post(
            s,
            EntryDraft(
                key=f"fund-{a.id}",
                postings=(Posting.debit(cash.id, 1_000_000, "IDR"), Posting.credit(a.id, 1_000_000, "IDR")),
                effective_at=start,
                description='deposit "PO-1" \\ first',
                metadata={"kind": "deposit", "reference": "PO-1", "nested": {"x": [1, 2]}, "Bad Key": 1},
            ),
            now=start,
        )
        last = None
        for day in range(days):
            for hour in range(3):
                moment = start + timedelta(days=day, hours=hour + 1)
                last = journal.post(
                    s,
                    EntryDraft(
                        key=f"move-{a.id}-{day}-{hour}",
                        postings=(
                            Posting.debit(a.id, 1_000 + day, "IDR"),
                            Posting.credit(b.id if hour % 2 else c.id, 1_000 + day, "IDR"),
                        ),
                        effective_at=moment,
                        description=f"day {day}\nhour {hour}",
                    ),
                    now=moment,
                )
        assert last is not None
        journal.reverse(
            s, entry_id=last.id, key=f"rev-{last.id}", reason="entered twice", now=datetime.now(UTC)
        )
    return ids


def test_account_names_are_valid_beancount_names() -> None:
    assert (
        export.account_name(AccountType.LIABILITY, "hw:3:buyer:5:earned") == "Liabilities:Hw:3:Buyer:5:Earned"
    )
    assert export.account_name(AccountType.LIABILITY, "provider:sandbox:in_flight") == (
        "Liabilities:Provider:Sandbox:In-flight"
    )
    assert export.account_name(AccountType.ASSET, "platform:cash:IDR") == "Assets:Platform:Cash:IDR"
    assert export.account_name(AccountType.ASSET, "acct-1f_x") == "Assets:Acct-1f-x"
    assert export.account_name(AccountType.EXPENSE, "::") == "Expenses:X:X:X"


def test_a_ledger_over_several_days_passes_bean_check(factory: sessionmaker[Session], tmp_path: Path) -> None:
    ids = _days_of_entries(factory)
    with factory() as s:
        text = export.beancount_text(s, account_ids=ids)
    result = bean_check(text, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert text.count(" * ") == 1 + 15 + 1
    assert len(re.findall(r"^\d{4}-\d\d-\d\d balance ", text, flags=re.M)) >= 5 * 3
    assert "^entry-" in text and "reverses_id:" in text


def test_altering_one_posting_fails_bean_check(factory: sessionmaker[Session], tmp_path: Path) -> None:
    ids = _days_of_entries(factory)
    with factory() as s:
        text = export.beancount_text(s, account_ids=ids)
    altered = re.sub(r"(\n  Liabilities:\S+  )1002 IDR", r"\g<1>1003 IDR", text, count=1)
    assert altered != text
    result = bean_check(altered, tmp_path)
    assert result.returncode != 0
    assert "balance" in (result.stdout + result.stderr).lower()


def test_altering_both_legs_consistently_still_fails_the_daily_balances(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    ids = _days_of_entries(factory)
    with factory() as s:
        text = export.beancount_text(s, account_ids=ids)
    blocks = text.split("\n\n")
    target = next(i for i, block in enumerate(blocks) if ' * "day 2\\nhour 0"' in block)
    blocks[target] = blocks[target].replace("1002 IDR", "1902 IDR").replace("-1002 IDR", "-1902 IDR")
    altered = "\n\n".join(blocks)
    assert altered != text
    result = bean_check(altered, tmp_path)
    assert result.returncode != 0
    assert "Balance failed" in result.stdout + result.stderr


def test_the_export_is_the_same_twice(factory: sessionmaker[Session]) -> None:
    ids = _days_of_entries(factory, days=2)
    with factory() as s:
        assert export.beancount_text(s, account_ids=ids) == export.beancount_text(s, account_ids=ids)


def test_entries_csv_has_one_signed_row_per_posting_summing_to_zero(factory: sessionmaker[Session]) -> None:
    ids = _days_of_entries(factory, days=2)
    buffer = io.StringIO()
    with factory() as s:
        written = export.write_entries_csv(s, buffer, account_ids=ids)
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert len(rows) == written == 2 * (1 + 6 + 1)
    per_entry: dict[str, int] = defaultdict(int)
    for row in rows:
        assert re.fullmatch(r"-?[0-9]+", row["amount"])
        per_entry[row["entry_id"]] += int(row["amount"])
    assert set(per_entry.values()) == {0}


def test_a_demo_sized_book_passes_bean_check_and_matches_the_ledger(
    fresh: tuple[Engine, sessionmaker[Session]], tmp_path: Path
) -> None:
    from tests.audit.book import build
    from tests.audit.conftest import SECRET
    from tests.sandbox import LiveSandbox

    _, factory = fresh
    sandbox = LiveSandbox(tmp_path, SECRET, send_callbacks=False)
    sandbox.start()
    try:
        book = build(factory, sandbox)
    finally:
        sandbox.stop()
    with factory() as s:
        text = export.beancount_text(s)
        entries = s.execute(select(EntryRow.id)).scalars().all()
        balances = {r.code: (r.type, r.balance) for r in s.execute(select(AccountRow)).scalars()}
        postings = len(s.execute(select(PostingRow.id)).scalars().all())
    result = bean_check(text, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[:3000]
    assert len(entries) > 100 and len(book.payouts) >= 12
    assert text.count(" * ") == len(entries)
    assert len(re.findall(r"^  \S+  -?[0-9]+ IDR$", text, flags=re.M)) == postings
    assert 'custom "upah-checkpoint"' in text
    # Beancount's own balances equal the ledger's materialised balances.
    from beancount import loader
    from beancount.core import realization

    loaded, errors, _options = loader.load_string(text)
    assert errors == []
    tree = realization.realize(loaded)
    for code, (kind, balance) in balances.items():
        name = export.account_name(AccountType(kind), code)
        node = realization.get(tree, name)
        held = node.balance.get_currency_units("IDR").number if node is not None else 0
        sign = 1 if kind in ("asset", "expense") else -1
        assert sign * int(held) == balance, code


def test_a_tampered_demo_book_fails_bean_check(
    fresh: tuple[Engine, sessionmaker[Session]], tmp_path: Path
) -> None:
    _, factory = fresh
    _days_of_entries(factory, days=3)
    with factory() as s:
        text = export.beancount_text(s)
    lines = text.splitlines()
    target = next(i for i, line in enumerate(lines) if re.fullmatch(r"  Liabilities:\S+  -[0-9]+ IDR", line))
    lines[target] = re.sub(r"-([0-9]+) IDR", lambda m: f"-{int(m.group(1)) + 1} IDR", lines[target])
    assert bean_check("\n".join(lines) + "\n", tmp_path).returncode != 0


def test_the_sealed_chain_travels_with_the_export(fresh: tuple[Engine, sessionmaker[Session]]) -> None:
    from ledger import chain

    _, factory = fresh
    _days_of_entries(factory, days=1)
    key = chain.load_private_key(chain.generate_private_key_text())
    with atomic(factory) as s:
        sealing.seal(s, now=datetime.now(UTC), signing_key=key, checkpoint_every=2)
    with factory() as s:
        text = export.beancount_text(s)
    assert text.count("chain_digest:") == text.count(" * ")
    assert text.count('custom "upah-checkpoint"') >= 2
    assert chain.public_key_pem(key).splitlines()[1] in text
