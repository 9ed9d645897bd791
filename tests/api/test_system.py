"""Liveness, metrics and the published schema."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import Actor, confirm, deliver, post_order, register


def test_healthz_answers_ok(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_metrics_count_requests_and_domain_events(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    confirm(client, buyer, deliver(client, buyer, order["id"], worker["id"], 5)["id"], accepted=5)
    body = client.get("/metrics").text
    assert "upah_deliveries_confirmed_total 1.0" in body
    assert "upah_pieces_accepted_total 5.0" in body
    assert 'upah_http_requests_total{method="POST",route="/v1/orders",status="201"}' in body


def test_the_openapi_schema_documents_every_contract_path(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/organizations",
        "/v1/organizations/{organization_id}/deposits",
        "/v1/homeworkers",
        "/v1/orders",
        "/v1/orders/{order_id}/deliveries",
        "/v1/deliveries/{delivery_id}/confirm",
        "/v1/homeworkers/{homeworker_id}/payslip",
        "/healthz",
    ):
        assert path in paths


def test_metrics_count_refusals_the_app_gave_by_route_template_but_not_bodies_refused_at_the_door(
    client: TestClient, buyer: Actor
) -> None:
    refused = client.post(
        "/v1/deliveries/999999999/confirm", json={"accepted": 1, "rejected": 0}, headers=buyer.headers
    )
    assert refused.status_code == 404
    too_big = client.post("/v1/orders", content=b"x" * (1024 * 1024 + 1), headers=buyer.headers)
    assert too_big.status_code == 413
    body = client.get("/metrics").text
    route = "/v1/deliveries/{delivery_id}/confirm"
    assert f'upah_http_requests_total{{method="POST",route="{route}",status="404"}} 1.0' in body
    assert f'upah_http_request_seconds_count{{route="{route}"}} 1.0' in body
    assert 'status="413"' not in body


def test_the_openapi_schema_declares_the_bearer_api_key_on_operations_that_need_one(
    client: TestClient,
) -> None:
    schema = client.get("/openapi.json").json()
    [(name, scheme)] = schema["components"]["securitySchemes"].items()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    paths = schema["paths"]
    assert paths["/v1/orders"]["post"]["security"] == [{name: []}]
    assert paths["/v1/payouts/{payout_id}"]["get"]["security"] == [{name: []}]
    for unauthenticated in ("/v1/providers/{provider}/callbacks", "/v1/gateway/ussd"):
        assert "security" not in paths[unauthenticated]["post"]  # signed by the provider or gateway
    assert "security" not in paths["/healthz"]["get"]


def test_every_post_in_the_openapi_schema_takes_an_idempotency_key(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    posts = [operations["post"] for operations in paths.values() if "post" in operations]
    assert len(posts) > 15
    for post in posts:
        [header] = [p for p in post["parameters"] if p["name"] == "Idempotency-Key"]
        assert (header["in"], header["required"]) == ("header", False)
