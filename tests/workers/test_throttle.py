"""The per-provider send budget in Redis: shared, taken only when granted, never a dead end."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Any

import redis

from payments.payouts import DISPATCH_BATCH_SIZE
from upah.settings import Settings
from workers.tasks import _throttle

RATE = 10


def runtime() -> Any:
    settings = Settings(upah_provider_rate_per_second=RATE, upah_queue=f"throttle-{uuid.uuid4().hex[:8]}")
    return SimpleNamespace(settings=settings, redis=redis.Redis.from_url("redis://127.0.0.1:6379/0"))


def next_window() -> None:
    time.sleep(1.0 - time.time() % 1.0 + 0.02)


def test_a_batch_larger_than_a_seconds_budget_goes_out_in_a_fresh_second() -> None:
    rt = runtime()
    assert DISPATCH_BATCH_SIZE > RATE
    next_window()
    assert _throttle(rt, 1, cost=DISPATCH_BATCH_SIZE) == 0.0
    assert _throttle(rt, 2) > 0  # and that second is spent


def test_a_refused_attempt_uses_none_of_the_budget() -> None:
    rt = runtime()
    next_window()
    assert _throttle(rt, 1, cost=RATE - 1) == 0.0
    assert _throttle(rt, 2, cost=5) > 0  # does not fit
    assert _throttle(rt, 3) == 0.0  # the one send that still fits goes


def test_sends_beyond_the_budget_wait_for_the_next_second() -> None:
    rt = runtime()
    next_window()
    waits = [_throttle(rt, i) for i in range(RATE + 1)]
    assert waits[:RATE] == [0.0] * RATE
    assert 0 < waits[RATE] <= 1.1
