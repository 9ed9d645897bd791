"""Fixed-window limits per key, on the real Redis and in memory, with the same rules."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from integrations.rate_limit import MemoryRateLimiter, RateLimiter, RedisRateLimiter, for_url

REDIS_URL = os.environ.get("UPAH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class FakeTime:
    def __init__(self, start: float = 1_700_000_040.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"upah-test-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest, prefix: str) -> Iterator[Callable[[FakeTime], RateLimiter]]:
    made: list[RedisRateLimiter] = []

    def build(clock: FakeTime) -> RateLimiter:
        if request.param == "memory":
            return MemoryRateLimiter(clock=clock)
        limiter = RedisRateLimiter(redis.Redis.from_url(REDIS_URL), prefix=prefix, clock=clock)
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        limiter.close()


def test_the_limit_allows_exactly_n_requests_per_window(make: Callable[[FakeTime], RateLimiter]) -> None:
    clock = FakeTime()
    limiter = make(clock)
    decisions = [limiter.hit("phone-a", limit=3, window=60) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.count for d in decisions] == [1, 2, 3, 4, 5]
    assert decisions[3].retry_after == 60  # the clock sits at the start of a window


def test_a_new_window_starts_a_new_count(make: Callable[[FakeTime], RateLimiter]) -> None:
    clock = FakeTime()
    limiter = make(clock)
    for _ in range(3):
        limiter.hit("phone-a", limit=2, window=60)
    clock.now += 45
    late = limiter.hit("phone-a", limit=2, window=60)
    assert not late.allowed and late.retry_after == 15
    clock.now += 15
    assert limiter.hit("phone-a", limit=2, window=60).allowed


def test_keys_are_counted_apart(make: Callable[[FakeTime], RateLimiter]) -> None:
    clock = FakeTime()
    limiter = make(clock)
    assert limiter.hit("phone-a", limit=1, window=60).allowed
    assert not limiter.hit("phone-a", limit=1, window=60).allowed
    assert limiter.hit("phone-b", limit=1, window=60).allowed
    assert limiter.hit("phone-a", limit=1, window=10).allowed  # another window length, another counter


@pytest.mark.parametrize(("limit", "window"), [(0, 60), (1, 0), (-1, -1)])
def test_nonsense_limits_are_refused(
    make: Callable[[FakeTime], RateLimiter], limit: int, window: int
) -> None:
    with pytest.raises(ValueError):
        make(FakeTime()).hit("k", limit=limit, window=window)


def test_redis_counters_expire_by_themselves(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    limiter = RedisRateLimiter(client, prefix=prefix)
    limiter.hit("phone-a", limit=5, window=60)
    (key,) = list(client.scan_iter(f"{prefix}:*"))
    assert b"phone-a" in key
    assert 0 < client.ttl(key) <= 61
    limiter.close()


def test_processes_sharing_redis_share_the_count(prefix: str) -> None:
    clock = FakeTime()
    first = RedisRateLimiter(redis.Redis.from_url(REDIS_URL), prefix=prefix, clock=clock)
    second = RedisRateLimiter(redis.Redis.from_url(REDIS_URL), prefix=prefix, clock=clock)
    assert first.hit("phone-a", limit=2, window=60).allowed
    assert second.hit("phone-a", limit=2, window=60).allowed
    assert not first.hit("phone-a", limit=2, window=60).allowed
    first.close()
    second.close()


def test_without_redis_the_limiter_lets_requests_through(caplog: pytest.LogCaptureFixture) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    limiter = RedisRateLimiter(dead, prefix="upah-test-down")
    decision = limiter.hit("phone-a", limit=1, window=60)
    assert decision.allowed
    assert "rate limiter unavailable" in caplog.text
    limiter.close()


def test_the_memory_limiter_forgets_finished_windows() -> None:
    clock = FakeTime()
    limiter = MemoryRateLimiter(clock=clock, max_keys=10)
    for n in range(10):
        limiter.hit(f"phone-{n}", limit=1, window=60)
    clock.now += 120
    limiter.hit("phone-new", limit=1, window=60)
    assert len(limiter._counts) == 1


def test_the_deployment_gets_redis_when_it_has_it() -> None:
    assert isinstance(for_url(None, prefix="x"), MemoryRateLimiter)
    shared = for_url(REDIS_URL, prefix="x")
    assert isinstance(shared, RedisRateLimiter)
    shared.close()
    with pytest.raises(ValueError):
        RedisRateLimiter(redis.Redis.from_url(REDIS_URL), prefix="")
