"""Wiring from settings: database, keys, payout providers, the dispatcher. Nothing runs at import."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kombu import Queue
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp

from integrations import rate_limit, twilio_sms
from integrations.providers.base import PayoutProvider
from integrations.providers.sandbox import SandboxProvider
from integrations.providers.xendit import XenditProvider
from integrations.sandbox_server import FaultPlan, create_sandbox_app, sandbox_service
from integrations.sms_senders import SmsSender
from ledger import chain
from payments import payouts, pii
from payments.dispatch import Dispatcher
from upah import broker
from upah.db import make_engine, make_session_factory
from upah.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_SANDBOX_PATH = "/sandbox"


@dataclass(frozen=True)
class Keys:
    secret_keys: list[str]
    signing_key: Ed25519PrivateKey
    sandbox_callback_secret: bytes

    @property
    def keyring(self) -> pii.Keyring:
        return pii.Keyring.from_keys(self.secret_keys)


@dataclass(frozen=True)
class Database:
    engine: Engine
    sessions: sessionmaker[Session]


def database(settings: Settings) -> Database:
    engine = make_engine(settings.database_url)
    return Database(engine, make_session_factory(engine))


def keys(settings: Settings) -> Keys:
    """Keys from the environment, or generated once and kept beside the SQLite file."""
    secret_text = settings.upah_secret_keys or _generated(settings, "secret_keys", pii.generate_key)
    signing_text = settings.upah_signing_key or _generated(
        settings, "signing_key", chain.generate_private_key_text
    )
    sandbox_secret = settings.upah_sandbox_callback_secret or _generated(
        settings, "sandbox_callback_secret", lambda: secrets.token_urlsafe(32)
    )
    return Keys(
        secret_keys=[k.strip() for k in secret_text.split(",") if k.strip()],
        signing_key=chain.load_private_key(signing_text),
        sandbox_callback_secret=sandbox_secret.encode(),
    )


STANDALONE_SANDBOX_URL = "http://127.0.0.1:8100"
"""Where ``upah sandbox-provider`` listens by default (CONTRACT.md)."""


def sandbox_url(settings: Settings) -> str:
    """Where the sandbox provider answers: the one UPAH_SANDBOX_PROVIDER_URL names; else mounted
    in the API on the embedded default, or run on its own beside a broker."""
    if settings.upah_sandbox_provider_url:
        return settings.upah_sandbox_provider_url.rstrip("/")
    if not settings.is_embedded:
        return STANDALONE_SANDBOX_URL
    return settings.upah_public_url.rstrip("/") + EMBEDDED_SANDBOX_PATH


def providers(settings: Settings, keys: Keys) -> dict[str, PayoutProvider]:
    found: dict[str, PayoutProvider] = {
        "sandbox": SandboxProvider(
            sandbox_url(settings),
            keys.sandbox_callback_secret,
            timeout=(
                min(2.0, settings.upah_provider_timeout_seconds),
                settings.upah_provider_timeout_seconds,
            ),
        ),
    }
    if settings.xendit_secret_key and settings.xendit_callback_token:
        found["xendit"] = XenditProvider(
            secret_key=settings.xendit_secret_key, callback_token=settings.xendit_callback_token
        )
    return found


def dispatcher(settings: Settings, db: Database, keys: Keys) -> Dispatcher:
    base = settings.upah_public_url.rstrip("/")
    return Dispatcher(
        sessions=db.sessions,
        providers=providers(settings, keys),
        keyring=keys.keyring,
        clock=lambda: datetime.now(UTC),
        callback_url=lambda provider: f"{base}/v1/providers/{provider}/callbacks",
        stale_after=timedelta(seconds=settings.upah_stale_after_seconds),
    )


def sms_sender(settings: Settings) -> SmsSender:
    """The outbound SMS gateway (UPAH_SMS_PROVIDER): the recording sandbox, or Twilio."""
    return twilio_sms.build_sender(
        settings.upah_sms_provider,
        twilio_account_sid=settings.twilio_account_sid,
        twilio_auth_token=settings.twilio_auth_token,
        twilio_from_number=settings.twilio_from_number,
        twilio_messaging_service_sid=settings.twilio_messaging_service_sid,
    )


def run_policy(settings: Settings) -> payouts.RunPolicy:
    return payouts.RunPolicy(
        provider=settings.upah_payout_provider,
        minimum_payout=settings.upah_minimum_payout,
        approval_threshold=settings.upah_payout_approval_threshold,
        fee_per_payout=settings.upah_provider_fee,
    )


def celery_config(settings: Settings) -> dict[str, Any]:
    """The queue's configuration: Redis when configured, else a broker that needs no server
    (kombu's filesystem transport in the data folder, writing each message whole: see
    ``upah.broker``), so the embedded default runs real workers.

    Provider callbacks are applied from a queue of their own, which every worker also takes
    from (in turn with the main one): in the main queue they would wait behind a whole run's
    dispatch batches, while status queries asked about payouts whose answer had already come.
    The outbox relay runs from that queue too: it is what queues the callbacks, and behind the
    batches it would hold them back as much.
    """
    callbacks = f"{settings.upah_queue}.callbacks"
    conf: dict[str, Any] = {
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": settings.upah_queue,
        "task_queues": (Queue(settings.upah_queue), Queue(callbacks)),
        "task_routes": {task: {"queue": callbacks} for task in ("payouts.apply_callbacks", "outbox.relay")},
        "broker_connection_retry_on_startup": True,
        "timezone": "UTC",
        "worker_hijack_root_logger": False,
    }
    if settings.broker_url:
        conf["broker_url"] = settings.broker_url
        conf["broker_transport_options"] = {"visibility_timeout": settings.upah_visibility_timeout}
        conf["beat_schedule_filename"] = str(_private_folder(settings) / "celerybeat-schedule")
        return conf
    folder = settings.data_dir / ".upah" / "broker"
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf["broker_url"] = "filesystem://"
    conf["broker_transport"] = broker.TRANSPORT
    conf["broker_transport_options"] = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),  # kombu's default is ./control, wherever one runs
        "store_processed": False,
        # the transport polls its folder; at kombu's default (1 s) a worker holding one message
        # per process takes about one message a second
        "polling_interval": 0.05,
    }
    conf["beat_schedule_filename"] = str(_private_folder(settings) / "celerybeat-schedule")
    return conf


def kick(settings: Settings) -> Callable[[], None]:
    """A send-only queue client that asks the workers to relay the outbox now."""
    client = Celery("upah-api")
    client.conf.update(celery_config(settings))

    def send() -> None:
        try:
            client.send_task("outbox.relay")
        except Exception:  # the beat relays every second anyway
            log.warning("could not reach the queue to relay the outbox now; the beat will")

    return send


def limiter(settings: Settings) -> rate_limit.RateLimiter:
    """Per-phone request limits for the gateway channels: Redis when configured, else memory."""
    return rate_limit.for_url(settings.redis_url, prefix=f"upah:{settings.upah_queue}")


@dataclass(frozen=True)
class EmbeddedSandbox:
    """The sandbox provider served inside the API on the embedded default."""

    app: ASGIApp
    close: Callable[[], None]


def embedded_sandbox(settings: Settings, keys: Keys) -> EmbeddedSandbox:
    app = create_sandbox_app(
        store_path=sandbox_store(settings),
        callback_secret=keys.sandbox_callback_secret,
        faults=FaultPlan.parse(settings.upah_sandbox_faults),
    )
    return EmbeddedSandbox(app=app, close=sandbox_service(app).close)


def worker_command(
    *, beat: bool, pool: str, concurrency: int, loglevel: str = "INFO", heartbeat: bool = True
) -> list[str]:
    """The Celery worker's command line (the app named as a string: upah never imports workers).

    ``heartbeat=False`` for a worker nobody monitors (tests, benchmarks): less broker traffic.
    """
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app:celery_app",
        "worker",
        f"--loglevel={loglevel}",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
    ]
    if not heartbeat:
        command.append("--without-heartbeat")
    if beat:
        command.append("--beat")
    return command


def sandbox_store(settings: Settings) -> Path:
    return _private_folder(settings) / "sandbox-provider.db"


def _private_folder(settings: Settings) -> Path:
    folder = settings.data_dir / ".upah"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _generated(settings: Settings, name: str, make: Callable[[], str]) -> str:
    folder = settings.data_dir / ".upah"
    path = folder / name
    if path.exists():
        return path.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    value = make()
    try:
        _write_private(path, value)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    log.warning("generated %s and stored it in %s; set it in the environment for production", name, path)
    return value


def _write_private(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
