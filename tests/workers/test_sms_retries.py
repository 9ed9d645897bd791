"""How long an SMS waits for a gateway that is down: long enough for an outage of hours."""

from __future__ import annotations

from workers.tasks import SMS_MAX_RETRIES, SMS_RETRY_CAP, send_sms, sms_retry_in, sms_retry_longest


def test_an_sms_is_tried_again_for_at_least_a_day_of_gateway_outage() -> None:
    shortest = sum(sms_retry_longest(n) / 2 for n in range(SMS_MAX_RETRIES))  # every jitter at its least
    assert shortest >= 24 * 3600
    assert send_sms.max_retries == SMS_MAX_RETRIES


def test_an_sms_is_never_put_off_for_more_than_ten_minutes() -> None:
    assert max(sms_retry_in(n) for n in range(SMS_MAX_RETRIES)) <= SMS_RETRY_CAP == 600


def test_the_first_retries_come_within_seconds() -> None:
    assert sms_retry_in(0) <= 5 and sms_retry_in(1) <= 10
