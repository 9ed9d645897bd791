"""Random sequences of post / hold / capture / void / expire / reverse, on both databases,
with the books checked after every step against a model kept in plain Python."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountType, atomic, journal, reports
from ledger.errors import AlreadyReversed, InsufficientFunds
from tests.factories import fund, make_account, ref, transfer

N = 4


def machine_for(factory: sessionmaker[Session]) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        @initialize()
        def open_books(self) -> None:
            self.now = datetime.now(UTC)
            with atomic(factory) as s:
                accounts = [make_account(s, type=AccountType.LIABILITY, no_overdraft=True) for _ in range(N)]
                for a in accounts:
                    fund(s, a, 1_000)
            self.ids = [a.id for a in accounts]
            self.posted = dict.fromkeys(self.ids, 1_000)
            self.held = dict.fromkeys(self.ids, 0)
            self.holds: dict[int, tuple[int, int]] = {}
            self.entries: list[tuple[int, int, int, int]] = []  # entry id, src, dst, amount
            self.reversed: set[int] = set()

        def available(self, account: int) -> int:
            return self.posted[account] - self.held[account]

        @rule(src=st.integers(0, N - 1), dst=st.integers(0, N - 1), amount=st.integers(1, 700))
        def post(self, src: int, dst: int, amount: int) -> None:
            if src == dst:
                return
            a, b = self.ids[src], self.ids[dst]
            try:
                with atomic(factory) as s:
                    entry = journal.post(s, transfer(a, b, amount), now=self.now)
            except InsufficientFunds:
                assert self.available(a) < amount
                return
            assert self.available(a) >= amount
            self.posted[a] -= amount
            self.posted[b] += amount
            self.entries.append((entry.id, a, b, amount))

        @rule(who=st.integers(0, N - 1), amount=st.integers(1, 700), expired=st.booleans())
        def place_hold(self, who: int, amount: int, expired: bool) -> None:
            account = self.ids[who]
            expires = self.now - timedelta(seconds=1) if expired else self.now + timedelta(hours=1)
            try:
                with atomic(factory) as s:
                    hold = journal.place_hold(
                        s, key=ref("h"), account_id=account, amount=amount, now=self.now, expires_at=expires
                    )
            except InsufficientFunds:
                assert self.available(account) < amount
                return
            self.held[account] += amount
            self.holds[hold.id] = (account, amount) if not expired else (account, -amount)

        @precondition(lambda self: any(amt > 0 for _, amt in self.holds.values()))
        @rule(data=st.data(), dst=st.integers(0, N - 1))
        def capture(self, data: st.DataObject, dst: int) -> None:
            hold_id = data.draw(st.sampled_from(sorted(h for h, (_, amt) in self.holds.items() if amt > 0)))
            account, amount = self.holds.pop(hold_id)
            target = self.ids[dst]
            if target == account:
                target = self.ids[(dst + 1) % N]
            part = data.draw(st.integers(1, amount))
            with atomic(factory) as s:
                entry = journal.capture_hold(
                    s, hold_id=hold_id, draft=transfer(account, target, part), now=self.now
                )
            self.held[account] -= amount
            self.posted[account] -= part
            self.posted[target] += part
            self.entries.append((entry.id, account, target, part))

        @precondition(lambda self: any(amt > 0 for _, amt in self.holds.values()))
        @rule(data=st.data())
        def void(self, data: st.DataObject) -> None:
            hold_id = data.draw(st.sampled_from(sorted(h for h, (_, amt) in self.holds.items() if amt > 0)))
            account, amount = self.holds.pop(hold_id)
            with atomic(factory) as s:
                journal.void_hold(s, hold_id=hold_id, now=self.now)
            self.held[account] -= amount

        @rule()
        def sweep(self) -> None:
            with atomic(factory) as s:
                journal.expire_holds(s, now=self.now)
            for hold_id, (account, amount) in list(self.holds.items()):
                if amount < 0:
                    self.held[account] += amount
                    del self.holds[hold_id]

        @precondition(lambda self: bool(self.entries))
        @rule(data=st.data())
        def reverse(self, data: st.DataObject) -> None:
            entry_id, src, dst, amount = data.draw(st.sampled_from(self.entries))
            try:
                with atomic(factory) as s:
                    journal.reverse(s, entry_id=entry_id, key=ref("r"), reason="test", now=self.now)
            except AlreadyReversed:
                assert entry_id in self.reversed
                return
            except InsufficientFunds:
                assert entry_id not in self.reversed
                assert self.available(dst) < amount
                return
            assert entry_id not in self.reversed
            self.reversed.add(entry_id)
            self.posted[src] += amount
            self.posted[dst] -= amount

        @invariant()
        def books_agree_with_the_model(self) -> None:
            if not hasattr(self, "ids"):
                return
            with factory() as s:
                for account in self.ids:
                    bal = journal.balance(s, account)
                    assert (bal.posted, bal.held) == (self.posted[account], self.held[account])
                    assert bal.available >= 0
                assert reports.check_integrity(s) == []

    return LedgerMachine


def test_random_ledger_operations_keep_the_books_whole(factory: sessionmaker[Session]) -> None:
    machine = machine_for(factory)
    machine.TestCase.settings = settings(
        max_examples=12, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
    )
    machine.TestCase().runTest()


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
