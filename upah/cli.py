"""The `upah` command line (CONTRACT.md): operators, auditors and the demo."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ledger import atomic, reports, retrying, sealing
from payments import parties, rotation
from payments.errors import PaymentsError
from upah import bootstrap
from upah.migrate import upgrade
from upah.settings import get_settings

app = typer.Typer(help="Upah: piece-rate payments for homeworkers.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
ledger_app = typer.Typer(help="The ledger's proof: seal and verify.", no_args_is_help=True)
org_app = typer.Typer(help="Organisations (operators).", no_args_is_help=True)
key_app = typer.Typer(help="API keys (operators).", no_args_is_help=True)
keys_app = typer.Typer(
    help="Personal-data encryption keys (UPAH_SECRET_KEYS): status and rotation.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
app.add_typer(org_app, name="org")
app.add_typer(key_app, name="key")
app.add_typer(keys_app, name="keys")

console = Console()
err = Console(stderr=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration to DATABASE_URL."""
    settings = get_settings()
    upgrade(settings.database_url)
    console.print("[green]database is up to date[/green]")


def _bootstrapping_database() -> bootstrap.Database:
    """The database for the commands that set up a fresh one (organisations, keys): on the
    embedded default its file is created and migrated first, as ``upah serve`` does; a server
    database is the operator's to upgrade (``upah db upgrade``)."""
    settings = get_settings()
    if settings.is_embedded and settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)
    return bootstrap.database(settings)


@org_app.command("create")
def org_create(
    name: str,
    kind: Annotated[parties.OrganizationKind, typer.Option("--kind", help="buyer or intermediary")],
) -> None:
    """Create an organisation; prints its id."""
    db = _bootstrapping_database()
    try:
        with atomic(db.sessions) as s:
            org = parties.create_organization(s, name=name, kind=kind, now=datetime.now(UTC))
    finally:
        db.engine.dispose()
    console.print(org.id)


@key_app.command("create")
def key_create(
    role: Annotated[parties.Role, typer.Option("--role", help="buyer, intermediary, auditor or admin")],
    org: Annotated[
        int | None, typer.Option("--org", help="the organisation; none for admin or platform auditors")
    ] = None,
) -> None:
    """Mint an API key and print it once; only its hash is kept."""
    db = _bootstrapping_database()
    try:
        with atomic(db.sessions) as s:
            key = parties.create_api_key(s, organization_id=org, role=role, now=datetime.now(UTC))
    except PaymentsError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from None
    finally:
        db.engine.dispose()
    typer.echo(key)


@keys_app.command("status")
def keys_status() -> None:
    """Count the rows still sealed or indexed with an older key; exit 1 while any remain."""
    settings = get_settings()
    db = bootstrap.database(settings)
    keyring = bootstrap.keys(settings).keyring
    try:
        with db.sessions() as s:
            counts = rotation.status(s, keyring=keyring)
            pins = rotation.stale_pins(s, keyring=keyring)
    finally:
        db.engine.dispose()
    table = Table(title=f"personal data by key (primary key {keyring.primary_key_id})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("on older keys", justify="right")
    for count in counts:
        table.add_row(count.table, str(count.rows), str(count.stale))
    console.print(table)
    console.print(
        f"USSD PINs still made with an older key: {pins} (each is rehashed at her next right PIN; "
        "once its key is dropped, POST /v1/homeworkers/{id}/pin-reset lets her set a new one)"
    )
    if any(count.stale for count in counts):
        console.print("[yellow]run `upah keys rotate` before dropping an older key[/yellow]")
        raise typer.Exit(1)
    console.print("[green]no personal data is left on an older key[/green]")


@keys_app.command("rotate")
def keys_rotate(
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="rows per transaction")
    ] = rotation.DEFAULT_BATCH,
) -> None:
    """Seal again and reindex with the first key of UPAH_SECRET_KEYS every value still on an older
    key, in small transactions, while the service runs. Safe to stop and to run again.

    Exit 1 if some value cannot be opened with any key of UPAH_SECRET_KEYS (it is left as it is).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    settings = get_settings()
    db = bootstrap.database(settings)
    keyring = bootstrap.keys(settings).keyring
    results: list[tuple[rotation.Count, int, int]] = []
    try:
        with db.sessions() as s:
            counts = rotation.status(s, keyring=keyring)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console) as progress:
            for target, count in zip(rotation.TARGETS, counts, strict=True):
                task = progress.add_task(target.name, total=count.stale)
                rewritten = unreadable = 0
                after: tuple[Any, ...] | None = None
                while True:
                    step = partial(
                        rotation.rotate_batch, keyring=keyring, target=target, after=after, limit=batch_size
                    )
                    batch = retrying(db.sessions, step)
                    if batch.last is None:
                        break
                    after = batch.last
                    rewritten += batch.rewritten
                    unreadable += batch.unreadable
                    progress.advance(task, batch.rewritten + batch.unreadable)
                results.append((count, rewritten, unreadable))
    finally:
        db.engine.dispose()
    table = Table(title=f"rotated to key {keyring.primary_key_id}")
    table.add_column("table")
    table.add_column("rewritten", justify="right")
    table.add_column("already current", justify="right")
    table.add_column("unreadable", justify="right")
    for count, rewritten, unreadable in results:
        table.add_row(count.table, str(rewritten), str(count.current), str(unreadable))
    console.print(table)
    total = sum(r for _, r, _ in results)
    left = sum(u for _, _, u in results)
    console.print(f"rewritten {total} rows; already current {sum(c.current for c, _, _ in results)}")
    if left:
        err.print(
            f"[red]{left} rows hold a value that no key of UPAH_SECRET_KEYS opens (see the log); "
            "they were left as they are[/red]"
        )
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="API processes, each listening on its own socket (SO_REUSEPORT) so that "
            "connections spread over them; more than one needs REDIS_URL.",
        ),
    ] = 1,
) -> None:
    """Run the API and dashboard. On the embedded default (no REDIS_URL) also a Celery worker
    (a child process, on a broker that needs no server) and the sandbox provider under /sandbox."""
    import uvicorn

    from upah import serving

    if "upah_public_url" not in get_settings().model_fields_set:
        # Callbacks, and on the embedded default the worker's calls to the mounted sandbox,
        # reach this server where it listens (the worker and the workers inherit this).
        os.environ["UPAH_PUBLIC_URL"] = public_url(host, port)
        get_settings.cache_clear()
    settings = get_settings()
    if workers > 1:
        if settings.is_embedded:
            err.print(
                "[red]--workers above 1 needs a broker (REDIS_URL): the embedded default's worker "
                "and sandbox provider live in the one API process[/red]"
            )
            raise typer.Exit(2)
        try:
            raise typer.Exit(serving.serve("api.main:serve_app", host=host, port=port, workers=workers))
        except serving.AddressInUse as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    worker = None
    if settings.is_embedded:
        upgrade(settings.database_url)
        worker = subprocess.Popen(bootstrap.worker_command(beat=True, pool="solo", concurrency=1))  # noqa: S603
    try:
        uvicorn.run("api.main:serve_app", factory=True, host=host, port=port, log_level="info")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)


def public_url(host: str, port: int) -> str:
    """The address a server listening on ``host:port`` is reached at from this machine."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - naming the wildcard, not binding to it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@app.command("worker")
def worker_command(
    beat: Annotated[
        bool, typer.Option("--beat", help="Also run the periodic schedule (one process only).")
    ] = False,
    concurrency: Annotated[int, typer.Option("--concurrency")] = 2,
    pool: Annotated[str, typer.Option("--pool", help="prefork, threads or solo")] = "prefork",
) -> None:
    """Run a Celery worker: dispatch, status resolution, SMS, sealing, sweeping."""
    command = bootstrap.worker_command(beat=beat, pool=pool, concurrency=concurrency)
    os.execv(command[0], command)  # noqa: S606 - becomes the worker, signals and all


@app.command("sandbox-provider")
def sandbox_provider(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8100,
) -> None:
    """Run the sandbox mobile-money provider on its own (CONTRACT.md: default 127.0.0.1:8100)."""
    import uvicorn

    from integrations.sandbox_server import FaultPlan, create_sandbox_app

    settings = get_settings()
    keys = bootstrap.keys(settings)
    sandbox = create_sandbox_app(
        store_path=bootstrap.sandbox_store(settings),
        callback_secret=keys.sandbox_callback_secret,
        faults=FaultPlan.parse(settings.upah_sandbox_faults),
    )
    uvicorn.run(sandbox, host=host, port=port, log_level="info")


@ledger_app.command("seal")
def ledger_seal() -> None:
    """Extend the hash chain over committed entries and sign a checkpoint of its head."""
    settings = get_settings()
    db = bootstrap.database(settings)
    keys = bootstrap.keys(settings)
    now = datetime.now(UTC)
    total = 0
    while True:
        with atomic(db.sessions) as s:
            sealed = sealing.seal(
                s, now=now, signing_key=keys.signing_key, checkpoint_every=settings.upah_checkpoint_every
            )
        total += sealed
        if sealed == 0:
            break
    with atomic(db.sessions) as s:
        head = sealing.checkpoint(s, now=now, signing_key=keys.signing_key)
    console.print(f"sealed {total} entries; checkpoint at seq {head}")


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Recompute the hash chain, check checkpoint signatures and balances; exit 1 on any break."""
    settings = get_settings()
    db = bootstrap.database(settings)
    with db.sessions() as s:
        report = reports.verify_chain(s)
    table = Table(title="ledger verification")
    table.add_column("check")
    table.add_column("result")
    table.add_row("entries checked", str(report.entries_checked))
    table.add_row("checkpoints checked", str(report.checkpoints_checked))
    table.add_row("entries not yet sealed", str(report.unsealed))
    table.add_row("problems", str(len(report.problems)))
    console.print(table)
    if not report.ok:
        first = report.first_break
        assert first is not None
        where = f" at sequence {first.seq}" if first.seq is not None else ""
        err.print(f"[red]BROKEN{where}: {first.message}[/red]")
        for problem in report.problems[:20]:
            err.print(f"  {problem.kind}: {problem.message}")
        raise typer.Exit(1)
    console.print("[green]OK: the chain is intact and the books balance[/green]")


@app.command()
def demo(
    reset: Annotated[bool, typer.Option("--reset", help="Start from an empty database.")] = False,
    postgres: Annotated[
        bool,
        typer.Option(
            "--postgres", help="On PostgreSQL and Redis (DATABASE_URL/REDIS_URL or local defaults)."
        ),
    ] = False,
) -> None:
    """The whole pilot story, end to end: seed, work, pay, phones, audit, report."""
    from upah import demo as story

    try:
        story.run(get_settings(), reset=reset, postgres=postgres, console=console)
    except story.DemoFailed as exc:
        err.print(f"[red]demo stopped: {exc}[/red]")
        raise typer.Exit(1) from None


# --- audit commands (issue 6): reconcile, export ---------------------------------------------------

export_app = typer.Typer(help="The books for auditors' own tools.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@app.command()
def reconcile(
    statement: Annotated[
        typer.FileBinaryRead, typer.Argument(help="the provider's statement CSV ('-' for stdin)")
    ],
    provider: Annotated[str, typer.Option("--provider", help="sandbox or xendit")],
    start: Annotated[
        datetime | None, typer.Option("--from", help="period start (default: first line's time)")
    ] = None,
    end: Annotated[
        datetime | None, typer.Option("--to", help="period end (default: last line's time)")
    ] = None,
    window_days: Annotated[int, typer.Option("--window-days", min=0, max=31)] = 3,
) -> None:
    """Match a provider's statement against the ledger's payouts and store the run.

    Exit 0 when every line matched, 1 when there are exceptions, 2 when the statement is refused.
    """
    from datetime import timedelta

    from payments import reconciliation

    settings = get_settings()
    db = bootstrap.database(settings)
    try:
        data = statement.read()
        with atomic(db.sessions) as s:
            run = reconciliation.reconcile_statement(
                s,
                data=data,
                provider=provider,
                principal=None,
                source=reconciliation.Source.CLI,
                keyring=bootstrap.keys(settings).keyring,
                now=datetime.now(UTC),
                period_from=start.replace(tzinfo=start.tzinfo or UTC) if start else None,
                period_to=end.replace(tzinfo=end.tzinfo or UTC) if end else None,
                window=timedelta(days=window_days),
            )
    except PaymentsError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from None
    table = Table(title=f"reconciliation {run.id}: {run.provider}, {run.lines} lines")
    table.add_column("class")
    table.add_column("count", justify="right")
    for name in reconciliation.CLASSES:
        table.add_row(name.value, str(run.summary.get(name.value, 0)))
    console.print(table)
    console.print(f"input sha256 {run.input_sha256}\nreport sha256 {run.report_sha256}")
    for e in run.exceptions[:50]:
        where = f"line {e.line}" if e.line is not None else f"payout {e.payout_id}"
        console.print(f"  {e.kind.value} ({where}): {e.detail.get('message', '')}")
    if len(run.exceptions) > 50:
        console.print(f"  … and {len(run.exceptions) - 50} more: GET /v1/reconciliations/{run.id}/report.csv")
    if run.exceptions:
        raise typer.Exit(1)


@export_app.command("beancount")
def export_beancount() -> None:
    """Write the whole book as Beancount to stdout: upah export beancount > books.beancount"""
    from ledger import export

    db = bootstrap.database(get_settings())
    with db.sessions() as s:
        export.write_beancount(s, sys.stdout)


@export_app.command("entries")
def export_entries() -> None:
    """Write every posting as CSV to stdout."""
    from ledger import export

    db = bootstrap.database(get_settings())
    with db.sessions() as s:
        export.write_entries_csv(s, sys.stdout)


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    app()


if __name__ == "__main__":
    main()
