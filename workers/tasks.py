"""Celery tasks: thin, idempotent, taking ids. The work itself lives in payments/ledger."""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import redis
from celery import Task
from celery.signals import worker_process_init

from integrations.providers.base import OutcomeUnknown
from integrations.providers.sandbox import SandboxProvider
from integrations.sms_senders import SmsSender, SmsTemporaryFailure
from ledger import atomic, journal, sealing
from payments import channels, dashboard_sessions, idempotency, outbox, reconciliation
from payments.dispatch import Dispatcher
from upah import bootstrap
from upah.settings import Settings, get_settings
from workers.app import celery_app

log = logging.getLogger(__name__)

TOPIC_TASKS = {
    outbox.DISPATCH_PAYOUT: "payouts.dispatch",
    outbox.DISPATCH_BATCH: "payouts.dispatch_batch",
    outbox.RESOLVE_PAYOUT: "payouts.resolve",
    outbox.RESOLVE_BATCH: "payouts.resolve_batch",
    outbox.SEND_SMS: "sms.send",
}
SMS_RETRY_CAP = 600.0
SMS_MAX_RETRIES = 300
"""A gateway can be down for hours: an SMS is tried again sooner at first, then every 5 to 10
minutes, for at least a day (:func:`sms_retry_in`) before it is left pending and logged."""
SMS_GROUP = 25
OUTBOX_PURGE_BATCH = 10_000
CALLBACK_GROUP = 25


@dataclass
class WorkerRuntime:
    settings: Settings
    db: bootstrap.Database
    keys: bootstrap.Keys
    dispatcher: Dispatcher
    sms: SmsSender
    redis: redis.Redis | None


@lru_cache(maxsize=1)
def runtime() -> WorkerRuntime:
    """Built once in each worker process, after the fork (never at import, never before fork):
    as the pool starts the process (:func:`_ready_before_the_first_task`) or by its first task."""
    settings = get_settings()
    db = bootstrap.database(settings)
    keys = bootstrap.keys(settings)
    client = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    return WorkerRuntime(
        settings, db, keys, bootstrap.dispatcher(settings, db, keys), bootstrap.sms_sender(settings), client
    )


@worker_process_init.connect
def _ready_before_the_first_task(**_: Any) -> None:
    """A pool process builds its runtime (the database driver's import, the engine, the providers)
    as it starts, not while its first task waits; should that fail, the first task tries again
    and reports why."""
    try:
        runtime()
    except Exception:
        log.warning("the worker process could not build its runtime yet; its first task will try again")


def _now() -> datetime:
    return datetime.now(UTC)


@celery_app.task(name="outbox.relay")
def relay_outbox() -> int:
    """Hand committed outbox messages to the queue."""
    rt = runtime()
    total = 0
    while True:
        with atomic(rt.db.sessions) as s:
            due: list[outbox.Message] = []
            sent = outbox.relay(s, send=due.append, now=_now())
            _publish(due)  # before the messages are marked relayed: a crash sends again, never loses
        total += sent
        if sent == 0:
            return total


def _publish(messages: list[outbox.Message]) -> None:
    """Queue each message as its task; SMS notices go in groups of SMS_GROUP and callbacks in
    groups of CALLBACK_GROUP, one task each (each is a few milliseconds of work: a task apiece
    would cost as much again)."""
    grouped = (outbox.SEND_SMS, outbox.APPLY_CALLBACK)
    for message in messages:
        if message.topic not in grouped:
            _send(message)
    sms = [m.payload for m in messages if m.topic == outbox.SEND_SMS]
    _send_in_groups("sms.send_many", "payloads", sms, SMS_GROUP)
    callbacks = [int(m.payload["callback_id"]) for m in messages if m.topic == outbox.APPLY_CALLBACK]
    _send_in_groups("payouts.apply_callbacks", "callback_ids", callbacks, CALLBACK_GROUP)


def _send_in_groups(task: str, argument: str, items: Sequence[Any], size: int) -> None:
    for first in range(0, len(items), size):
        celery_app.send_task(task, kwargs={argument: list(items[first : first + size])})


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
    """Ask the provider what happened to a payout whose outcome is unknown (if no other
    delivery of this question, or the sweep's, is asking already)."""
    return runtime().dispatcher.resolve(payout_id, queued=True).value


@celery_app.task(name="payouts.resolve_batch")
def resolve_batch(payout_ids: list[int]) -> dict[str, str]:
    """Ask about those of a batch's accepted payouts that no callback has settled yet."""
    return {str(k): v.value for k, v in runtime().dispatcher.resolve_many(payout_ids, queued=True).items()}


@celery_app.task(name="payouts.apply_callbacks")
def apply_callbacks(callback_ids: list[int]) -> dict[str, int]:
    """Apply recorded provider callbacks: a group's first words of success together, the rest
    each in a transaction of its own (``Dispatcher.apply_callbacks``). Should the group fail,
    each is tried alone, so that one bad callback holds up no other; one that fails alone is
    left to the sweep."""
    dispatcher = runtime().dispatcher
    try:
        outcomes = list(dispatcher.apply_callbacks(callback_ids).values())
    except Exception:
        log.exception("a group of %d callbacks failed; applying them one by one", len(callback_ids))
        outcomes = [_apply_alone(dispatcher, callback_id) for callback_id in callback_ids]
    return dict(Counter(outcomes))


def _apply_alone(dispatcher: Dispatcher, callback_id: int) -> str:
    try:
        return dispatcher.apply_callback(callback_id)
    except Exception:
        log.exception("callback %d could not be applied; the sweep will try again", callback_id)
        return "error"


@celery_app.task(name="payouts.sweep")
def sweep_payouts() -> dict[str, int]:
    """Find payouts that need sending or asking about (after crashes, backoffs) and callbacks
    not yet applied, and queue them; complete runs whose last settlements raced each other."""
    dispatcher = runtime().dispatcher
    resend, ask = dispatcher.due()
    for payout_id in resend:
        celery_app.send_task("payouts.dispatch", kwargs={"payout_id": payout_id})
    for payout_id in ask:
        celery_app.send_task("payouts.resolve", kwargs={"payout_id": payout_id})
    callbacks = dispatcher.unapplied_callbacks()
    _send_in_groups("payouts.apply_callbacks", "callback_ids", callbacks, CALLBACK_GROUP)
    return {
        "resend": len(resend),
        "ask": len(ask),
        "callbacks": len(callbacks),
        "runs_completed": dispatcher.complete_runs(),
    }


@celery_app.task(name="sms.send", bind=True, max_retries=SMS_MAX_RETRIES)
def send_sms(self: Task[..., str], /, **payload: Any) -> str:
    """Send the SMS an outbox message stands for (a notice or a reply): recorded once per message,
    sent again only if a crash falls between the gateway's answer and that record."""
    rt = runtime()
    try:
        return channels.deliver_sms(
            rt.db.sessions, keyring=rt.keys.keyring, sender=rt.sms, payload=payload, clock=_now
        )
    except SmsTemporaryFailure as exc:
        if self.request.retries >= SMS_MAX_RETRIES:
            log.error(
                "sms %s still not taken by the gateway after %d tries; left pending",
                payload.get("kind"),
                self.request.retries,
            )
        raise self.retry(countdown=exc.retry_after or sms_retry_in(self.request.retries)) from exc


def sms_retry_in(retries: int) -> float:
    """Seconds before the next try: up to :func:`sms_retry_longest`, jittered down to half."""
    return sms_retry_longest(retries) * random.uniform(0.5, 1.0)  # noqa: S311


def sms_retry_longest(retries: int) -> float:
    """Exponential from 5 s, capped at 10 minutes."""
    return min(SMS_RETRY_CAP, 5.0 * 2.0 ** min(retries, 16))


@celery_app.task(name="sms.send_many")
def send_sms_many(payloads: list[dict[str, Any]]) -> dict[str, int]:
    """``sms.send`` for a group of messages, claimed together and sent one after another
    (``channels.deliver_sms_many``). One that must be tried again later (or failed
    unexpectedly) is handed to its own ``sms.send`` task, which retries it."""
    rt = runtime()
    outcomes = channels.deliver_sms_many(
        rt.db.sessions, keyring=rt.keys.keyring, sender=rt.sms, payloads=payloads, clock=_now
    )
    done: Counter[str] = Counter()
    for payload, outcome in zip(payloads, outcomes, strict=True):
        if isinstance(outcome, SmsTemporaryFailure):
            backoff = 5.0 * random.uniform(0.5, 1.0)  # noqa: S311
            send_sms.apply_async(kwargs=payload, countdown=outcome.retry_after or backoff)
        elif isinstance(outcome, Exception):
            log.error("sms %s failed in a group; queued on its own", payload.get("kind"), exc_info=outcome)
            send_sms.apply_async(kwargs=payload, countdown=5.0)
        done[outcome if isinstance(outcome, str) else "retry"] += 1
    return dict(done)


@celery_app.task(name="payouts.reconcile")
def reconcile_sandbox() -> dict[str, Any]:
    """Nightly: reconcile the sandbox provider's statement, and list payouts stuck in unknown."""
    rt = runtime()
    provider = rt.dispatcher.providers.get("sandbox")
    if not isinstance(provider, SandboxProvider):
        return {"skipped": "no sandbox provider configured"}
    try:
        statement = provider.statement()
    except OutcomeUnknown as exc:
        log.warning("nightly reconciliation skipped: %s", exc)
        return {"skipped": str(exc)}
    with atomic(rt.db.sessions) as s:
        result = reconciliation.nightly(
            s,
            statement_csv=statement,
            provider="sandbox",
            stuck_after=timedelta(seconds=rt.settings.upah_stuck_after_seconds),
            now=_now(),
            keyring=rt.keys.keyring,
        )
    if result.stuck:
        log.warning(
            "%d payouts stuck in unknown: %s", len(result.stuck), [p.payout_id for p in result.stuck][:20]
        )
    return {"run": result.run.id, "summary": result.run.summary, "stuck": len(result.stuck)}


@celery_app.task(name="channels.purge_ussd_sessions")
def purge_ussd_sessions() -> int:
    """Forget USSD sessions a day after their last request (their PIN verdicts with them)."""
    with atomic(runtime().db.sessions) as s:
        return channels.purge_ussd_sessions(s, now=_now())


@celery_app.task(name="dashboard.purge_ended_sessions")
def purge_ended_dashboard_sessions() -> int:
    """Forget signed-out dashboard sessions once their cookies have expired."""
    with atomic(runtime().db.sessions) as s:
        return dashboard_sessions.purge_ended(s, now=_now())


@celery_app.task(name="idempotency.purge_old_keys")
def purge_idempotency_keys() -> int:
    """Forget Idempotency-Key records, and the responses stored with them, after the retention."""
    rt = runtime()
    with atomic(rt.db.sessions) as s:
        return idempotency.purge(
            s, now=_now(), older_than=timedelta(days=rt.settings.upah_idempotency_retention_days)
        )


@celery_app.task(name="outbox.purge_relayed")
def purge_relayed_outbox() -> int:
    """Forget outbox messages relayed longer ago than the retention, in bounded transactions."""
    rt = runtime()
    retention, total = timedelta(days=rt.settings.upah_outbox_retention_days), 0
    while True:
        with atomic(rt.db.sessions) as s:
            forgotten = outbox.purge(s, now=_now(), older_than=retention, limit=OUTBOX_PURGE_BATCH)
        total += forgotten
        if forgotten < OUTBOX_PURGE_BATCH:
            return total


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


_TAKE_BUDGET = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 2)
return 1
"""


def _throttle(rt: WorkerRuntime, payout_id: int, *, cost: int = 1) -> float:
    """A per-provider budget of sends per second, shared by every worker through Redis.

    Checked and taken in one step, and only when granted: a refused attempt uses none of it,
    so it cannot starve the sends that follow. A batch larger than a whole second's budget
    takes the whole of a fresh second rather than waiting for ever.
    """
    if rt.redis is None:
        return 0.0
    limit = rt.settings.upah_provider_rate_per_second
    window = int(time.time())
    key = f"upah:throttle:{rt.settings.upah_queue}:{rt.settings.upah_payout_provider}:{window}"
    if rt.redis.eval(_TAKE_BUDGET, 1, key, min(cost, limit), limit):
        return 0.0
    return 1.0 - (time.time() - window) + (payout_id % 10) / 100
