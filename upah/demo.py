"""`upah demo`: the whole pilot story on the embedded default (or PostgreSQL + Redis), told as
it happens — through the same domain code, the real API (for the provider's callbacks), a real
Celery worker, the sandbox provider and the sandbox SMS gateway."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.columns import Columns
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from integrations import phones
from integrations.sandbox_server import FaultPlan, JSONObject, SandboxService
from ledger import atomic, reports, sealing
from ledger.export import write_beancount
from payments import adjustments, channels, deliveries, orders, parties, payouts, pii, rates, reconciliation
from payments import reports as pilot_reports
from payments.errors import PaymentsError
from payments.parties import OrganizationKind, Principal, Role
from payments.payout_states import PayoutStatus, RunStatus
from payments.tables import OrganizationRow, PayoutRow
from upah import bootstrap, demo_data, demo_stack
from upah.migrate import upgrade
from upah.settings import Settings

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/upah_demo"
REDIS_URL = "redis://127.0.0.1:6379/0"
RUN_TIMEOUT = 60.0
TERMINAL = {PayoutStatus.SUCCEEDED, PayoutStatus.FAILED, PayoutStatus.REVERSED}


class DemoFailed(Exception):
    """The story could not go on; the message says why and where to look."""


@dataclass
class Cast:
    """Who is who in this run of the story: principals, keys and ids."""

    admin: Principal
    auditor: Principal
    keys: dict[str, str] = field(default_factory=dict)
    makers: dict[str, Principal] = field(default_factory=dict)
    checkers: dict[str, Principal] = field(default_factory=dict)
    buyer_ids: dict[str, int] = field(default_factory=dict)
    intermediary_ids: dict[str, int] = field(default_factory=dict)
    workers: list[int] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)

    def name_of(self, homeworker_id: int) -> str:
        return demo_data.HOMEWORKERS[self.workers.index(homeworker_id)].name


def environment(settings: Settings, *, postgres: bool) -> dict[str, str]:
    """The demo's configuration: quick provider timeouts, a low approval threshold, and on
    ``--postgres`` a database and queue of its own."""
    env = {
        "UPAH_PAYOUT_APPROVAL_THRESHOLD": "1000000",
        "UPAH_PROVIDER_TIMEOUT_SECONDS": "1",
        "UPAH_STALE_AFTER_SECONDS": "5",
        "UPAH_SMS_PROVIDER": "sandbox",
        "UPAH_DATA_DIR": str(settings.data_dir),
    }
    if postgres:
        url = settings.database_url if settings.database_url.startswith("postgresql") else POSTGRES_URL
        env.update(
            DATABASE_URL=url, REDIS_URL=settings.redis_url or REDIS_URL, UPAH_QUEUE=settings.upah_queue
        )
    return env


def run(settings: Settings, *, reset: bool, postgres: bool, console: Console) -> None:
    env = environment(settings, postgres=postgres)
    database_url = env.get("DATABASE_URL", settings.database_url)
    started = time.monotonic()
    console.print(
        Panel.fit(
            "[bold]Upah[/bold] — piece-rate pay, straight from the buyer to the homeworker's wallet.\n"
            f"Database: {make_url(database_url).render_as_string(hide_password=True)}"
            f" · queue: {'Redis' if postgres else 'embedded (no server)'}"
            " · provider and SMS gateway: sandbox",
            title="upah demo",
        )
    )
    _prepare(settings, database_url, reset=reset, console=console)
    with demo_stack.running(env=env) as stack:
        story = Story(stack, console)
        story.tell()
    console.rule()
    console.print(f"[green]The pilot story ran in {time.monotonic() - started:.0f} s.[/green]")


def _prepare(settings: Settings, database_url: str, *, reset: bool, console: Console) -> None:
    """Start from an empty database: on --reset, or when it holds nothing but an earlier demo."""
    private = settings.data_dir / ".upah"
    if database_url.startswith("postgresql"):
        _ensure_postgres_database(database_url)
    upgrade(database_url)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        names = set(conn.execute(select(OrganizationRow.name)).scalars())
    engine.dispose()
    demo_names = {b.name for b in demo_data.BUYERS} | {i.name for i in demo_data.INTERMEDIARIES}
    if names and not reset and not names <= demo_names:
        raise DemoFailed(
            "this database already holds other organisations; run the demo with its own "
            "DATABASE_URL, or pass --reset to wipe it"
        )
    if names:
        console.print("[dim]starting over: an earlier demo's database is replaced[/dim]")
        if database_url.startswith("postgresql"):
            _recreate_postgres_database(database_url)
        else:
            _remove_sqlite(database_url)
        upgrade(database_url)
    for leftover in ("sandbox-provider.db", "sandbox-provider.db-wal", "sandbox-provider.db-shm"):
        (private / leftover).unlink(missing_ok=True)
    for queued in (private / "broker" / "queue").glob("*"):
        queued.unlink(missing_ok=True)


def _remove_sqlite(database_url: str) -> None:
    path = Path(make_url(database_url).database or "")
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _admin_engine(database_url: str) -> tuple[Any, str]:
    url = make_url(database_url)
    return create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT"), url.database or ""


def _ensure_postgres_database(database_url: str) -> None:
    engine, name = _admin_engine(database_url)
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if exists is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def _recreate_postgres_database(database_url: str) -> None:
    engine, name = _admin_engine(database_url)
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


class Story:
    def __init__(self, stack: demo_stack.Stack, console: Console) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.console = console
        db = bootstrap.database(self.settings)
        self.sessions: sessionmaker[Session] = db.sessions
        self.keys = bootstrap.keys(self.settings)
        self.keyring: pii.Keyring = self.keys.keyring
        self.policy = bootstrap.run_policy(self.settings)
        self.sandbox: SandboxService = stack.sandbox
        self.cast: Cast | None = None

    def now(self) -> datetime:
        return datetime.now(UTC)

    def tell(self) -> None:
        cast = self.seed()
        self.cast = cast
        self.work(cast)
        self.pay(cast)
        self.phones(cast)
        self.audit(cast)
        self.closing(cast)

    # ------------------------------------------------------------------ 1. the cast

    def seed(self) -> Cast:
        self.console.rule("[bold]1. Buyers, intermediaries and twelve homeworkers[/bold]")
        now = self.now()
        with self._progress() as progress, atomic(self.sessions) as s:
            task = progress.add_task("registering the pilot", total=5 + 2 * len(demo_data.HOMEWORKERS))
            admin_key = parties.create_api_key(s, organization_id=None, role=Role.ADMIN, now=now)
            auditor_key = parties.create_api_key(s, organization_id=None, role=Role.AUDITOR, now=now)
            cast = Cast(
                admin=parties.authenticate(s, admin_key),
                auditor=parties.authenticate(s, auditor_key),
                keys={"admin": admin_key, "auditor (platform)": auditor_key},
            )
            for buyer in demo_data.BUYERS:
                org = parties.create_organization(s, name=buyer.name, kind=OrganizationKind.BUYER, now=now)
                cast.buyer_ids[buyer.code] = org.id
                maker = parties.create_api_key(s, organization_id=org.id, role=Role.BUYER, now=now)
                checker = parties.create_api_key(s, organization_id=org.id, role=Role.BUYER, now=now)
                cast.makers[buyer.code] = parties.authenticate(s, maker)
                cast.checkers[buyer.code] = parties.authenticate(s, checker)
                cast.keys[f"{buyer.name} (buyer)"] = maker
                cast.keys[f"{buyer.name} (second buyer key, approves runs)"] = checker
                parties.record_deposit(
                    s,
                    principal=cast.admin,
                    organization_id=org.id,
                    amount=buyer.deposit,
                    reference=f"deposit-{buyer.code}",
                    now=now,
                )
                progress.advance(task)
            for intermediary in demo_data.INTERMEDIARIES:
                org = parties.create_organization(
                    s, name=intermediary.name, kind=OrganizationKind.INTERMEDIARY, now=now
                )
                cast.intermediary_ids[intermediary.code] = org.id
                cast.keys[f"{intermediary.name} (intermediary)"] = parties.create_api_key(
                    s, organization_id=org.id, role=Role.INTERMEDIARY, now=now
                )
                progress.advance(task)
            first_buyer: dict[int, str] = {}
            for product in demo_data.PRODUCTS:
                for index in product.pieces:
                    first_buyer.setdefault(index, product.buyer)
            for index, worker in enumerate(demo_data.HOMEWORKERS):
                phone = phones.demo_number(index + 1)
                registered = parties.register_homeworker(
                    s,
                    principal=cast.makers[first_buyer[index]],
                    keyring=self.keyring,
                    name=worker.name,
                    phone=phone,
                    region=worker.region,
                    wallet_provider=worker.wallet,
                    wallet_account=phone,
                    nik=None,
                    consent_at=now,
                    language=worker.language,
                    now=now,
                )
                cast.workers.append(registered.id)
                cast.phones.append(phone)
                progress.advance(task, 2)
        table = Table(
            "Homeworker", "Region", "Wallet", "Phone (fictitious)", title="Registered, with consent"
        )
        for worker, phone in zip(demo_data.HOMEWORKERS, cast.phones, strict=True):
            table.add_row(worker.name, worker.region, worker.wallet.upper(), phone)
        self.console.print(table)
        self.console.print(
            "Deposits: "
            + ", ".join(f"{b.name} {rupiah(b.deposit)}" for b in demo_data.BUYERS)
            + ". Phone numbers and NIKs are encrypted at rest; the API shows them masked."
        )
        return cast

    # ------------------------------------------------------------------ 2. the work

    def work(self, cast: Cast) -> None:
        self.console.rule("[bold]2. Work orders at agreed piece rates, deliveries, adjustments[/bold]")
        now = self.now()
        deadline = (now + timedelta(days=14)).date()
        findings = Table(
            "Order",
            "Product",
            "Rate",
            "Hourly pay",
            "Benchmark/hour",
            "Fair rate",
            title="Fair-rate benchmark",
        )
        rejected_ref, rejected_index, reason = demo_data.REJECTED
        with self._progress() as progress:
            task = progress.add_task(
                "posting orders, confirming deliveries",
                total=len(demo_data.PRODUCTS) + sum(len(p.pieces) for p in demo_data.PRODUCTS) + 1,
            )
            advance_buyer, advance_index, advance_amount = demo_data.ADVANCE
            with atomic(self.sessions) as s:
                adjustments.add(
                    s,
                    principal=cast.makers[advance_buyer],
                    homeworker_id=cast.workers[advance_index],
                    kind=adjustments.AdjustmentKind.ADVANCE,
                    amount=advance_amount,
                    memo="kasbon: uang sekolah anak (school fees)",
                    now=now,
                )
            for product in demo_data.PRODUCTS:
                buyer = cast.makers[product.buyer]
                intermediary = (
                    next(i for i in demo_data.INTERMEDIARIES if i.code == product.intermediary)
                    if product.intermediary
                    else None
                )
                with atomic(self.sessions) as s:
                    order = orders.post(
                        s,
                        principal=buyer,
                        reference=product.reference,
                        product=product.name,
                        rate=product.rate,
                        unit=product.unit,
                        minutes_per_piece=product.minutes_per_piece,
                        quantity=sum(product.pieces.values()),
                        deadline=deadline,
                        region=product.region,
                        intermediary_id=cast.intermediary_ids[intermediary.code] if intermediary else None,
                        commission=intermediary.commission if intermediary else None,
                        assignments=[
                            orders.AssignmentRequest(cast.workers[i], q) for i, q in product.pieces.items()
                        ],
                        policy=rates.FairRatePolicy.WARN,
                        now=now,
                    )
                progress.advance(task)
                worst = order.fair_rate.get("worst") or {}
                findings.add_row(
                    product.reference,
                    product.name,
                    f"{rupiah_text(product.rate)}/{product.unit.value}",
                    rupiah_text(worst.get("effective_hourly", "0")),
                    rupiah_text(worst.get("benchmark_hourly", "0")),
                    f"{rupiah_text(worst.get('fair_rate', '0'))}/{product.unit.value}",
                )
                for index, pieces in product.pieces.items():
                    rejected = (
                        pieces * 5 // 100
                        if (product.reference, index) == (rejected_ref, rejected_index)
                        else 0
                    )
                    with atomic(self.sessions) as s:
                        delivery = deliveries.record(
                            s,
                            principal=buyer,
                            order_id=order.id,
                            homeworker_id=cast.workers[index],
                            pieces=pieces,
                            now=now,
                        )
                        deliveries.confirm(
                            s,
                            principal=buyer,
                            delivery_id=delivery.id,
                            accepted=pieces - rejected,
                            rejected=rejected,
                            reason=reason if rejected else None,
                            now=now,
                        )
                    progress.advance(task)
            with atomic(self.sessions) as s:
                for payer, indices, kind, amount, memo in demo_data.ADJUSTMENTS:
                    for index in indices:
                        adjustments.add(
                            s,
                            principal=cast.makers[payer],
                            homeworker_id=cast.workers[index],
                            kind=kind,
                            amount=amount,
                            memo=memo,
                            now=now,
                        )
            progress.advance(task)
        self.console.print(findings)
        self.console.print(
            "Almost every reported rate pays below the regional minimum wage per hour: Upah shows it on "
            "every order, payslip and report (UPAH_FAIR_RATE_POLICY=block would refuse them)."
        )
        siti = demo_data.HOMEWORKERS[rejected_index].name
        nur = demo_data.HOMEWORKERS[advance_index].name
        self.console.print(
            f"{siti}: 5% of her insoles came back for [italic]{reason}[/italic] (smeared glue) — "
            f"recorded with the reason, paid only for accepted pairs. {nur} took a kasbon of "
            f"{rupiah(advance_amount)}; it is recovered from her earnings, never more than half of one. "
            f"Malang's homeworkers get a {rupiah(demo_data.ELECTRICITY_ALLOWANCE)} electricity allowance, "
            f"Medan's and Yogyakarta's an Eid bonus of {rupiah(demo_data.EID_BONUS)}. Each is a ledger entry."
        )

    def _await_callbacks(self, *, deliveries: int, timeout: float = 30.0) -> list[JSONObject]:
        """The sandbox's callbacks once each was delivered ``deliveries`` times: the payouts
        settle on the first, and the repeat may still be on its way."""
        deadline = time.monotonic() + timeout
        callbacks = self.sandbox.list_callbacks()
        while time.monotonic() < deadline and any(
            int(str(c["deliveries"] or 0)) < deliveries for c in callbacks
        ):
            time.sleep(0.1)
            callbacks = self.sandbox.list_callbacks()
        return callbacks

    # ------------------------------------------------------------------ 3. the money

    def pay(self, cast: Cast) -> None:
        self.console.rule("[bold]3. Payout runs, through the worker to the wallets[/bold]")
        self.sandbox.set_faults(FaultPlan(duplicate_callback=1.0))
        run = self._create_run(cast, "kok")
        self._await_run(cast, "kok", run.id, "Malang — the provider sends every callback twice")
        callbacks = self._await_callbacks(deliveries=2)
        self.console.print(
            f"The sandbox delivered {sum(int(str(c['deliveries'] or 0)) for c in callbacks)} callbacks for "
            f"{len(callbacks)} events: each repeat was recognised and changed nothing."
        )

        self.sandbox.set_faults(FaultPlan(timeout_unpaid=1.0, stall_seconds=2.0))
        run = self._create_run(cast, "tekstil")
        self._await_unknown(cast, "tekstil", run.id)
        self.sandbox.set_faults(FaultPlan())
        self._await_run(cast, "tekstil", run.id, "Medan and Yogyakarta — every first send timed out")
        self.console.print(
            "Each timeout left the outcome [bold]unknown[/bold] — never failed, never blindly resent. "
            "The worker asked the provider by the payout's idempotency key; only when it answered "
            "'never received' was the instruction sent again, under the same key."
        )

        self.sandbox.set_faults(FaultPlan())
        dewi_index = demo_data.NEAR_LIMIT
        dewi = demo_data.HOMEWORKERS[dewi_index]
        self.sandbox.upsert_wallet(
            account=cast.phones[dewi_index],
            holder_name=dewi.name,
            registered=False,
            balance=demo_data.NEAR_LIMIT_BALANCE,
        )
        run = self._create_run(cast, "sepatu")
        try:
            with atomic(self.sessions) as s:
                payouts.approve_run(s, principal=cast.makers["sepatu"], run_id=run.id, now=self.now())
        except PaymentsError as exc:
            self.console.print(
                f"The maker tries to approve her own run: [red]{exc.code}[/red] — {exc.message}"
            )
        with atomic(self.sessions) as s:
            payouts.approve_run(s, principal=cast.checkers["sepatu"], run_id=run.id, now=self.now())
        self.console.print("A second key of the buyer approves it (maker–checker).")
        self._await_run(cast, "sepatu", run.id, "Jakarta — one wallet is near its Rp2.000.000 limit")
        self.console.print(
            f"{dewi.name}'s unregistered wallet already held {rupiah(demo_data.NEAR_LIMIT_BALANCE)}: "
            "the provider refused the payment for good, her money went back to what she is owed, "
            "and an SMS told her why. She upgrades her wallet to a registered one; the next run pays her."
        )
        self.sandbox.upsert_wallet(
            account=cast.phones[dewi_index], holder_name=dewi.name, registered=True, balance=None
        )
        run = self._create_run(cast, "sepatu")
        self._await_run(cast, "sepatu", run.id, f"Jakarta — {dewi.name}, again")

    def _create_run(self, cast: Cast, buyer: str) -> payouts.PayoutRun:
        with atomic(self.sessions) as s:
            run = payouts.create_run(s, principal=cast.makers[buyer], policy=self.policy, now=self.now())
        note = (
            " — above the approval threshold, it waits for a second key"
            if (run.status is RunStatus.AWAITING_APPROVAL)
            else ""
        )
        self.console.print(
            f"Run {run.id}: {run.count} payouts, {rupiah(run.total)} to homeworkers, provider fees "
            f"{rupiah(run.fee)} charged to the buyer{note}."
        )
        return run

    def _await_unknown(self, cast: Cast, buyer: str, run_id: int) -> None:
        """Wait until every payout of the run has timed out once (the provider is stalling)."""
        deadline = time.monotonic() + RUN_TIMEOUT
        with self._progress() as progress:
            with self.sessions() as s:
                run = payouts.get_run(s, principal=cast.makers[buyer], run_id=run_id)
            task = progress.add_task("the provider stalls: sends time out", total=run.count)
            while True:
                with self.sessions() as s:
                    timed_out = sum(
                        1
                        for p in run.payouts
                        if any(
                            e["to"] == PayoutStatus.UNKNOWN.value for e in payouts.events(s, payout_id=p.id)
                        )
                    )
                progress.update(task, completed=timed_out)
                if timed_out == run.count:
                    return
                if time.monotonic() > deadline:
                    raise DemoFailed(f"run {run_id}'s sends did not time out; see {self.stack.worker_log}")
                time.sleep(0.1)

    def _await_run(self, cast: Cast, buyer: str, run_id: int, title: str) -> None:
        principal = cast.makers[buyer]
        deadline = time.monotonic() + RUN_TIMEOUT
        with self._progress() as progress:
            with self.sessions() as s:
                total = payouts.get_run(s, principal=principal, run_id=run_id).count
            task = progress.add_task(title, total=total)
            while True:
                with self.sessions() as s:
                    run = payouts.get_run(s, principal=principal, run_id=run_id)
                done = sum(1 for p in run.payouts if p.status in TERMINAL)
                progress.update(task, completed=done)
                if run.status is RunStatus.COMPLETED and done == total:
                    break
                if time.monotonic() > deadline:
                    raise DemoFailed(
                        f"run {run_id} did not finish within {RUN_TIMEOUT:.0f} s; "
                        f"the worker's log is {self.stack.worker_log}"
                    )
                time.sleep(0.25)
        table = Table("Homeworker", "Amount", "Outcome", "What happened")
        with self.sessions() as s:
            for payout in run.payouts:
                trail = payouts.events(s, payout_id=payout.id)
                steps = " → ".join(_collapsed(trail))
                colour = "green" if payout.status is PayoutStatus.SUCCEEDED else "red"
                outcome = payout.status.value + (f": {payout.failure_code}" if payout.failure_code else "")
                table.add_row(
                    cast.name_of(payout.homeworker_id),
                    rupiah(payout.amount),
                    f"[{colour}]{outcome}[/]",
                    steps,
                )
        self.console.print(table)

    # ------------------------------------------------------------------ 4. her phone

    def phones(self, cast: Cast) -> None:
        self.console.rule("[bold]4. On her phone: USSD *123# and SMS[/bold]")
        index = 0
        worker, phone = demo_data.HOMEWORKERS[index], cast.phones[index]
        pin = demo_data.PIN
        self.console.print(f"{worker.name} dials the USSD code on a feature phone (she chooses PIN {pin}):")
        self._ussd(phone, [("first call", []), ("new PIN", [pin]), ("PIN again", [pin, pin])], pins=2)
        self._ussd(phone, [("dial", []), ("PIN", [pin]), ("1 Saldo", [pin, "1"])])
        self._ussd(phone, [("dial", []), ("PIN", [pin]), ("2 Riwayat", [pin, "2"])])
        self._ussd(
            phone, [("dial", []), ("PIN", [pin]), ("4 Lapor masalah", [pin, "4"]), ("2", [pin, "4", "2"])]
        )

        english = 2
        self.console.print(
            f"{demo_data.HOMEWORKERS[english].name} (English) and {worker.name} text the SMS number:"
        )
        asked: list[tuple[int, str]] = []
        with atomic(self.sessions) as s:
            for who, command in ((index, "SALDO"), (index, "tarif"), (english, "BAL"), (english, "hist")):
                channels.receive_sms(
                    s,
                    keyring=self.keyring,
                    sender=cast.phones[who],
                    text=command,
                    dedupe_key=uuid.uuid4().hex,
                    now=self.now(),
                )
                asked.append((who, command))
        replies = self._await_sms(cast, len(asked))
        for (who, command), text_ in zip(asked, replies, strict=False):
            self.console.print(
                Panel(
                    text_, title=f"{demo_data.HOMEWORKERS[who].name} sent {command!r}", width=44, expand=False
                )
            )
        self.console.print("Notices the worker sent by SMS (from the outbox, once each):")
        with self.sessions() as s:
            sent = channels.list_sent(s, keyring=self.keyring, provider="sandbox", limit=1000)
        dewi = cast.workers[demo_data.NEAR_LIMIT]
        for message in sorted(
            (m for m in sent if m.homeworker_id == dewi and m.kind != "sms_reply"), key=lambda m: m.sent_at
        ):
            self.console.print(
                Panel(message.text, title=f"to {cast.name_of(dewi)}: {message.kind}", width=44)
            )

    def _ussd(self, phone: str, screens: list[tuple[str, list[str]]], *, pins: int = 1) -> None:
        """One USSD session, screen by screen, as her phone shows it (the PIN as stars)."""
        session_id = uuid.uuid4().hex
        panels = []
        for label, steps in screens:
            turn = channels.ussd_turn(
                self.sessions,
                keyring=self.keyring,
                session_id=session_id,
                phone=phone,
                steps=steps,
                now=self.now(),
            )
            typed = "*".join("*" * len(step) if i < pins else step for i, step in enumerate(steps))
            panels.append(
                Panel(
                    turn.outcome.text or "",
                    title=f"{label}: {typed or 'dial'}",
                    subtitle="END" if turn.outcome.end else "CON",
                    width=36,
                )
            )
        self.console.print(Columns(panels))

    def _await_sms(self, cast: Cast, count: int) -> list[str]:
        """The replies the worker sent, oldest first, once all have gone out."""
        deadline = time.monotonic() + 30
        while True:
            with self.sessions() as s:
                sent = [
                    m
                    for m in channels.list_sent(s, keyring=self.keyring, provider="sandbox", limit=1000)
                    if m.kind == "sms_reply"
                ]
            if len(sent) >= count:
                return [m.text for m in sorted(sent, key=lambda m: m.sent_at)][-count:]
            if time.monotonic() > deadline:
                raise DemoFailed(f"the SMS replies were not sent in time; see {self.stack.worker_log}")
            time.sleep(0.25)

    # ------------------------------------------------------------------ 5. the auditor

    def audit(self, cast: Cast) -> None:
        self.console.rule("[bold]5. The auditor: reconcile, verify, export[/bold]")
        statement = self.sandbox.statement_csv()
        with atomic(self.sessions) as s:
            result = reconciliation.reconcile_statement(
                s,
                data=statement,
                provider="sandbox",
                principal=cast.auditor,
                source=reconciliation.Source.CLI,
                keyring=self.keyring,
                now=self.now(),
            )
        summary = result.summary
        table = Table(
            "Class", "Count", title=f"Reconciliation of the sandbox statement ({summary['lines']} lines)"
        )
        for name in reconciliation.CLASSES:
            table.add_row(name.value, str(summary.get(name.value, 0)))
        self.console.print(table)
        with atomic(self.sessions) as s:
            sealed = sealing.seal(
                s,
                now=self.now(),
                signing_key=self.keys.signing_key,
                checkpoint_every=self.settings.upah_checkpoint_every,
            )
            head = sealing.checkpoint(s, now=self.now(), signing_key=self.keys.signing_key)
        with self.sessions() as s:
            verified = reports.verify_chain(s)
            entries = s.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one()
        if verified.problems:
            raise DemoFailed(f"the ledger does not verify: {verified.problems[0]}")
        self.console.print(
            f"[green]Ledger verified[/green]: {entries} entries, the hash chain intact "
            f"({sealed} sealed just now, a checkpoint at seq {head} signed with Ed25519), "
            f"{verified.checkpoints_checked} checkpoint signature(s) checked, "
            "every account equal to its postings."
        )
        books = self.settings.data_dir / "upah-demo.beancount"
        with self.sessions() as s, books.open("w", encoding="utf-8") as out:
            write_beancount(s, out, title="Upah demo pilot")
        self.console.print(f"Books exported for Beancount: {books} (check them with bean-check).")

    # ------------------------------------------------------------------ 6. the report

    def closing(self, cast: Cast) -> None:
        self.console.rule("[bold]6. The pilot report[/bold]")
        with self.sessions() as s:
            report = pilot_reports.pilot(s, principal=cast.auditor, start=None, end=None, now=self.now())
            owed_now = s.execute(
                select(func.count())
                .select_from(PayoutRow)
                .where(PayoutRow.status == PayoutStatus.FAILED.value)
            ).scalar_one()
        total = report.total
        wait = total["time_to_payment_seconds"]
        self.console.print(
            f"Agreed {rupiah(total['agreed'])}, received in wallets {rupiah(total['received'])}, still owed "
            f"{rupiah(total['owed'])}; leakage {percent(total['leakage'])}. "
            f"Time from confirmation to wallet: median {wait['median']} s, p95 {wait['p95']} s. "
            f"Failed payouts (money returned, repaid later): {owed_now}. "
            f"Disputes opened: {total['disputes_opened']}."
        )
        table = Table(
            "Region", "Agreed", "Received", "Leakage", "Work meeting the benchmark", title="By region"
        )
        for row in report.by["region"]:
            table.add_row(
                str(row["name"] or row["key"]),
                rupiah(row["agreed"]),
                rupiah(row["received"]),
                percent(row["leakage"]),
                percent(row["share_meeting_benchmark"]),
            )
        self.console.print(table)
        keys_file = self.settings.data_dir / ".upah" / "demo-keys.txt"
        keys_file.write_text("".join(f"{who}: {key}\n" for who, key in cast.keys.items()), encoding="utf-8")
        keys_file.chmod(0o600)
        shown = {k: v for k, v in cast.keys.items() if "buyer)" in k or "auditor" in k}
        self.console.print(
            Panel.fit(
                "Run [bold]upah serve[/bold] and open http://127.0.0.1:8000/ — sign in with one of these:\n"
                + "\n".join(f"{who}: {key}" for who, key in list(shown.items())[:3])
                + f"\n(all the demo's keys are in {keys_file})",
                title="See it in the dashboard",
            )
        )

    @contextmanager
    def _progress(self) -> Iterator[Progress]:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        ) as progress:
            yield progress


def _collapsed(trail: list[dict[str, Any]]) -> list[str]:
    """A payout's transitions, repeats of one status folded into one step with their sources."""
    steps: list[tuple[str, list[str]]] = []
    for event in trail:
        if steps and steps[-1][0] == event["to"]:
            steps[-1][1].append(event["source"])
        else:
            steps.append((event["to"], [event["source"]]))
    return [f"{status} ({', '.join(dict.fromkeys(sources))})" for status, sources in steps]


def rupiah(amount: int) -> str:
    return "Rp" + f"{amount:,}".replace(",", ".")


def rupiah_text(value: object) -> str:
    """A decimal string of rupiah, as Indonesians write it (Rp1.234,5)."""
    whole, _, cents = str(value).partition(".")
    cents = cents.rstrip("0")[:2]
    return rupiah(int(whole)) + (f",{cents}" if cents else "")


def percent(ratio: str | None) -> str:
    return "—" if ratio is None else f"{(Decimal(ratio) * 100).quantize(Decimal('0.1'))}%"
