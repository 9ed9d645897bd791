"""The migrated schema is exactly what the models describe, on both databases; migrations that
move data move it both ways."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, select, text

from ledger import atomic
from ledger.tables import Base
from payments import payouts
from payments.tables import PayoutRunRow
from tests.payments.scenario import earn, make_buyer, make_worker, run
from upah.db import make_engine, make_session_factory
from upah.migrate import alembic_config, upgrade


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_migrated_postgresql_schema_matches_the_models(pg_engine: Engine) -> None:
    assert _diff(pg_engine) == []


def test_migrated_sqlite_schema_matches_the_models(sqlite_engine: Engine) -> None:
    assert _diff(sqlite_engine) == []


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runs.db'}"
        upgrade(url)
        return url
    return str(request.getfixturevalue("fresh_pg_url"))


def test_a_run_rejected_before_0014_is_rejected_after_it_and_a_completed_run_stays_completed(
    migrated_url: str,
) -> None:
    url = migrated_url
    engine = make_engine(url)
    factory = make_session_factory(engine)
    buyer = make_buyer(factory)
    earn(factory, buyer, make_worker(factory, buyer), 50_000)
    needs_approval = payouts.RunPolicy(
        provider="sandbox", minimum_payout=1_000, approval_threshold=10_000, fee_per_payout=0
    )
    rejected = run(factory, buyer, needs_approval).id
    with atomic(factory) as s:
        payouts.reject_run(s, principal=buyer.checker, run_id=rejected, now=datetime.now(UTC))
    empty = run(factory, make_buyer(factory), needs_approval).id  # nobody to pay: completed at once

    def statuses() -> list[str]:
        with factory() as s:
            query = select(PayoutRunRow.status).where(PayoutRunRow.id.in_([rejected, empty]))
            return list(s.execute(query.order_by(PayoutRunRow.id)).scalars())

    assert statuses() == ["rejected", "completed"]
    engine.dispose()
    command.downgrade(alembic_config(url), "0013")
    assert statuses() == ["completed", "completed"]
    engine.dispose()
    upgrade(url)
    assert statuses() == ["rejected", "completed"]
    engine.dispose()


def test_0015_posts_batches_by_account_probes_and_its_downgrade_restores_0007s_function(
    fresh_pg_url: str,
) -> None:
    def source() -> str:
        engine = make_engine(fresh_pg_url)
        try:
            with engine.connect() as conn:
                query = text("SELECT prosrc FROM pg_proc WHERE proname = 'ledger_post_entries'")
                return str(conn.execute(query).scalar_one())
        finally:
            engine.dispose()

    probes = ("WHERE id = ANY(f_accounts)", "AND x.id = ANY(u_ids)")
    assert all(p in source() for p in probes)
    command.downgrade(alembic_config(fresh_pg_url), "0014")
    assert not any(p in source() for p in probes)
    assert "WHERE id IN (SELECT DISTINCT a FROM unnest(f_accounts) AS a)" in source()
    upgrade(fresh_pg_url)
    assert all(p in source() for p in probes)
