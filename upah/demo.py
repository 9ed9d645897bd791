"""`upah demo`: the pilot story told on the embedded default, step by step."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ledger import Account, AccountType, EntryDraft, Posting, atomic, journal, reports, sealing
from upah import bootstrap
from upah.migrate import upgrade
from upah.settings import Settings


def run(settings: Settings, *, reset: bool, console: Console) -> None:
    if reset and settings.database_url.startswith("sqlite:///"):
        path = settings.data_dir / settings.database_url.rsplit("/", 1)[1]
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    console.rule("[bold]Upah demo[/bold] — piece-rate pay straight to the homeworker's wallet")
    upgrade(settings.database_url)
    db = bootstrap.database(settings)
    keys = bootstrap.keys(settings)
    now = datetime.now(UTC)
    run_id = now.strftime("%Y%m%d%H%M%S%f")

    def post(s: object, key: str, description: str, *postings: Posting) -> None:
        journal.post(s, EntryDraft(f"demo-{run_id}-{key}", postings, now, description), now=now)  # type: ignore[arg-type]

    with Progress(console=console) as progress:
        task = progress.add_task("posting the story to the ledger", total=6)
        with atomic(db.sessions) as s:

            def open_(code: str, kind: AccountType, *, no_overdraft: bool = False) -> Account:
                return journal.open_account(
                    s,
                    code=f"demo-{run_id}-{code}",
                    type=kind,
                    currency="IDR",
                    owner="demo",
                    now=now,
                    no_overdraft=no_overdraft,
                )

            cash = open_("platform-cash", AccountType.ASSET)
            buyer = open_("buyer-available", AccountType.LIABILITY, no_overdraft=True)
            held = open_("order-held", AccountType.LIABILITY, no_overdraft=True)
            siti = open_("siti-earned", AccountType.LIABILITY, no_overdraft=True)
            agent = open_("perantara-commission", AccountType.LIABILITY, no_overdraft=True)
            flight = open_("provider-in-flight", AccountType.LIABILITY, no_overdraft=True)
            progress.advance(task)
            post(
                s,
                "deposit",
                "buyer deposit",
                Posting.debit(cash.id, 5_000_000, "IDR"),
                Posting.credit(buyer.id, 5_000_000, "IDR"),
            )
            progress.advance(task)
            post(
                s,
                "order",
                "order hold: 1,000 pairs at Rp 500 + Rp 100 commission",
                Posting.debit(buyer.id, 600_000, "IDR"),
                Posting.credit(held.id, 600_000, "IDR"),
            )
            progress.advance(task)
            post(
                s,
                "confirm",
                "950 pairs accepted, 50 rejected (lem belepotan)",
                Posting.debit(held.id, 570_000, "IDR"),
                Posting.credit(siti.id, 475_000, "IDR"),
                Posting.credit(agent.id, 95_000, "IDR"),
            )
            progress.advance(task)
            post(
                s,
                "payout",
                "payout dispatched",
                Posting.debit(siti.id, 475_000, "IDR"),
                Posting.credit(flight.id, 475_000, "IDR"),
            )
            post(
                s,
                "settled",
                "payout confirmed by provider",
                Posting.debit(flight.id, 475_000, "IDR"),
                Posting.credit(cash.id, 475_000, "IDR"),
            )
            progress.advance(task)
        with atomic(db.sessions) as s:
            sealing.seal(s, now=now, signing_key=keys.signing_key)
            sealing.checkpoint(s, now=now, signing_key=keys.signing_key)
        progress.advance(task)

    with db.sessions() as s:
        table = Table(title="balances after the story (rupiah)")
        table.add_column("account")
        table.add_column("balance", justify="right")
        for label, account in (
            ("platform cash", cash),
            ("buyer available", buyer),
            ("order held", held),
            ("Siti earned (owed)", siti),
            ("perantara commission", agent),
        ):
            table.add_row(label, f"{journal.balance(s, account.id).posted:,}")
        console.print(table)
        report = reports.verify_chain(s)
    status = "[green]intact[/green]" if report.ok else "[red]BROKEN[/red]"
    console.print(
        f"hash chain: {status} ({report.entries_checked} entries, {report.checkpoints_checked} checkpoints)"
    )
