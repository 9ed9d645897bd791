"""Per-caller rate limits: fixed windows on Redis, or in memory for the embedded default.

Homeworkers reach Upah through gateways that anyone with a phone can drive: a script
dialling the USSD code in a loop, or a flood of SMS, would otherwise cost us CPU (PIN
hashes), database work and — for SMS — money for every reply. Each channel therefore
counts requests per phone number in a **fixed window** (``limit`` per ``window`` seconds):
one Redis ``INCR`` on a key named after the window, with an ``EXPIRE`` in the same
pipeline, so a check is one round trip and the counters clean themselves up. A fixed
window can let through up to twice the limit across a window boundary; for keeping a
gateway loop from hurting anyone that is good enough, and much cheaper than a sliding log.

Keys are opaque to this module; callers pass a keyed hash of the phone number, never the
number, so neither Redis nor its logs hold personal data. The embedded default has no
Redis: :class:`MemoryRateLimiter` keeps the same rule in one process. When Redis cannot
be reached the Redis limiter *allows* the request (and logs it): a homeworker checking
what she is owed matters more than a limit that exists to stop abuse.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

__all__ = [
    "Decision",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "for_url",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Seconds since the epoch; injectable so tests can move time."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether one more request is allowed, and what is left of the window."""

    allowed: bool
    count: int
    """Requests counted in this window, this one included."""
    limit: int
    retry_after: int
    """Seconds until the window resets (0 when allowed)."""


class RateLimiter(Protocol):
    def hit(self, key: str, *, limit: int, window: int) -> Decision:
        """Count one request for ``key`` in the current ``window``-second window."""
        ...


def _check(limit: int, window: int) -> None:
    if limit < 1 or window < 1:
        raise ValueError("limit and window must be positive")


def _window_start(now: float, window: int) -> int:
    return int(now) // window * window


class RedisRateLimiter:
    """Fixed-window counters shared by every API process through Redis."""

    def __init__(self, client: redis.Redis, *, prefix: str, clock: Clock = time.time) -> None:
        if not prefix:
            raise ValueError("a key prefix keeps deployments sharing one Redis apart")
        self._redis = client
        self._prefix = prefix
        self._clock = clock

    def hit(self, key: str, *, limit: int, window: int) -> Decision:
        _check(limit, window)
        now = self._clock()
        start = _window_start(now, window)
        name = f"{self._prefix}:rl:{window}:{start}:{key}"
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.incr(name)
            pipe.expire(name, window + 1)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("rate limiter unavailable (%s); allowing the request", type(exc).__name__)
            return Decision(allowed=True, count=0, limit=limit, retry_after=0)
        return _decide(int(count), limit=limit, reset_at=start + window, now=now)

    def close(self) -> None:
        self._redis.close()


def _decide(count: int, *, limit: int, reset_at: int, now: float) -> Decision:
    if count <= limit:
        return Decision(allowed=True, count=count, limit=limit, retry_after=0)
    return Decision(allowed=False, count=count, limit=limit, retry_after=max(1, int(reset_at - now + 0.999)))


class MemoryRateLimiter:
    """The same rules inside one process, for the embedded default and for tests."""

    def __init__(self, *, clock: Clock = time.time, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[int, int, str], int] = {}
        self._max_keys = max_keys

    def hit(self, key: str, *, limit: int, window: int) -> Decision:
        _check(limit, window)
        now = self._clock()
        start = _window_start(now, window)
        with self._lock:
            self._forget_old(now)
            slot = (window, start, key)
            count = self._counts.get(slot, 0) + 1
            self._counts[slot] = count
        return _decide(count, limit=limit, reset_at=start + window, now=now)

    def _forget_old(self, now: float) -> None:
        """Drop finished windows once the table grows (bounded memory)."""
        if len(self._counts) < self._max_keys:
            return
        self._counts = {slot: n for slot, n in self._counts.items() if slot[1] + slot[0] > now}

    def close(self) -> None:
        """Nothing to release; here so both limiters can be closed alike."""


def for_url(redis_url: str | None, *, prefix: str) -> RedisRateLimiter | MemoryRateLimiter:
    """Redis when the deployment has it (shared by every process), else one process's memory."""
    if redis_url:
        return RedisRateLimiter(redis.Redis.from_url(redis_url), prefix=prefix)
    return MemoryRateLimiter()
