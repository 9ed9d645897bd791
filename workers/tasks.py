"""Celery tasks: thin, idempotent, taking ids. The work itself lives in payments/ledger."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import redis
from celery import Task

from ledger import atomic, journal, sealing
from payments import outbox
from payments.dispatch import Dispatcher
from upah import bootstrap
from upah.settings import Settings, get_settings
from workers.app import celery_app

log = logging.getLogger(__name__)

TOPIC_TASKS = {
    outbox.DISPATCH_PAYOUT: "payouts.dispatch",
    outbox.DISPATCH_BATCH: "payouts.dispatch_batch",
    outbox.RESOLVE_PAYOUT: "payouts.resolve",
}


@dataclass
class WorkerRuntime:
    settings: Settings
    db: bootstrap.Database
    keys: bootstrap.Keys
    dispatcher: Dispatcher
    redis: redis.Redis | None


@lru_cache(maxsize=1)
def runtime() -> WorkerRuntime:
    """Built on the first task in each worker process (never at import, never before fork)."""
    settings = get_settings()
    db = bootstrap.database(settings)
    keys = bootstrap.keys(settings)
    client = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    return WorkerRuntime(settings, db, keys, bootstrap.dispatcher(settings, db, keys), client)


def _now() -> datetime:
    return datetime.now(UTC)


@celery_app.task(name="outbox.relay")
def relay_outbox() -> int:
    """Hand committed outbox messages to the queue."""
    rt = runtime()
    total = 0
    while True:
        with atomic(rt.db.sessions) as s:
            sent = outbox.relay(s, send=_send, now=_now())
        total += sent
        if sent == 0:
            return total


def _send(message: outbox.Message) -> None:
    task = TOPIC_TASKS.get(message.topic)
    if task is None:
        log.warning("no task for outbox topic %s (message %d); dropped", message.topic, message.id)
        return
    celery_app.send_task(task, kwargs=message.payload)


@celery_app.task(name="payouts.dispatch", bind=True, max_retries=None)
def dispatch_payout(self: Task[[int], str], payout_id: int) -> str:
    """Send one payout (or resend one the provider never received), within the provider's rate."""
    rt = runtime()
    wait = _throttle(rt, payout_id)
    if wait:
        raise self.retry(countdown=wait)
    return rt.dispatcher.dispatch(payout_id).value


@celery_app.task(name="payouts.dispatch_batch", bind=True, max_retries=None)
def dispatch_batch(self: Task[[list[int]], dict[str, str]], payout_ids: list[int]) -> dict[str, str]:
    """Send a batch of a run's payouts: one transaction to submit, concurrent sends, one to apply."""
    rt = runtime()
    wait = _throttle(rt, payout_ids[0], cost=len(payout_ids))
    if wait:
        raise self.retry(countdown=wait)
    return {str(k): v.value for k, v in rt.dispatcher.dispatch_many(payout_ids).items()}


@celery_app.task(name="payouts.resolve")
def resolve_payout(payout_id: int) -> str:
    """Ask the provider what happened to a payout whose outcome is unknown."""
    return runtime().dispatcher.resolve(payout_id).value


@celery_app.task(name="payouts.sweep")
def sweep_payouts() -> dict[str, int]:
    """Find payouts that need sending or asking about (after crashes, backoffs) and queue them."""
    resend, ask = runtime().dispatcher.due()
    for payout_id in resend:
        celery_app.send_task("payouts.dispatch", kwargs={"payout_id": payout_id})
    for payout_id in ask:
        celery_app.send_task("payouts.resolve", kwargs={"payout_id": payout_id})
    return {"resend": len(resend), "ask": len(ask)}


@celery_app.task(name="ledger.expire_holds")
def expire_holds() -> int:
    with atomic(runtime().db.sessions) as s:
        return journal.expire_holds(s, now=_now())


@celery_app.task(name="ledger.seal")
def seal_ledger() -> int:
    rt = runtime()
    with atomic(rt.db.sessions) as s:
        return sealing.seal(
            s, now=_now(), signing_key=rt.keys.signing_key, checkpoint_every=rt.settings.upah_checkpoint_every
        )


def _throttle(rt: WorkerRuntime, payout_id: int, *, cost: int = 1) -> float:
    """A per-provider budget of sends per second, shared by every worker through Redis."""
    if rt.redis is None:
        return 0.0
    window = int(time.time())
    key = f"upah:throttle:{rt.settings.upah_queue}:{rt.settings.upah_payout_provider}:{window}"
    count = rt.redis.incrby(key, cost)
    if count == cost:
        rt.redis.expire(key, 2)
    if int(count) > rt.settings.upah_provider_rate_per_second:
        return 1.0 - (time.time() - window) + (payout_id % 10) / 100
    return 0.0
