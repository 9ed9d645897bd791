"""How long an SMS waits for a gateway that is down: long enough for an outage of hours."""

from __future__ import annotations

from unittest import mock

from workers.tasks import SMS_MAX_RETRIES, SMS_RETRY_CAP, send_sms, sms_retry_in


def test_an_sms_is_tried_again_for_at_least_a_day_of_gateway_outage() -> None:
    with mock.patch("workers.tasks.random.uniform", return_value=0.5):  # the shortest jitter
        waited = sum(sms_retry_in(n) for n in range(SMS_MAX_RETRIES))
    assert waited >= 24 * 3600
    assert send_sms.max_retries == SMS_MAX_RETRIES


def test_an_sms_is_never_put_off_for_more_than_ten_minutes() -> None:
    assert max(sms_retry_in(n) for n in range(SMS_MAX_RETRIES)) <= SMS_RETRY_CAP == 600


def test_the_first_retries_come_within_seconds() -> None:
    assert sms_retry_in(0) <= 5 and sms_retry_in(1) <= 10
