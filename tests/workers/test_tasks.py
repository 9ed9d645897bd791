"""The worker's other jobs, on the real Celery worker: SMS notices leave through the outbox,
the nightly reconciliation checks the sandbox provider's statement, and the sweep applies a
callback whose task was lost."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from celery import Celery
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from ledger import atomic
from payments.dispatch import CALLBACK_PENDING
from payments.tables import (
    OutboxRow,
    PayoutRow,
    ProviderCallbackRow,
    ReconciliationExceptionRow,
    ReconciliationRunRow,
    SmsMessageRow,
)
from tests.workers.conftest import Stack
from tests.workers.test_payouts_e2e import start_run, statuses, wait_until
from upah import bootstrap


def sms_sent(factory: sessionmaker[Session], homeworkers: list[int]) -> list[tuple[int, str]]:
    with factory() as s:
        rows = s.execute(
            select(SmsMessageRow.homeworker_id, SmsMessageRow.kind).where(
                SmsMessageRow.homeworker_id.in_(homeworkers), SmsMessageRow.status == "sent"
            )
        )
        return sorted((r.homeworker_id, r.kind) for r in rows)


def test_each_homeworker_is_told_of_her_order_and_her_pay_once(
    stack: Stack, pg_factory: sessionmaker[Session]
) -> None:
    stack.start_worker(concurrency=2)
    _, workers, _, run_id = start_run(stack, pg_factory, 3, lambda i: 10_000 + i)
    wait_until(lambda: statuses(pg_factory, run_id).get("succeeded") == 3, timeout=60, stack=stack)
    expected = sorted((w, kind) for w in workers for kind in ("order_assigned", "payout_succeeded"))
    wait_until(lambda: sms_sent(pg_factory, workers) == expected, timeout=30, stack=stack)


def test_the_nightly_task_reconciles_the_sandbox_statement(
    stack: Stack, pg_factory: sessionmaker[Session]
) -> None:
    stack.start_worker(concurrency=2)
    _, _, _, run_id = start_run(stack, pg_factory, 2, lambda i: 20_000 + i)
    wait_until(lambda: statuses(pg_factory, run_id).get("succeeded") == 2, timeout=60, stack=stack)
    with pg_factory() as s:  # other tests reconcile nightly in this database too
        before = s.execute(select(func.coalesce(func.max(ReconciliationRunRow.id), 0))).scalar_one()
    client = Celery("test-client")
    client.conf.update(bootstrap.celery_config(stack.settings))
    client.send_task("payouts.reconcile")

    def nightly_runs() -> list[ReconciliationRunRow]:
        with pg_factory() as s:
            return list(
                s.execute(
                    select(ReconciliationRunRow).where(
                        ReconciliationRunRow.source == "nightly", ReconciliationRunRow.id > before
                    )
                ).scalars()
            )

    wait_until(lambda: len(nightly_runs()) == 1, timeout=30, stack=stack)
    (run,) = nightly_runs()
    assert run.provider == "sandbox"
    with pg_factory() as s:
        exceptions = (
            s.execute(select(ReconciliationExceptionRow).where(ReconciliationExceptionRow.run_id == run.id))
            .scalars()
            .all()
        )
        # other tests' payouts share the database, not this sandbox: they are missing_at_provider
        unexpected = [
            (e.kind, e.line, e.payout_id, e.detail) for e in exceptions if e.kind != "missing_at_provider"
        ]
        ours = set(s.execute(select(PayoutRow.id).where(PayoutRow.run_id == run_id)).scalars())
        missed = [e.payout_id for e in exceptions if e.payout_id in ours]
    assert (unexpected, missed) == ([], []), run.summary
    assert run.summary["matched"] == 2, run.summary
    client.close()


def test_the_sweep_applies_a_recorded_callback_whose_task_was_lost(
    stack: Stack, pg_factory: sessionmaker[Session]
) -> None:
    event_id = f"evt-lost-{uuid.uuid4().hex}"
    with atomic(pg_factory) as s:  # recorded by the endpoint; its outbox message never relayed
        callback_id = s.execute(
            insert(ProviderCallbackRow)
            .values(
                provider="sandbox",
                event_id=event_id,
                status="succeeded",
                payload={
                    "event_id": event_id,
                    "idempotency_key": "no-such-payout",
                    "provider_reference": None,
                    "status": "succeeded",
                    "amount": 5_000,
                    "currency": "IDR",
                    "failure_code": None,
                },
                outcome=CALLBACK_PENDING,
                received_at=datetime.now(UTC) - timedelta(minutes=5),
            )
            .returning(ProviderCallbackRow.id)
        ).scalar_one()
    stack.start_worker(concurrency=1)

    def outcome() -> str:
        with pg_factory() as s:
            query = select(ProviderCallbackRow.outcome).where(ProviderCallbackRow.id == callback_id)
            return str(s.execute(query).scalar_one())

    wait_until(lambda: outcome() == "unknown_payout", timeout=30, stack=stack)


def test_the_worker_forgets_outbox_messages_relayed_before_the_retention(
    stack: Stack, pg_factory: sessionmaker[Session]
) -> None:
    stack.start_worker(concurrency=1)
    long_ago = datetime.now(UTC) - timedelta(days=stack.settings.upah_outbox_retention_days, hours=1)
    with atomic(pg_factory) as s:
        old = (
            s.execute(
                insert(OutboxRow).returning(OutboxRow.id),
                [
                    {
                        "topic": "sms.send",
                        "payload": {"n": n},
                        "available_at": long_ago,
                        "relayed_at": long_ago,
                        "created_at": long_ago,
                    }
                    for n in range(3)
                ],
            )
            .scalars()
            .all()
        )
    client = Celery("test-client")
    client.conf.update(bootstrap.celery_config(stack.settings))
    client.send_task("outbox.purge_relayed")

    def left() -> int:
        with pg_factory() as s:
            return int(s.execute(select(func.count()).where(OutboxRow.id.in_(old))).scalar_one())

    wait_until(lambda: left() == 0, timeout=30, stack=stack)
