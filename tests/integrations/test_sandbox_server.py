"""The sandbox provider, in process: idempotency, e-money limits, faults, callbacks, record."""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Mount

from integrations import signatures
from integrations.sandbox_server import (
    FaultPlan,
    PayoutInstruction,
    SandboxStore,
    create_sandbox_app,
    create_sandbox_app_from_env,
    sandbox_service,
)
from tests.callback_inbox import CallbackInbox

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient; plain httpx works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SECRET = b"sandbox-callback-secret"
WALLET = "+6281234567001"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_client(tmp_path, clock):
    clients = []

    def make(faults=None, *, send_callbacks=True, name="sandbox.db"):
        app = create_sandbox_app(
            store_path=tmp_path / name,
            callback_secret=SECRET,
            faults=faults or FaultPlan(),
            clock=clock,
            send_callbacks=send_callbacks,
            callback_retry_delays=(0.01, 0.01, 0.01),
        )
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client(send_callbacks=False)


def payout_body(**overrides):
    body = {
        "reference": "payout-001",
        "amount": 125_000,
        "currency": "IDR",
        "channel": "ID_DANA",
        "account": WALLET,
        "account_holder_name": "Siti Aminah",
        "description": "Upah borongan",
    }
    body.update(overrides)
    return body


def post_payout(client, key="key-001", **overrides):
    return client.post("/v1/payouts", json=payout_body(**overrides), headers={"Idempotency-Key": key})


def service_of(client):
    return sandbox_service(client.app)


# ---------------------------------------------------------------- payouts and idempotency


def test_new_payout_is_accepted_with_an_id(client):
    response = post_payout(client)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "accepted"
    assert body["reference"] == "payout-001"
    assert body["idempotency_key"] == "key-001"
    assert body["id"].startswith("po_")


def test_payout_outcome_is_decided_at_receipt_and_shown_by_status(client):
    payout_id = post_payout(client).json()["id"]
    payout = client.get(f"/v1/payouts/{payout_id}").json()
    assert payout["status"] == "succeeded"
    assert payout["paid"] is True
    assert payout["amount"] == 125_000
    assert payout["settled_at"] == "2025-03-10T08:00:00Z"


def test_successful_payout_credits_the_wallet(client):
    post_payout(client)
    assert client.get(f"/v1/wallets/{WALLET}").json()["balance"] == 125_000


def test_payout_without_idempotency_key_is_refused_and_not_recorded(client):
    response = client.post("/v1/payouts", json=payout_body())
    assert response.status_code == 400
    assert response.json()["error_code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert client.get("/v1/payouts").json()["summary"]["count"] == 0


def test_same_key_and_body_returns_the_first_response(client):
    first = post_payout(client).json()
    second = post_payout(client).json()
    assert second == first


def test_same_key_and_body_is_counted_but_paid_once(client):
    post_payout(client)
    post_payout(client)
    post_payout(client)
    payouts = client.get("/v1/payouts").json()["payouts"]
    assert [(p["received_count"], p["paid"]) for p in payouts] == [(3, True)]
    assert client.get(f"/v1/wallets/{WALLET}").json()["balance"] == 125_000


def test_same_key_with_a_different_body_is_an_idempotency_conflict(client):
    post_payout(client)
    response = post_payout(client, amount=999_000)
    assert response.status_code == 409
    assert response.json()["error_code"] == "IDEMPOTENCY_CONFLICT"


def test_idempotency_conflict_leaves_the_original_untouched(client):
    post_payout(client)
    post_payout(client, amount=999_000)
    payout = client.get("/v1/payouts", params={"idempotency_key": "key-001"}).json()
    assert (payout["amount"], payout["received_count"]) == (125_000, 1)


def test_concurrent_repeats_of_one_key_pay_exactly_once(client):
    service = service_of(client)
    instruction = PayoutInstruction(
        idempotency_key="key-race",
        reference="payout-race",
        amount=50_000,
        currency="IDR",
        channel="ID_OVO",
        account=WALLET,
        account_holder_name="Siti Aminah",
        description="",
        callback_url=None,
    )
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(service.receive(instruction))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1
    summary = client.get("/v1/payouts").json()["summary"]
    assert (summary["count"], summary["received_total"], summary["paid_amount"]) == (1, 8, 50_000)


def test_float_amount_is_refused(client):
    response = post_payout(client, amount=125000.0)
    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"


def test_amount_as_digit_string_is_refused(client):
    assert post_payout(client, amount="125000").status_code == 400


def test_non_idr_currency_is_refused(client):
    response = post_payout(client, currency="KES")
    assert response.json()["error_code"] == "UNSUPPORTED_CURRENCY"


def test_unknown_channel_is_refused(client):
    response = post_payout(client, channel="ID_BCA")
    assert response.json()["error_code"] == "CHANNEL_NOT_SUPPORTED"


def test_invalid_json_is_refused(client):
    response = client.post("/v1/payouts", content=b"{not json", headers={"Idempotency-Key": "key-001"})
    assert response.status_code == 400


def test_record_survives_a_restart(make_client):
    first = make_client(name="durable.db")
    original = post_payout(first).json()
    first.__exit__(None, None, None)
    second = make_client(name="durable.db")
    assert post_payout(second).json() == original
    assert second.get(f"/v1/payouts/{original['id']}").json()["received_count"] == 2


# ---------------------------------------------------------------- wallets and e-money limits


def test_unknown_wallet_is_created_unregistered(client):
    post_payout(client)
    wallet = client.get(f"/v1/wallets/{WALLET}").json()
    assert (wallet["registered"], wallet["limit"]) == (False, 2_000_000)


def test_unregistered_wallet_payout_over_two_million_fails_limit_exceeded(client):
    payout_id = post_payout(client, amount=2_000_001).json()["id"]
    payout = client.get(f"/v1/payouts/{payout_id}").json()
    assert (payout["status"], payout["failure_code"], payout["paid"]) == (
        "failed",
        "LIMIT_EXCEEDED",
        False,
    )


def test_unregistered_wallet_may_be_filled_exactly_to_its_limit(client):
    post_payout(client, "key-1", amount=1_500_000)
    payout_id = post_payout(client, "key-2", reference="payout-002", amount=500_000).json()["id"]
    assert client.get(f"/v1/payouts/{payout_id}").json()["status"] == "succeeded"


def test_failed_payout_does_not_credit_the_wallet(client):
    post_payout(client, "key-1", amount=1_900_000)
    post_payout(client, "key-2", reference="payout-002", amount=200_000)
    assert client.get(f"/v1/wallets/{WALLET}").json()["balance"] == 1_900_000


def test_registered_wallet_may_hold_up_to_twenty_million(client):
    client.post("/v1/wallets", json={"account": WALLET, "holder_name": "Siti Aminah", "registered": True})
    payout_id = post_payout(client, amount=20_000_000).json()["id"]
    assert client.get(f"/v1/payouts/{payout_id}").json()["status"] == "succeeded"


def test_registered_wallet_over_twenty_million_fails_limit_exceeded(client):
    client.post(
        "/v1/wallets",
        json={"account": WALLET, "holder_name": "Siti Aminah", "registered": True, "balance": 19_000_000},
    )
    payout_id = post_payout(client, amount=1_000_001).json()["id"]
    assert client.get(f"/v1/payouts/{payout_id}").json()["failure_code"] == "LIMIT_EXCEEDED"


def test_registered_wallet_monthly_incoming_over_forty_million_fails(client):
    client.post("/v1/wallets", json={"account": WALLET, "holder_name": "Siti Aminah", "registered": True})
    for n in range(4):
        post_payout(client, f"key-{n}", reference=f"p-{n}", amount=10_000_000)
        client.post(
            "/v1/wallets",
            json={"account": WALLET, "holder_name": "Siti Aminah", "registered": True, "balance": 0},
        )
    payout_id = post_payout(client, "key-5", reference="p-5", amount=1).json()["id"]
    assert client.get(f"/v1/payouts/{payout_id}").json()["failure_code"] == "LIMIT_EXCEEDED"


def test_monthly_incoming_limit_starts_afresh_next_month(client, clock):
    client.post("/v1/wallets", json={"account": WALLET, "holder_name": "Siti Aminah", "registered": True})
    for n in range(4):
        post_payout(client, f"key-{n}", reference=f"p-{n}", amount=10_000_000)
        client.post(
            "/v1/wallets",
            json={"account": WALLET, "holder_name": "Siti Aminah", "registered": True, "balance": 0},
        )
    clock.advance(days=31)
    payout_id = post_payout(client, "key-5", reference="p-5", amount=1).json()["id"]
    assert client.get(f"/v1/payouts/{payout_id}").json()["status"] == "succeeded"


def test_upgraded_wallet_accepts_the_payout_that_failed_before(client):
    client.post(
        "/v1/wallets",
        json={"account": WALLET, "holder_name": "Siti Aminah", "registered": False, "balance": 1_950_000},
    )
    failed = post_payout(client, "key-try-1", amount=125_000).json()["id"]
    client.post("/v1/wallets", json={"account": WALLET, "holder_name": "Siti Aminah", "registered": True})
    retried = post_payout(client, "key-try-2", amount=125_000).json()["id"]
    statuses = [client.get(f"/v1/payouts/{pid}").json()["status"] for pid in (failed, retried)]
    assert statuses == ["failed", "succeeded"]


def test_account_that_is_not_an_indonesian_e164_number_fails_invalid_account(client):
    payout_id = post_payout(client, account="081234567001").json()["id"]
    assert client.get(f"/v1/payouts/{payout_id}").json()["failure_code"] == "INVALID_ACCOUNT"


def test_account_marked_invalid_by_the_fault_plan_fails_invalid_account(make_client):
    client = make_client(FaultPlan(invalid_accounts=frozenset({WALLET})), send_callbacks=False)
    payout_id = post_payout(client).json()["id"]
    assert client.get(f"/v1/payouts/{payout_id}").json()["failure_code"] == "INVALID_ACCOUNT"


def test_holder_name_differing_from_the_known_wallet_fails_name_mismatch(client):
    client.post("/v1/wallets", json={"account": WALLET, "holder_name": "Siti Aminah", "registered": False})
    payout_id = post_payout(client, account_holder_name="Sri Wahyuni").json()["id"]
    assert client.get(f"/v1/payouts/{payout_id}").json()["failure_code"] == "NAME_MISMATCH"


def test_holder_name_match_ignores_case_and_spacing(client):
    client.post("/v1/wallets", json={"account": WALLET, "holder_name": "Siti Aminah", "registered": False})
    payout_id = post_payout(client, account_holder_name="  SITI   aminah ").json()["id"]
    assert client.get(f"/v1/payouts/{payout_id}").json()["status"] == "succeeded"


def test_payout_larger_than_the_provider_float_fails_insufficient_balance(client):
    client.put("/v1/float", json={"balance": 100_000})
    payout_id = post_payout(client, amount=100_001).json()["id"]
    assert client.get(f"/v1/payouts/{payout_id}").json()["failure_code"] == "INSUFFICIENT_BALANCE"


def test_successful_payout_draws_down_the_provider_float(client):
    client.put("/v1/float", json={"balance": 1_000_000})
    post_payout(client, amount=125_000)
    assert client.get("/v1/float").json() == {"balance": 875_000}


def test_unknown_wallet_is_404(client):
    response = client.get("/v1/wallets/%2B6289999999999")
    assert (response.status_code, response.json()["error_code"]) == (404, "NOT_FOUND")


def test_registering_a_wallet_with_a_local_number_is_refused(client):
    response = client.post(
        "/v1/wallets", json={"account": "0812345", "holder_name": "Siti", "registered": True}
    )
    assert response.json()["error_code"] == "INVALID_ACCOUNT"


def test_account_check_of_a_known_wallet_returns_its_holder_name(client):
    client.post("/v1/wallets", json={"account": WALLET, "holder_name": "Siti Aminah", "registered": False})
    check = client.post(
        "/v1/accounts/validate",
        json={"channel": "ID_DANA", "account": WALLET, "holder_name": "siti aminah"},
    ).json()
    assert check == {"valid": True, "holder_name": "Siti Aminah", "reason": None}


def test_account_check_reports_a_name_mismatch(client):
    client.post("/v1/wallets", json={"account": WALLET, "holder_name": "Siti Aminah", "registered": False})
    check = client.post(
        "/v1/accounts/validate",
        json={"channel": "ID_DANA", "account": WALLET, "holder_name": "Sri Wahyuni"},
    ).json()
    assert (check["valid"], check["reason"]) == (False, "NAME_MISMATCH")


def test_account_check_reports_an_invalid_account(client):
    check = client.post(
        "/v1/accounts/validate",
        json={"channel": "ID_DANA", "account": "0812", "holder_name": "Siti"},
    ).json()
    assert check == {"valid": False, "holder_name": None, "reason": "INVALID_ACCOUNT"}


# ---------------------------------------------------------------- status, listing, statement


def test_status_by_idempotency_key_finds_the_payout(client):
    payout_id = post_payout(client).json()["id"]
    found = client.get("/v1/payouts", params={"idempotency_key": "key-001"}).json()
    assert found["id"] == payout_id


def test_status_of_a_key_never_received_is_404_not_found(client):
    response = client.get("/v1/payouts", params={"idempotency_key": "never-sent"})
    assert (response.status_code, response.json()) == (
        404,
        {"error_code": "NOT_FOUND", "message": "no payout was received under this identifier"},
    )


def test_status_of_an_unknown_id_is_404(client):
    assert client.get("/v1/payouts/po_nope").status_code == 404


def test_listing_flags_a_reference_paid_under_two_keys(client):
    post_payout(client, "key-a", amount=10_000)
    post_payout(client, "key-b", amount=10_000)
    summary = client.get("/v1/payouts").json()["summary"]
    assert summary["references_paid_more_than_once"] == ["payout-001"]


def test_listing_of_clean_run_has_no_reference_paid_twice(client):
    post_payout(client, "key-a", reference="p-a")
    post_payout(client, "key-a", reference="p-a")
    post_payout(client, "key-b", reference="p-b")
    summary = client.get("/v1/payouts").json()["summary"]
    assert (summary["count"], summary["keys_received_more_than_once"]) == (2, 1)
    assert summary["references_paid_more_than_once"] == []


def test_statement_csv_has_exactly_the_contract_columns(client):
    post_payout(client)
    text = client.get("/v1/statement.csv").text
    assert text.splitlines()[0] == "reference,idempotency_key,account,amount,currency,status,settled_at"


def test_statement_csv_lists_each_instruction_in_the_minor_unit(client):
    post_payout(client, "key-1", reference="p-1", amount=125_000)
    post_payout(client, "key-2", reference="p-2", amount=2_500_000)
    rows = list(csv.DictReader(io.StringIO(client.get("/v1/statement.csv").text)))
    assert [(r["reference"], r["amount"], r["status"]) for r in rows] == [
        ("p-1", "125000", "succeeded"),
        ("p-2", "2500000", "failed"),
    ]


def test_statement_is_served_as_csv(client):
    response = client.get("/v1/statement.csv")
    assert response.headers["content-type"].startswith("text/csv")


# ---------------------------------------------------------------- reversals


def test_reversal_marks_the_payout_reversed_and_debits_the_wallet(client):
    payout_id = post_payout(client).json()["id"]
    reversed_payout = client.post(f"/v1/payouts/{payout_id}/reverse").json()
    assert (reversed_payout["status"], reversed_payout["paid"]) == ("reversed", False)
    assert client.get(f"/v1/wallets/{WALLET}").json()["balance"] == 0


def test_reversed_payout_is_listed_as_paid_once_and_no_longer_paid(client):
    payout_id = post_payout(client).json()["id"]
    client.post(f"/v1/payouts/{payout_id}/reverse")
    [listed] = client.get("/v1/payouts").json()["payouts"]
    assert (listed["paid"], listed["ever_paid"]) == (False, True)


def test_only_a_succeeded_payout_can_be_reversed(client):
    payout_id = post_payout(client, amount=3_000_000).json()["id"]
    response = client.post(f"/v1/payouts/{payout_id}/reverse")
    assert (response.status_code, response.json()["error_code"]) == (409, "INVALID_STATE")


def test_reversal_shows_in_the_statement(client):
    payout_id = post_payout(client).json()["id"]
    client.post(f"/v1/payouts/{payout_id}/reverse")
    rows = list(csv.DictReader(io.StringIO(client.get("/v1/statement.csv").text)))
    assert rows[0]["status"] == "reversed"


# ---------------------------------------------------------------- faults


def test_rate_limit_fault_answers_429_with_retry_after_and_records_nothing(make_client):
    client = make_client(FaultPlan(rate_limit=1.0), send_callbacks=False)
    response = post_payout(client)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "1")
    assert client.get("/v1/payouts").json()["summary"]["count"] == 0


def test_5xx_fault_answers_503_and_records_nothing(make_client):
    client = make_client(FaultPlan(error_5xx=1.0), send_callbacks=False)
    assert post_payout(client).status_code == 503
    assert client.get("/v1/payouts").json()["summary"]["count"] == 0


def test_5xx_paid_fault_answers_503_after_paying(make_client):
    client = make_client(FaultPlan(error_5xx_paid=1.0), send_callbacks=False)
    assert post_payout(client).status_code == 503
    assert client.get("/v1/payouts").json()["summary"]["paid"] == 1


def test_timeout_unpaid_fault_stalls_then_answers_504_without_recording(make_client):
    client = make_client(FaultPlan(timeout_unpaid=1.0, stall_seconds=0.01), send_callbacks=False)
    assert post_payout(client).status_code == 504
    assert client.get("/v1/payouts").json()["summary"]["count"] == 0


def test_timeout_paid_fault_pays_before_stalling(make_client):
    client = make_client(FaultPlan(timeout_paid=1.0, stall_seconds=0.01), send_callbacks=False)
    assert post_payout(client).status_code == 200
    assert client.get("/v1/payouts").json()["summary"]["paid"] == 1


def test_faults_drawn_from_the_same_seed_repeat_exactly(make_client):
    plan = FaultPlan(rate_limit=0.3, error_5xx=0.3, seed=42)
    runs = []
    for name in ("one.db", "two.db"):
        client = make_client(plan, send_callbacks=False, name=name)
        runs.append([post_payout(client, f"k-{n}", reference=f"p-{n}").status_code for n in range(30)])
    assert runs[0] == runs[1]
    assert {200, 429, 503} <= set(runs[0])


def test_put_faults_replaces_the_plan(client):
    response = client.put("/v1/faults", json={"rate_limit": 1.0, "seed": 7})
    assert response.status_code == 200
    assert client.get("/v1/faults").json()["rate_limit"] == 1.0
    assert post_payout(client).status_code == 429


def test_put_faults_refuses_unknown_settings(client):
    response = client.put("/v1/faults", json={"meteor_strike": 0.5})
    assert (response.status_code, response.json()["error_code"]) == (400, "VALIDATION_ERROR")


def test_fault_plan_parses_the_environment_format():
    plan = FaultPlan.from_env(
        {
            "UPAH_SANDBOX_FAULTS": "timeout_paid=0.05,timeout_unpaid=0.05,error_5xx=0.05,"
            "rate_limit=0.05,duplicate_callback=0.1,out_of_order_callback=0.05,seed=42,"
            "invalid_accounts=+628111|+628222"
        }
    )
    assert (plan.timeout_paid, plan.duplicate_callback, plan.seed) == (0.05, 0.1, 42)
    assert plan.invalid_accounts == frozenset({"+628111", "+628222"})


def test_fault_plan_without_environment_variable_has_no_faults():
    assert FaultPlan.from_env({}) == FaultPlan()


def test_fault_plan_refuses_a_probability_above_one():
    with pytest.raises(ValueError, match="probability"):
        FaultPlan.parse("rate_limit=1.5")


def test_fault_plan_refuses_request_faults_adding_up_above_one():
    with pytest.raises(ValueError, match="add up"):
        FaultPlan.parse("rate_limit=0.6,error_5xx=0.6")


# ---------------------------------------------------------------- callbacks


@pytest.fixture
def inbox():
    with CallbackInbox() as box:
        yield box


def test_callback_carries_the_outcome(make_client, inbox):
    client = make_client()
    payout_id = post_payout(client, callback_url=inbox.url).json()["id"]
    assert service_of(client).wait_idle()
    [event] = inbox.events()
    assert {
        k: event[k]
        for k in ("id", "reference", "idempotency_key", "status", "amount", "currency", "failure_code")
    } == {
        "id": payout_id,
        "reference": "payout-001",
        "idempotency_key": "key-001",
        "status": "succeeded",
        "amount": 125_000,
        "currency": "IDR",
        "failure_code": None,
    }


def test_callback_is_signed_with_the_shared_secret(make_client, inbox, clock):
    client = make_client()
    post_payout(client, callback_url=inbox.url)
    assert service_of(client).wait_idle()
    [(headers, body)] = inbox.received
    now = int(clock().timestamp())
    assert signatures.verify(SECRET, headers["X-Sandbox-Signature"], body, now=now) == now


def test_failed_payout_callback_carries_the_failure_code(make_client, inbox):
    client = make_client()
    post_payout(client, amount=5_000_000, callback_url=inbox.url)
    assert service_of(client).wait_idle()
    [event] = inbox.events()
    assert (event["status"], event["failure_code"]) == ("failed", "LIMIT_EXCEEDED")


def test_replayed_request_sends_no_second_callback(make_client, inbox):
    client = make_client()
    post_payout(client, callback_url=inbox.url)
    post_payout(client, callback_url=inbox.url)
    assert service_of(client).wait_idle()
    assert len(inbox.received) == 1


def test_callback_is_retried_until_delivered(make_client, inbox):
    inbox.statuses = [500, 503]
    client = make_client()
    post_payout(client, callback_url=inbox.url)
    assert service_of(client).wait_idle()
    assert len(inbox.received) == 3
    [record] = client.get("/v1/callbacks").json()["callbacks"]
    assert (record["attempts"], record["deliveries"]) == (3, 1)


def test_callback_delivery_gives_up_after_the_last_retry(make_client, inbox):
    inbox.statuses = [500] * 10
    client = make_client()
    post_payout(client, callback_url=inbox.url)
    assert service_of(client).wait_idle()
    [record] = client.get("/v1/callbacks").json()["callbacks"]
    assert (record["attempts"], record["delivered_at"], record["last_error"]) == (
        4,
        None,
        "HTTP 500",
    )


def test_callback_to_a_receiver_that_is_down_is_retried_and_the_failure_recorded(make_client):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/callbacks"
    client = make_client()
    post_payout(client, callback_url=down)
    assert service_of(client).wait_idle()
    [record] = client.get("/v1/callbacks").json()["callbacks"]
    assert (record["attempts"], record["delivered_at"], record["last_error"]) == (
        4,
        None,
        "NewConnectionError",
    )


def test_callbacks_reach_a_receiver_that_closes_each_connection(make_client):
    with CallbackInbox(close_after_each=True) as inbox:
        client = make_client()
        for n in range(3):
            post_payout(client, key=f"key-{n}", reference=f"payout-{n}", callback_url=inbox.url)
            assert service_of(client).wait_idle()
    assert sorted(e["idempotency_key"] for e in inbox.events()) == ["key-0", "key-1", "key-2"]
    records = client.get("/v1/callbacks").json()["callbacks"]
    assert [r["deliveries"] for r in records] == [1, 1, 1]


def test_callbacks_take_no_proxy_from_the_environment(make_client, inbox, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = make_client()
    post_payout(client, callback_url=inbox.url)
    assert service_of(client).wait_idle()
    assert len(inbox.received) == 1


def test_only_the_delivery_log_is_committed_without_waiting_for_the_disk(tmp_path):
    store = SandboxStore(tmp_path / "s.db")
    full, normal = 2, 1
    with store.transaction(durable=False) as db:
        assert db.execute("PRAGMA synchronous").fetchone()[0] == normal
    with store.transaction() as db:
        assert db.execute("PRAGMA synchronous").fetchone()[0] == full
    store.close()


def test_delivery_attempts_leave_the_record_durable(make_client, inbox):
    client = make_client()
    post_payout(client, callback_url=inbox.url)
    assert service_of(client).wait_idle()
    [record] = client.get("/v1/callbacks").json()["callbacks"]
    assert record["deliveries"] == 1
    assert service_of(client).store.read("PRAGMA synchronous")[0][0] == 2  # FULL


def test_duplicate_callback_fault_sends_the_same_event_twice(make_client, inbox):
    client = make_client(FaultPlan(duplicate_callback=1.0))
    post_payout(client, callback_url=inbox.url)
    assert service_of(client).wait_idle()
    first, second = inbox.events()
    assert first == second


def test_out_of_order_fault_sends_a_stale_accepted_event_after_the_final_one(make_client, inbox):
    client = make_client(FaultPlan(out_of_order_callback=1.0))
    post_payout(client, callback_url=inbox.url)
    assert service_of(client).wait_idle()
    final, stale = inbox.events()
    assert (final["status"], stale["status"]) == ("succeeded", "accepted")
    assert final["event_id"] != stale["event_id"]


def test_reverse_fault_reverses_the_payout_later_and_says_so(make_client, inbox):
    client = make_client(FaultPlan(reverse=1.0, reverse_after_seconds=0.0))
    payout_id = post_payout(client, callback_url=inbox.url).json()["id"]
    assert service_of(client).wait_idle()
    assert [e["status"] for e in inbox.events()] == ["succeeded", "reversed"]
    assert client.get(f"/v1/payouts/{payout_id}").json()["status"] == "reversed"


def test_manual_reversal_sends_a_reversed_callback(make_client, inbox):
    client = make_client()
    payout_id = post_payout(client, callback_url=inbox.url).json()["id"]
    client.post(f"/v1/payouts/{payout_id}/reverse")
    assert service_of(client).wait_idle()
    assert [e["status"] for e in inbox.events()] == ["succeeded", "reversed"]


def test_callbacks_can_be_switched_off(make_client, inbox):
    client = make_client(send_callbacks=False)
    post_payout(client, callback_url=inbox.url)
    assert service_of(client).wait_idle()
    assert inbox.received == []


def test_callback_url_must_be_http(client):
    assert post_payout(client, callback_url="ftp://upah.test/cb").status_code == 400


# ---------------------------------------------------------------- mounting and configuration


def test_sandbox_can_be_mounted_under_sandbox_in_another_app(tmp_path):
    sandbox = create_sandbox_app(store_path=tmp_path / "m.db", callback_secret=SECRET, send_callbacks=False)
    outer = Starlette(routes=[Mount("/sandbox", app=sandbox)])
    with TestClient(outer) as client:
        response = client.post("/sandbox/v1/payouts", json=payout_body(), headers={"Idempotency-Key": "k"})
        assert response.json()["status"] == "accepted"
    sandbox_service(sandbox).close()


def test_app_from_environment_needs_a_callback_secret(tmp_path):
    with pytest.raises(ValueError, match="UPAH_SANDBOX_CALLBACK_SECRET"):
        create_sandbox_app_from_env({"UPAH_SANDBOX_STORE": str(tmp_path / "e.db")})


def test_app_from_environment_reads_store_secret_and_faults(tmp_path):
    app = create_sandbox_app_from_env(
        {
            "UPAH_SANDBOX_STORE": str(tmp_path / "e.db"),
            "UPAH_SANDBOX_CALLBACK_SECRET": "s3cret",
            "UPAH_SANDBOX_FAULTS": "rate_limit=0.25,seed=3",
        }
    )
    try:
        assert sandbox_service(app).faults == FaultPlan(rate_limit=0.25, seed=3)
    finally:
        sandbox_service(app).close()
    assert (tmp_path / "e.db").exists()


def test_sandbox_refuses_an_empty_callback_secret(tmp_path):
    with pytest.raises(ValueError, match="secret"):
        create_sandbox_app(store_path=tmp_path / "x.db", callback_secret=b"")
