"""What the beat runs, and how often."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab


def beat_schedule() -> dict[str, dict[str, Any]]:
    return {
        "relay the outbox": {"task": "outbox.relay", "schedule": 1.0},
        "resolve and resend payouts": {"task": "payouts.sweep", "schedule": 5.0},
        "expire holds": {"task": "ledger.expire_holds", "schedule": 60.0},
        "forget old USSD sessions": {"task": "channels.purge_ussd_sessions", "schedule": 3600.0},
        "forget ended dashboard sessions": {"task": "dashboard.purge_ended_sessions", "schedule": 3600.0},
        "forget old idempotency keys": {"task": "idempotency.purge_old_keys", "schedule": 3600.0},
        "forget relayed outbox messages": {"task": "outbox.purge_relayed", "schedule": 600.0},
        "seal the ledger chain": {"task": "ledger.seal", "schedule": 30.0},
        "nightly reconciliation": {"task": "payouts.reconcile", "schedule": crontab(hour=1, minute=0)},
    }
