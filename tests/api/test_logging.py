"""Structured logs: one JSON line per request, with its id and route template, and never a
phone number, a name or an API key (the real app on PostgreSQL; logs captured as emitted)."""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from api.logging import REQUEST_ID, JsonFormatter, configure, redact
from tests.api.conftest import Actor, register


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(record)) for record in caplog.records]


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [line for line in lines(caplog) if line.get("event") == "http_request"]


def test_each_request_is_one_json_line_with_its_id_route_template_status_and_duration(
    client: TestClient, buyer: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    worker = register(client, buyer)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="upah.requests")
    r = client.get(f"/v1/homeworkers/{worker['id']}?from=2026-01-01", headers=buyer.headers)
    [line] = request_lines(caplog)
    assert line["method"] == "GET"
    assert line["route"] == "/v1/homeworkers/{homeworker_id}"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["request_id"] == r.headers["x-request-id"]
    assert line["level"] == "info" and line["logger"] == "upah.requests"


def test_a_well_formed_incoming_request_id_is_kept_and_anything_else_replaced(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="upah.requests")
    kept = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a9c21-0001"})
    assert kept.headers["x-request-id"] == "lb-7f3a9c21-0001"
    replaced = client.get("/healthz", headers={"X-Request-ID": "+6281234567890 <script>"})
    assert replaced.headers["x-request-id"] != "+6281234567890 <script>"
    assert len(replaced.headers["x-request-id"]) == 32
    assert "6281234567890" not in json.dumps(request_lines(caplog))


def test_no_phone_number_name_or_key_reaches_the_logs(
    client: TestClient, buyer: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    worker = register(client, buyer, name="Sri Wahyuningsih", phone="081298765432")
    client.get(f"/v1/homeworkers/{worker['id']}", headers=buyer.headers)
    client.get("/v1/homeworkers/999999?phone=081298765432", headers=buyer.headers)
    client.get("/login")
    client.post("/login", data={"key": buyer.key, "csrf": client.cookies.get("upah_csrf") or ""})
    client.get("/deliveries")
    client.post(
        "/v1/gateway/sms", data={"from": "+6281298765432", "to": "1234", "text": "SALDO Sri Wahyuningsih"}
    )
    written = "\n".join(json.dumps(line) for line in lines(caplog))
    assert request_lines(caplog), "requests were logged"
    for secret in ("81298765432", "Sri Wahyuningsih", buyer.key, buyer.key.split("_", 2)[2], "SALDO"):
        assert secret not in written, secret
    routes = {line["route"] for line in request_lines(caplog)}
    assert "/v1/homeworkers/{homeworker_id}" in routes and "/login" in routes


def test_the_formatter_masks_phone_numbers_and_keys_that_a_careless_call_logs() -> None:
    assert redact("sent to +62 812-3456-7890 ok") == "sent to [phone] ok"
    assert redact("from 081234567890.") == "from [phone]."
    assert redact("via 6281234567890") == "via [phone]"
    assert redact("key upah_0123456789abcdef_Zx-9_q") == "key [api-key]"
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer [redacted]"
    assert redact("paid Rp 125000000 in run 42") == "paid Rp 125000000 in run 42"


def test_lines_logged_during_a_request_carry_its_id_and_drop_unknown_fields() -> None:
    record = logging.LogRecord("payments.x", logging.WARNING, __file__, 1, "payout %s stuck", (7,), None)
    record.phone = "+6281234567890"
    token = REQUEST_ID.set("req-12345678")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["request_id"] == "req-12345678" and line["message"] == "payout 7 stuck"
    assert "phone" not in line and "6281234567890" not in json.dumps(line)


def test_exceptions_are_logged_by_type_with_their_text_masked() -> None:
    try:
        raise ValueError("bad phone +6281234567890")
    except ValueError:
        record = logging.LogRecord("api.errors", logging.ERROR, __file__, 1, "unhandled", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["exc_type"] == "ValueError"
    assert "6281234567890" not in line["exception"] and "[phone]" in line["exception"]


def test_a_database_error_is_logged_without_the_values_it_was_given(engine: Engine) -> None:
    marker = "Siti Rahayu, Desa Wonorejo"
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO organizations (name, kind, created_at) VALUES (:name, :kind, :now)"),
                {"name": marker, "kind": "not-a-kind", "now": datetime.now(UTC)},
            )
    except DBAPIError:
        record = logging.LogRecord("api.errors", logging.ERROR, __file__, 1, "unhandled", (), sys.exc_info())
    else:
        pytest.fail("the database took an organisation of no known kind")
    line = json.dumps(json.loads(JsonFormatter().format(record)))
    assert "Siti" not in line and "Wonorejo" not in line
    assert "organizations" in line  # the statement itself is still there to debug with


def test_configure_writes_json_and_silences_uvicorns_raw_access_log() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        configure(stream=stream)
        logging.getLogger("upah.test").info("hello %s", "world")
        logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /v1/x?phone=0812 HTTP/1.1" 200')
        [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
        assert line["message"] == "hello world" and line["logger"] == "upah.test"
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("uvicorn.access").disabled = False
        logging.getLogger("uvicorn.access").propagate = True
