"""Schemathesis against the real app's /openapi.json (in-process ASGI, on PostgreSQL), signed in
with a buyer's key: no 5xx, every response as the schema declares it, and nothing of another
organisation in any answer. A second buyer is seeded with distinctive names and references;
none of them, and none of its objects behind any id, may reach the first buyer."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from payments import parties
from payments.tables import PayoutRow, PayoutRunRow
from tests.api.conftest import (
    Actor,
    confirm,
    deliver,
    deposit,
    make_key,
    new_org,
    post_order,
    register,
    settings_for,
)
from tests.conftest import create_pg_database, drop_pg_database
from upah.db import make_engine, make_session_factory
from upah.migrate import upgrade

EXAMPLES_PER_OPERATION = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Organisation:
    """What one organisation owns: its key, the words only it uses, and its objects' ids."""

    actor: Actor
    words: set[str] = field(default_factory=set)
    ids: dict[str, set[int]] = field(default_factory=dict)


@dataclass
class World:
    app: FastAPI
    buyer: Organisation
    other: Organisation


def _seed(client: TestClient, factory: sessionmaker[Session], admin: Actor, tag: str) -> Organisation:
    """A buyer with a homeworker, an order, a confirmed and an awaiting delivery, and a payout."""
    name = f"Rahasia {tag} Sdn"
    org = new_org(client, admin, "buyer", name=name)
    deposit(client, admin, org, 10_000_000)
    owner = Organisation(make_key(factory, parties.Role.BUYER, org))
    worker_name = f"Ibu {tag}"
    worker = register(client, owner.actor, name=worker_name)
    order = post_order(client, owner.actor, worker["id"], reference=f"PO-{tag}")
    done = deliver(client, owner.actor, order["id"], worker["id"], 40)
    confirm(client, owner.actor, done["id"], 38, 2, reason=f"alasan {tag}")
    waiting = deliver(client, owner.actor, order["id"], worker["id"], 5)
    run = client.post("/v1/payout-runs", json={}, headers=owner.actor.headers)
    assert run.status_code == 201, run.text
    with factory() as s:
        payouts = s.execute(select(PayoutRow.id, PayoutRow.reference).where(PayoutRow.buyer_id == org)).all()
        runs = s.execute(select(PayoutRunRow.id).where(PayoutRunRow.buyer_id == org)).scalars().all()
    owner.words |= {name, worker_name, f"PO-{tag}", f"alasan {tag}", *(p.reference for p in payouts)}
    owner.ids = {
        "organization_id": {org},
        "homeworker_id": {worker["id"]},
        "order_id": {order["id"]},
        "delivery_id": {done["id"], waiting["id"]},
        "payout_id": {p.id for p in payouts},
        "run_id": set(runs),
    }
    return owner


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = create_pg_database("upah_fuzz")
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    app = create_app(settings_for(url, Path(tmp_path_factory.mktemp("fuzz"))))
    try:
        with TestClient(app) as client:
            admin = make_key(factory, parties.Role.ADMIN)
            other = _seed(client, factory, admin, f"LAIN{uuid.uuid4().hex[:6].upper()}")
            buyer = _seed(client, factory, admin, f"KAMI{uuid.uuid4().hex[:6].upper()}")
        yield World(app, buyer, other)
    finally:
        asgi.shutdown_lifespans()
        engine.dispose()
        drop_pg_database(url)


@pytest.fixture(scope="module")
def api_schema(world: World) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", world.app)


def leaks(world: World, case: Any, status: int, text: str) -> list[str]:
    """Another organisation's words in the answer, or a success on one of its objects' ids."""
    found = [word for word in world.other.words if word in text]
    if status < 300:
        for name, value in (case.path_parameters or {}).items():
            if name == "run_id" and "payout-runs" not in case.path:
                continue  # reconciliation runs are another kind of object
            if isinstance(value, int) and value in world.other.ids.get(name, set()):
                found.append(f"{status} for the other organisation's {name}={value}")
    return found


def fuzz(world: World, operation: Any, mode: schemathesis.GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # report the first failing example as found
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(headers=world.buyer.actor.headers)
        case.validate_response(response, checks=CHECKS)
        leaked = leaks(world, case, response.status_code, response.text)
        assert not leaked, f"{leaked}\n{case.as_curl_command()}"

    run()


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_the_api_survives_the_fuzzer_without_leaking(
    world: World, api_schema: Any, mode: schemathesis.GenerationMode
) -> None:
    """Every operation, a bounded number of examples each; every failure is reported, not only the first."""
    failures, fuzzed = [], 0
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 30
    for operation in operations:
        try:
            fuzz(world, operation, mode)
            fuzzed += 1
        except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters, no body)
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
        except (Exception, BaseExceptionGroup) as exc:  # collected: one run names every failing operation
            failures.append(f"--- {operation.label}\n{exc}")
    assert fuzzed > 30
    assert not failures, f"{len(failures)} of {len(operations)} operations failed:\n" + "\n".join(failures)


def test_no_object_of_another_organisation_is_reachable_by_id(world: World) -> None:
    """Every GET with an id in its path, asked for the other buyer's objects: 404, always."""
    with TestClient(world.app) as client:
        paths = client.get("/openapi.json").json()["paths"]
        asked = 0
        for template, operations in paths.items():
            names = re.findall(r"{(\w+)}", template)
            if "get" not in operations or not names:
                continue
            choices = [sorted(world.other.ids.get(n, set())) for n in names]
            if not all(choices):
                continue
            path = template
            for n, ids in zip(names, choices, strict=True):
                path = path.replace("{" + n + "}", str(ids[0]))
            r = client.get(path, headers=world.buyer.actor.headers)
            asked += 1
            assert r.status_code in (403, 404), (path, r.status_code, r.text[:300])
            assert not [w for w in world.other.words if w in r.text], path
        assert asked >= 6
