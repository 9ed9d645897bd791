"""'Report a problem' opens a dispute with a code she can quote; her buyers and auditors see it."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from ledger import atomic
from payments import channels, parties
from payments.tables import DisputeRow
from tests.api.conftest import Actor, confirm, deliver, make_key, post_order
from tests.channels.conftest import App, Worker, buyer_actor, login, register_worker, set_pin

PIN = "583927"
CODE = re.compile(r"Kode: (LP-[A-HJ-NP-Z2-9]{6})\.")


@pytest.fixture
def worker(app: App, buyer: Actor) -> Worker:
    worker = register_worker(app, buyer)
    order = post_order(app.client, buyer, worker.id)
    confirm(app.client, buyer, deliver(app.client, buyer, order["id"], worker.id, 10)["id"], 10)
    set_pin(app, worker, PIN)
    return worker


def report(app: App, worker: Worker, choice: str) -> str:
    dial = login(app, worker, PIN)
    dial.press("4")
    done = dial.press(choice)
    assert done.ended
    assert done.text.startswith("Laporan diterima. Kode: LP-")
    found = CODE.search(done.text)
    assert found is not None
    again = app.gateway.ussd(session_id=dial.id, phone=worker.phone, text="*".join(dial.answers))
    assert again.body == done.body  # the gateway retried: same code, no second dispute
    return found.group(1)


def disputes(app: App, actor: Actor, **params: str) -> list[dict[str, object]]:
    r = app.client.get("/v1/disputes", headers=actor.headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("choice", "kind"),
    [("1", "not_paid"), ("2", "wrong_amount"), ("3", "pieces_not_counted"), ("4", "other")],
)
def test_a_reported_problem_reaches_her_buyer_with_the_code_she_was_given(
    app: App, buyer: Actor, worker: Worker, choice: str, kind: str
) -> None:
    code = report(app, worker, choice)
    seen = disputes(app, buyer)
    mine = [d for d in seen if d["reference"] == code]
    assert len(mine) == 1
    assert mine[0]["kind"] == kind
    assert mine[0]["homeworker_id"] == worker.id
    assert mine[0]["buyer_id"] == buyer.organization_id
    assert mine[0]["status"] == "open" and mine[0]["channel"] == "ussd"
    with app.factory() as s:
        assert s.execute(select(func.count()).where(DisputeRow.reference == code)).scalar_one() == 1


def test_each_session_opens_its_own_dispute(app: App, buyer: Actor, worker: Worker) -> None:
    first, second = report(app, worker, "1"), report(app, worker, "1")
    assert first != second
    assert {first, second} <= {d["reference"] for d in disputes(app, buyer, homeworker_id=str(worker.id))}


def test_a_session_id_the_gateway_reuses_days_later_never_shows_her_anothers_code(
    app: App, buyer: Actor, worker: Worker
) -> None:
    first = report(app, worker, "1")
    app.clock.advance(days=2)
    with atomic(app.factory) as s:
        channels.purge_ussd_sessions(s, now=app.clock.now)
    other = register_worker(app, buyer)
    set_pin(app, other, PIN)
    with app.factory() as s:
        reused = s.execute(select(DisputeRow.session_id).where(DisputeRow.reference == first)).scalar_one()
    dial = app.gateway.dial(other.phone)
    dial.id = reused
    dial.start()
    dial.pin(PIN)
    dial.press("4")
    done = dial.press("2")
    found = CODE.search(done.text)
    assert found is not None and found.group(1) != first
    with app.factory() as s:
        assert (
            s.execute(
                select(DisputeRow.homeworker_id).where(DisputeRow.reference == found.group(1))
            ).scalar_one()
            == other.id
        )


def test_another_buyer_never_sees_it(app: App, admin: Actor, worker: Worker) -> None:
    code = report(app, worker, "2")
    stranger = buyer_actor(app, admin)
    assert code not in {d["reference"] for d in disputes(app, stranger)}


def test_auditors_see_their_organisations_and_platform_auditors_see_all(
    app: App, admin: Actor, buyer: Actor, worker: Worker
) -> None:
    code = report(app, worker, "3")
    own_auditor = make_key(app.factory, parties.Role.AUDITOR, buyer.organization_id)
    platform_auditor = make_key(app.factory, parties.Role.AUDITOR)
    other_auditor = make_key(app.factory, parties.Role.AUDITOR, buyer_actor(app, admin).organization_id)
    assert code in {d["reference"] for d in disputes(app, own_auditor)}
    assert code in {d["reference"] for d in disputes(app, platform_auditor)}
    assert code in {d["reference"] for d in disputes(app, admin)}
    assert code not in {d["reference"] for d in disputes(app, other_auditor)}


def test_intermediaries_cannot_read_disputes(app: App, admin: Actor, worker: Worker) -> None:
    from tests.api.conftest import new_org

    report(app, worker, "3")
    agent = make_key(app.factory, parties.Role.INTERMEDIARY, new_org(app.client, admin, "intermediary"))
    r = app.client.get("/v1/disputes", headers=agent.headers)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"


def test_her_intermediarys_auditor_key_never_sees_a_report_naming_no_buyer(
    app: App, admin: Actor, buyer: Actor, worker: Worker
) -> None:
    from tests.api.conftest import new_org

    middleman = new_org(app.client, admin, "intermediary")
    second = buyer_actor(app, admin)
    assert second.organization_id is not None
    with atomic(app.factory) as s:  # two buyers (so she names none) and the intermediary who brings her work
        for org in (second.organization_id, middleman):
            parties.link(s, homeworker_id=worker.id, organization_id=org, now=app.clock.now)
    post_order(app.client, second, worker.id)
    code = report(app, worker, "1")
    found = [d for d in disputes(app, buyer) if d["reference"] == code]
    assert len(found) == 1 and found[0]["buyer_id"] is None
    auditor = make_key(app.factory, parties.Role.AUDITOR, middleman)
    assert code not in {d["reference"] for d in disputes(app, auditor)}
    r = app.client.post(
        f"/v1/disputes/{found[0]['id']}/notes", json={"note": "seen"}, headers=auditor.headers
    )
    assert r.status_code == 404


def test_disputes_need_an_api_key(app: App) -> None:
    assert app.client.get("/v1/disputes").status_code == 401


def test_when_she_works_for_two_buyers_both_see_her_report(
    app: App, admin: Actor, buyer: Actor, worker: Worker
) -> None:
    second = buyer_actor(app, admin)
    assert second.organization_id is not None
    with atomic(app.factory) as s:  # e.g. her intermediary brings her work from a second buyer
        parties.link(s, homeworker_id=worker.id, organization_id=second.organization_id, now=app.clock.now)
    post_order(app.client, second, worker.id)
    code = report(app, worker, "4")
    for actor in (buyer, second):
        found = [d for d in disputes(app, actor) if d["reference"] == code]
        assert len(found) == 1 and found[0]["buyer_id"] is None


def test_disputes_can_be_filtered(app: App, buyer: Actor, worker: Worker) -> None:
    code = report(app, worker, "1")
    assert code in {d["reference"] for d in disputes(app, buyer, status="open")}
    assert code not in {d["reference"] for d in disputes(app, buyer, status="resolved")}
    assert (
        app.client.get("/v1/disputes", headers=buyer.headers, params={"status": "bogus"}).status_code == 422
    )
