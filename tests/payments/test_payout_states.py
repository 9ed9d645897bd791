"""The payout and payout-run state machines: every allowed move, every refused one."""

from __future__ import annotations

import itertools

import pytest

from payments.errors import InvalidState
from payments.payout_states import (
    RUN_TRANSITIONS,
    TRANSITIONS,
    IllegalTransition,
    PayoutStatus,
    RunStatus,
    is_resolved,
    is_terminal,
    run_is_complete,
    run_transition,
    settle_conflict,
    transition,
)

P = PayoutStatus
R = RunStatus

ALLOWED = {
    (P.CREATED, P.SUBMITTED),
    (P.CREATED, P.FAILED),
    (P.SUBMITTED, P.SUCCEEDED),
    (P.SUBMITTED, P.FAILED),
    (P.SUBMITTED, P.UNKNOWN),
    (P.UNKNOWN, P.SUCCEEDED),
    (P.UNKNOWN, P.FAILED),
    (P.UNKNOWN, P.UNKNOWN),
    (P.UNKNOWN, P.SUBMITTED),
    (P.SUCCEEDED, P.REVERSED),
}
REFUSED = set(itertools.product(P, P)) - ALLOWED

RUN_ALLOWED = {
    (R.CREATED, R.AWAITING_APPROVAL),
    (R.CREATED, R.DISPATCHING),
    (R.CREATED, R.COMPLETED),
    (R.AWAITING_APPROVAL, R.DISPATCHING),
    (R.AWAITING_APPROVAL, R.REJECTED),
    (R.DISPATCHING, R.COMPLETED),
}
RUN_REFUSED = set(itertools.product(R, R)) - RUN_ALLOWED


def test_payouts_have_exactly_six_lower_case_statuses() -> None:
    assert [s.value for s in P] == ["created", "submitted", "unknown", "succeeded", "failed", "reversed"]


def test_runs_have_their_five_lower_case_statuses() -> None:
    assert [s.value for s in R] == ["created", "awaiting_approval", "dispatching", "completed", "rejected"]


def test_a_conflict_settled_as_paid_is_the_one_way_out_of_failed() -> None:
    assert settle_conflict(P.FAILED) is P.SUCCEEDED
    assert (P.FAILED, P.SUCCEEDED) not in {(a, b) for a, targets in TRANSITIONS.items() for b in targets}


@pytest.mark.parametrize("current", [p for p in P if p is not P.FAILED])
def test_only_a_failed_payouts_conflict_is_settled(current: P) -> None:
    with pytest.raises(IllegalTransition):
        settle_conflict(current)


def test_the_transition_table_is_exactly_the_documented_one() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_an_allowed_payout_move_returns_the_target(current: P, target: P) -> None:
    assert transition(current, target=target) is target


@pytest.mark.parametrize(("current", "target"), sorted(REFUSED))
def test_a_payout_move_outside_the_table_is_refused(current: P, target: P) -> None:
    with pytest.raises(IllegalTransition) as caught:
        transition(current, target=target)
    assert caught.value.code == "invalid_state"
    assert caught.value.details == {"current": current.value, "target": target.value}


def test_an_illegal_transition_is_the_apis_invalid_state_error() -> None:
    assert issubclass(IllegalTransition, InvalidState)


def test_a_payout_cannot_succeed_without_being_submitted() -> None:
    with pytest.raises(IllegalTransition):
        transition(P.CREATED, target=P.SUCCEEDED)


def test_an_unknown_payout_may_be_resubmitted_after_the_provider_says_not_found() -> None:
    assert transition(P.UNKNOWN, target=P.SUBMITTED) is P.SUBMITTED


def test_a_failed_payout_is_never_retried_in_place() -> None:
    with pytest.raises(IllegalTransition):
        transition(P.FAILED, target=P.SUBMITTED)


def test_a_status_given_as_its_string_value_is_accepted() -> None:
    assert transition("created", target=P.SUBMITTED) is P.SUBMITTED  # type: ignore[arg-type]


@pytest.mark.parametrize("status", list(P))
def test_terminal_means_no_way_out(status: P) -> None:
    assert is_terminal(status) == (status in {P.FAILED, P.REVERSED})


@pytest.mark.parametrize("status", list(P))
def test_resolved_means_the_provider_outcome_is_known(status: P) -> None:
    assert is_resolved(status) == (status in {P.SUCCEEDED, P.FAILED, P.REVERSED})


def test_the_run_table_is_exactly_the_documented_one() -> None:
    assert {(a, b) for a, targets in RUN_TRANSITIONS.items() for b in targets} == RUN_ALLOWED


@pytest.mark.parametrize(("current", "target"), sorted(RUN_ALLOWED))
def test_an_allowed_run_move_returns_the_target(current: R, target: R) -> None:
    assert run_transition(current, target=target) is target


@pytest.mark.parametrize(("current", "target"), sorted(RUN_REFUSED))
def test_a_run_move_outside_the_table_is_refused(current: R, target: R) -> None:
    with pytest.raises(IllegalTransition) as caught:
        run_transition(current, target=target)
    assert caught.value.code == "invalid_state"


def test_a_run_is_complete_when_every_payout_is_resolved() -> None:
    assert run_is_complete([P.SUCCEEDED, P.FAILED, P.REVERSED])


def test_a_run_with_a_payout_in_flight_is_not_complete() -> None:
    assert not run_is_complete([P.SUCCEEDED, P.UNKNOWN])


def test_an_empty_run_is_complete() -> None:
    assert run_is_complete([])
