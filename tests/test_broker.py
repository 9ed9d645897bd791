"""The embedded default's broker hands a worker only whole messages."""

from __future__ import annotations

import queue
import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu import Connection

from upah import bootstrap, broker
from upah.settings import Settings


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _connection(folder: Path) -> Connection:
    return Connection(
        "filesystem://",
        transport=broker.TRANSPORT,
        transport_options={
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(folder / "control"),
            "polling_interval": 0.01,
        },
    )


def test_a_message_arrives_whole_and_leaves_no_partial_file(tmp_path: Path) -> None:
    message: dict[str, Any] = {"payout_id": 7, "note": "Rp25.000 " * 500}
    with _connection(tmp_path) as conn:
        jobs = conn.SimpleQueue(_fresh("jobs"))
        jobs.put(message)
        assert not list(tmp_path.glob(f"*{broker.WRITING}"))
        received = jobs.get(timeout=5)
        received.ack()
        jobs.close()
    assert received.payload == message


def test_a_message_still_being_written_is_not_taken(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        name = _fresh("jobs")  # kombu keeps declared queues per process: one folder, one name
        jobs = conn.SimpleQueue(name)
        (tmp_path / f"0_half.{name}.msg{broker.WRITING}").write_bytes(b'{"body": "eyJwYXlv')
        with pytest.raises(queue.Empty):
            jobs.get(timeout=0.3)
        jobs.put({"payout_id": 8})
        received = jobs.get(timeout=5)
        received.ack()
        jobs.close()
    assert received.payload == {"payout_id": 8}


def test_the_embedded_default_queues_through_it_inside_the_data_folder(tmp_path: Path) -> None:
    settings = Settings(upah_data_dir=tmp_path, redis_url=None, celery_broker_url=None)
    app = Celery("upah-test")
    app.conf.update(bootstrap.celery_config(settings))
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, broker.Transport)
        assert Path(conn.transport_options["control_folder"]).is_relative_to(tmp_path)


@pytest.mark.parametrize("task", ["payouts.apply_callbacks", "outbox.relay"])
def test_callbacks_and_the_relay_that_queues_them_travel_on_the_callbacks_queue(task: str) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6379/0", upah_queue="upah-routes")
    app = Celery("upah-test")
    app.conf.update(bootstrap.celery_config(settings))
    assert app.amqp.router.route({}, task)["queue"].name == "upah-routes.callbacks"


def test_a_run_s_dispatch_batches_travel_on_the_main_queue() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6379/0", upah_queue="upah-routes")
    app = Celery("upah-test")
    app.conf.update(bootstrap.celery_config(settings))
    assert app.amqp.router.route({}, "payouts.dispatch_batch")["queue"].name == "upah-routes"
