"""End to end in a real headless Chromium: a buyer confirms a delivery and starts a payout run,
a second key approves it, the sandbox provider pays it, and an auditor reconciles the provider's
statement, resolves an exception and reads the books and the pilot report. Screenshots are
saved in artifacts/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from integrations.providers.sandbox import SandboxProvider
from ledger import atomic
from payments import channels, parties, pii
from payments.dispatch import Dispatcher
from payments.payout_states import PayoutStatus
from payments.selfservice import DisputeKind
from payments.tables import PayoutRow
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
from tests.dashboard.conftest import LiveApp, seeding_client
from tests.sandbox import LiveSandbox
from upah.db import make_engine, make_session_factory
from upah.settings import Settings

SECRET = b"dashboard-e2e-sandbox-secret"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

pytestmark = pytest.mark.slow


@dataclass
class Pilot:
    url: str
    maker: Actor
    checker: Actor
    auditor: Actor
    deliveries: list[int]
    dispatcher: Dispatcher
    sandbox: LiveSandbox
    factory: sessionmaker[Session]
    api: TestClient

    def settle_through_the_api(self) -> None:
        """Confirm every delivery, start a run with one key, approve it with another, pay it."""
        for delivery_id, pieces in zip(self.deliveries, (40, 25), strict=True):
            confirm(self.api, self.maker, delivery_id, pieces)
        r = self.api.post("/v1/payout-runs", json={}, headers=self.maker.headers)
        assert r.status_code == 201, r.text
        r = self.api.post(f"/v1/payout-runs/{r.json()['id']}/approve", headers=self.checker.headers)
        assert r.status_code == 200, r.text
        pay_everything(self)


@pytest.fixture
def pilot(fresh_pg_url: str, tmp_path: Path) -> Iterator[Pilot]:
    """On a database of its own, so that the auditor's platform-wide pages show this story only."""
    engine = make_engine(fresh_pg_url)
    pg_factory = make_session_factory(engine)
    sandbox = LiveSandbox(tmp_path, SECRET, send_callbacks=False)
    sandbox.start()
    made: list[Settings] = []

    def make(url: str) -> FastAPI:  # the app must know its own address (CSRF origin check, callbacks)
        made.append(
            settings_for(
                fresh_pg_url,
                tmp_path,
                upah_public_url=url,
                upah_sandbox_provider_url=sandbox.url,
                upah_sandbox_callback_secret=SECRET.decode(),
                upah_payout_approval_threshold=10_000,
            )
        )
        return create_app(made[0])

    app = LiveApp(make).start()
    provider = SandboxProvider(sandbox.url, SECRET, timeout=(1.0, 5.0))
    dispatcher = Dispatcher(
        sessions=pg_factory,
        providers={"sandbox": provider},
        keyring=pii.Keyring.from_string(made[0].upah_secret_keys or ""),
        clock=lambda: datetime.now(UTC),
    )
    try:
        with seeding_client(made[0]) as client:
            yield _seed(client, app.url, dispatcher, sandbox, pg_factory)
    finally:
        provider._session.close()
        app.stop()
        sandbox.stop()
        engine.dispose()


def _seed(
    client: TestClient,
    url: str,
    dispatcher: Dispatcher,
    sandbox: LiveSandbox,
    factory: sessionmaker[Session],
) -> Pilot:
    """A buyer with two keys, two homeworkers in two regions, an order each (one at the wage
    benchmark, one below it) and a delivery on each awaiting confirmation; an auditor."""
    admin = make_key(factory, parties.Role.ADMIN)
    org = new_org(client, admin, "buyer", name="Koperasi Sandal Sejahtera")
    deposit(client, admin, org, 20_000_000)
    maker = make_key(factory, parties.Role.BUYER, org)
    checker = make_key(factory, parties.Role.BUYER, org)
    auditor = make_key(factory, parties.Role.AUDITOR)
    siti = register(client, maker, name="Siti Aminah")
    dewi = register(client, maker, name="Dewi Lestari", region="ID-JI-KOTA-MALANG")
    jakarta = post_order(
        client,
        maker,
        siti["id"],
        product="sandal insole gluing",
        piece_rate={"rate": "2000", "currency": "IDR", "unit": "pasang"},
        quantity=60,
        assignments=[{"homeworker_id": siti["id"], "quantity": 60}],
    )
    malang = post_order(
        client,
        maker,
        dewi["id"],
        product="baby blanket hemming",
        piece_rate={"rate": "500", "currency": "IDR", "unit": "piece"},
        region="ID-JI-KOTA-MALANG",
        quantity=40,
        assignments=[{"homeworker_id": dewi["id"], "quantity": 40}],
    )
    first = deliver(client, maker, jakarta["id"], siti["id"], 40)
    second = deliver(client, maker, malang["id"], dewi["id"], 25)
    with atomic(factory) as s:  # Dewi reported over USSD that she was not paid for earlier work
        channels.open_dispute(
            s,
            homeworker_id=dewi["id"],
            kind=DisputeKind.NOT_PAID,
            channel="ussd",
            session_id=None,
            now=datetime.now(UTC),
        )
    return Pilot(
        url, maker, checker, auditor, [first["id"], second["id"]], dispatcher, sandbox, factory, client
    )


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url + "/login")
    page.fill("#key", key)
    page.click("form[action='/login'] button[type=submit]")
    expect(page.locator("nav.main")).to_be_visible()


def sign_out(page: Page) -> None:
    page.click("form[action='/logout'] button")
    expect(page.locator("#key")).to_be_visible()


def shot(page: Page, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def fits_the_screen(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def pay_everything(pilot: Pilot) -> None:
    """What the Celery worker does, done here: dispatch each payout and resolve its outcome."""
    with pilot.factory() as s:
        ids = list(s.execute(select(PayoutRow.id).where(PayoutRow.status == "created")).scalars())
    assert ids
    for payout_id in ids:
        pilot.dispatcher.dispatch(payout_id)
        assert pilot.dispatcher.resolve(payout_id) is PayoutStatus.SUCCEEDED


def test_a_delivery_is_confirmed_a_run_approved_by_a_second_key_paid_and_reconciled(
    browser: Browser, pilot: Pilot, screenshots: Path, tmp_path: Path
) -> None:
    context = browser.new_context(viewport=DESKTOP, locale="id-ID")
    page = context.new_page()
    page.goto(pilot.url + "/")
    expect(page).to_have_url(pilot.url + "/login")
    expect(page.locator("html")).to_have_attribute("lang", "id")
    shot(page, screenshots, "01-sign-in")

    # the maker: a buyer's key
    sign_in(page, pilot.url, pilot.maker.key)
    assert pilot.maker.key not in page.url
    session_cookie = next(c for c in context.cookies() if c["name"] == "upah_session")
    assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Strict"
    assert pilot.maker.key not in session_cookie["value"]
    expect(page.locator("h1")).to_have_text("Ringkasan")
    shot(page, screenshots, "02-buyer-overview")

    page.click("nav.main >> text=Pesanan")
    expect(page.locator("article.order")).to_have_count(2)
    expect(page.locator("article.order .fair.below")).to_have_count(1)
    expect(page.locator("article.order .fair.meets")).to_have_count(1)
    shot(page, screenshots, "03-orders-with-fair-rate-findings")

    page.click("nav.main >> text=Setoran")
    first, second = pilot.deliveries
    card = page.locator(f"#delivery-{first}")
    card.locator("input[name=accepted]").fill("38")
    card.locator("input[name=rejected]").fill("2")
    card.locator("input[name=reason]").fill("lem tidak rata")
    card.locator("button[type=submit]").click()
    expect(page.locator(".flash.ok")).to_contain_text(
        f"Setoran #{first} dikonfirmasi: 38 diterima, 2 ditolak"
    )
    expect(page.locator(f"#delivery-{first}")).to_have_count(0)
    page.locator(f"#delivery-{second} button[type=submit]").click()
    expect(page.locator(".flash.ok")).to_contain_text(
        f"Setoran #{second} dikonfirmasi: 25 diterima, 0 ditolak"
    )
    shot(page, screenshots, "04-deliveries-confirmed")

    page.click("nav.main >> text=Pengaduan")
    expect(page.locator("tr[id^=dispute-]")).to_have_count(1)
    expect(page.locator("tr[id^=dispute-]")).to_contain_text("belum dibayar")
    expect(page.locator("tr[id^=dispute-]")).to_contain_text("Dewi Lestari")
    shot(page, screenshots, "04b-disputes")

    page.click("nav.main >> text=Pembayaran")
    page.click("form[action='/payouts/runs'] button")
    expect(page.locator(".flash.ok")).to_contain_text("menunggu persetujuan")
    run = page.locator("article.run.attention")
    expect(run).to_have_count(1)
    expect(run).to_contain_text("Rp 88.500")  # 38 × 2.000 + 25 × 500
    expect(run.locator("form[action$='/reject'] button")).to_have_count(1)  # or reject it
    run.locator("form[action$='/approve'] button").click()  # the maker tries to approve her own run
    expect(page.locator(".flash.bad")).to_contain_text("orang kedua harus menyetujui")
    shot(page, screenshots, "05-maker-cannot-approve")
    sign_out(page)

    # the checker: a second key of the same buyer
    sign_in(page, pilot.url, pilot.checker.key)
    page.click("nav.main >> text=Pembayaran")
    page.locator("article.run.attention form[action$='/approve'] button").click()
    expect(page.locator(".flash.ok")).to_contain_text("disetujui dan sedang dikirim")
    shot(page, screenshots, "06-run-approved")

    pay_everything(pilot)
    page.reload()
    expect(page.locator("tr[id^=payout-] .badge.succeeded")).to_have_count(2)
    expect(page.locator("tr[id^=payout-]").first).to_contain_text("dibayar")
    shot(page, screenshots, "07-payouts-paid")
    page.click("nav.lang >> text=EN")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("tr[id^=payout-] .badge.succeeded").first).to_have_text("paid")
    expect(page.locator("article.run").first).to_contain_text("Rp 88,500")
    shot(page, screenshots, "08-payouts-paid-english")
    page.click("nav.lang >> text=ID")
    sign_out(page)

    # the auditor: the provider's statement, with one line the ledger knows nothing about
    statement = pilot.sandbox.get("/v1/statement.csv").text.rstrip("\n")
    assert statement.count("\n") == 2
    at = datetime.now(UTC).isoformat(timespec="seconds")
    stray = f"UPHSTRAY00001,upah-payout-stray,+6281200000001,15000,IDR,succeeded,{at}"
    path = tmp_path / "statement.csv"
    path.write_text(statement + "\n" + stray + "\n")
    sign_in(page, pilot.url, pilot.auditor.key)
    expect(page.locator("#key")).to_have_count(0)
    page.click("nav.main >> text=Rekonsiliasi")
    page.set_input_files("input[name=statement]", str(path))
    page.click("form[action='/reconciliations'] button[type=submit]")
    expect(page.locator(".flash.ok")).to_contain_text("selesai")
    expect(page.locator(".summary li.ok")).to_contain_text("2")
    exception = page.locator("article.exception.open")
    expect(exception).to_have_count(1)
    expect(exception).to_contain_text("tak dikenal buku besar")
    shot(page, screenshots, "09-reconciliation-with-exception")
    exception.locator("textarea").fill("Transfer uji coba penyedia, dikonfirmasi lewat email 5 Jan.")
    exception.locator("button[value=resolve]").click()
    expect(page.locator(".flash.ok")).to_contain_text("Catatan disimpan")
    expect(page.locator("article.exception.resolved")).to_contain_text("Transfer uji coba penyedia")
    shot(page, screenshots, "10-exception-resolved")

    page.click("nav.main >> text=Buku besar")
    expect(page.locator("#chain .stat-value")).to_have_text("Utuh")
    expect(page.locator("#balanced .stat-value")).to_contain_text("Seimbang")
    shot(page, screenshots, "11-ledger")

    page.click("nav.main >> text=Laporan pilot")
    expect(page.locator("#chart-payouts svg rect")).not_to_have_count(0)
    expect(page.locator("#chart-leakage svg")).to_be_visible()
    expect(page.locator("#chart-compliance svg")).to_contain_text("Kota Malang")
    expect(page.locator("#chart-waits svg")).to_be_visible()
    expect(page.locator("#leakage .stat-value")).to_have_text("0,00 %")
    shot(page, screenshots, "12-pilot-report")
    context.close()


def test_the_buyer_pages_fit_a_phone_screen(browser: Browser, pilot: Pilot, screenshots: Path) -> None:
    pilot.settle_through_the_api()
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    sign_in(page, pilot.url, pilot.maker.key)
    assert fits_the_screen(page)
    shot(page, screenshots, "20-phone-overview")
    for path, name in (
        ("/orders", "21-phone-orders"),
        ("/payouts", "22-phone-payouts"),
        ("/report", "23-phone-report"),
    ):
        page.goto(pilot.url + path)
        assert fits_the_screen(page), path
        shot(page, screenshots, name)
    expect(page.locator("#chart-payouts svg rect")).not_to_have_count(0)
    context.close()


def test_a_wrong_key_is_refused_on_the_page(browser: Browser, pilot: Pilot) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(pilot.url + "/login")
    page.fill("#key", "upah_0000000000000000_not-a-real-key")
    page.click("form[action='/login'] button[type=submit]")
    expect(page.locator(".flash.bad")).to_contain_text("Kunci API tidak dikenal")
    assert not any(c["name"] == "upah_session" for c in context.cookies())
    context.close()
