"""The piece-rate domain's exception tree; each error has a ``code`` the API returns.

    PaymentsError
    ├── NotFound              not_found            (also: another organisation's object)
    ├── Forbidden             forbidden
    ├── Unauthorized          unauthorized
    ├── ValidationFailed      validation_error
    │   └── RateBelowMinimumWage rate_below_minimum_wage
    ├── InvalidState          invalid_state
    ├── OverDelivery          over_delivery
    └── DuplicateReference    duplicate_reference

Ledger refusals (insufficient_funds, idempotency_conflict, …) pass through with the
ledger's own codes.
"""

from __future__ import annotations

from typing import Any


class PaymentsError(Exception):
    code = "payments_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(PaymentsError):
    code = "not_found"


class Forbidden(PaymentsError):
    code = "forbidden"


class Unauthorized(PaymentsError):
    code = "unauthorized"


class ValidationFailed(PaymentsError):
    code = "validation_error"


class RateBelowMinimumWage(ValidationFailed):
    code = "rate_below_minimum_wage"


class InvalidState(PaymentsError):
    code = "invalid_state"


class OverDelivery(PaymentsError):
    code = "over_delivery"


class DuplicateReference(PaymentsError):
    code = "duplicate_reference"
