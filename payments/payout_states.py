"""The payout state machine, and the payout run's.

A payout sends one homeworker's money to her wallet. It carries one idempotency key for
its whole life, and its status moves only along :data:`TRANSITIONS`:

=============  ==========================================
from           to
=============  ==========================================
created        submitted, failed
submitted      succeeded, failed, unknown
unknown        succeeded, failed, unknown, submitted
succeeded      reversed
failed         (terminal; succeeded only by reconciliation)
reversed       (terminal)
=============  ==========================================

- ``created → failed``: a pre-send check failed (wallet limit, missing account); nothing
  was sent.
- ``submitted → unknown``: a timeout or 5xx — the provider may or may not have the
  instruction. Nothing is ever *sent again* from here blindly: the provider's status is
  queried by our idempotency key first.
- ``unknown → succeeded | failed``: the status query (or a callback) gave the answer.
- ``unknown → unknown``: the query itself was inconclusive; ask again later.
- ``unknown → submitted``: the provider answered *not found* after its documented
  window, so it never received the instruction; it may be submitted again **with the
  same idempotency key**, so that even a late arrival of the first attempt cannot pay
  twice.
- ``succeeded → reversed``: the provider reversed a completed payment.

``failed`` and ``reversed`` are terminal: the money is back in what she is owed, and a
retry is a new payout with a new key. The one exception, outside :data:`TRANSITIONS`
because no provider answer can take it: ``failed → succeeded`` when the provider said it
paid a payout we had failed, and an admin settles that conflict from the provider's
statement (:func:`settle_conflict`, ``payments.conflicts``).

A *run* groups a buyer's payouts: ``created → (awaiting_approval →) dispatching →
completed``, or ``awaiting_approval → rejected`` when it is not approved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from payments.errors import InvalidState


class PayoutStatus(StrEnum):
    CREATED = "created"
    SUBMITTED = "submitted"
    UNKNOWN = "unknown"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERSED = "reversed"


class RunStatus(StrEnum):
    CREATED = "created"
    AWAITING_APPROVAL = "awaiting_approval"
    """Above the approval threshold: a second key must approve before dispatch."""
    DISPATCHING = "dispatching"
    COMPLETED = "completed"
    """Every payout of the run has a known outcome."""
    REJECTED = "rejected"
    """Not approved: nothing was sent, and what its payouts held went back."""


class IllegalTransition(InvalidState):
    """A status change the state machine does not allow (details: current, target)."""


TRANSITIONS: Mapping[PayoutStatus, frozenset[PayoutStatus]] = {
    PayoutStatus.CREATED: frozenset({PayoutStatus.SUBMITTED, PayoutStatus.FAILED}),
    PayoutStatus.SUBMITTED: frozenset({PayoutStatus.SUCCEEDED, PayoutStatus.FAILED, PayoutStatus.UNKNOWN}),
    PayoutStatus.UNKNOWN: frozenset(
        {
            PayoutStatus.SUCCEEDED,
            PayoutStatus.FAILED,
            PayoutStatus.UNKNOWN,
            PayoutStatus.SUBMITTED,
        }
    ),
    PayoutStatus.SUCCEEDED: frozenset({PayoutStatus.REVERSED}),
    PayoutStatus.FAILED: frozenset(),
    PayoutStatus.REVERSED: frozenset(),
}

RUN_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    RunStatus.CREATED: frozenset({RunStatus.AWAITING_APPROVAL, RunStatus.DISPATCHING, RunStatus.COMPLETED}),
    RunStatus.AWAITING_APPROVAL: frozenset({RunStatus.DISPATCHING, RunStatus.REJECTED}),
    RunStatus.DISPATCHING: frozenset({RunStatus.COMPLETED}),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.REJECTED: frozenset(),
}
"""``created → completed`` is for a run with no payouts in it."""

IN_FLIGHT: frozenset[PayoutStatus] = frozenset({PayoutStatus.SUBMITTED, PayoutStatus.UNKNOWN})
"""Sent, or possibly sent: the money sits in the provider's in-flight account."""

RESOLVED: frozenset[PayoutStatus] = frozenset(
    {PayoutStatus.SUCCEEDED, PayoutStatus.FAILED, PayoutStatus.REVERSED}
)
"""The outcome is known; nothing more to ask the provider."""


def transition(current: PayoutStatus, *, target: PayoutStatus) -> PayoutStatus:
    """Return ``target`` if the machine allows the move, else refuse it loudly."""
    if target not in TRANSITIONS[PayoutStatus(current)]:
        raise IllegalTransition(
            f"a payout cannot go from {current} to {target}",
            current=str(current),
            target=str(target),
        )
    return target


def settle_conflict(current: PayoutStatus) -> PayoutStatus:
    """``failed → succeeded``, for a conflict settled from the provider's statement alone."""
    if PayoutStatus(current) is not PayoutStatus.FAILED:
        raise IllegalTransition(
            f"only a failed payout's conflict is settled, not a {current} one",
            current=str(current),
            target=PayoutStatus.SUCCEEDED.value,
        )
    return PayoutStatus.SUCCEEDED


def run_transition(current: RunStatus, *, target: RunStatus) -> RunStatus:
    """Return ``target`` if a payout run may move there, else refuse it."""
    if target not in RUN_TRANSITIONS[RunStatus(current)]:
        raise IllegalTransition(
            f"a payout run cannot go from {current} to {target}",
            current=str(current),
            target=str(target),
        )
    return target


def is_terminal(status: PayoutStatus) -> bool:
    """True when no transition leaves the status (failed, reversed)."""
    return not TRANSITIONS[status]


def is_resolved(status: PayoutStatus) -> bool:
    """True when the provider's outcome is known (succeeded, failed, reversed)."""
    return status in RESOLVED


def run_is_complete(statuses: Iterable[PayoutStatus]) -> bool:
    """A run is complete once every payout in it has a known outcome."""
    return all(is_resolved(status) for status in statuses)
