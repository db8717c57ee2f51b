"""Migrations: one history for SQLite and PostgreSQL, matching the models exactly, and
reversible; the `tokenbridge db` and `apikey` commands on top of them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text, update
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from support_ledger import TEST_POSTGRES_ENV, LedgerHarness, create_postgres_database, drop_postgres_database
from tokenbridge.adapters.db import migrate
from tokenbridge.adapters.db.engine import make_engine
from tokenbridge.adapters.db.models import Account, Base


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A brand-new, unmigrated database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    server = os.environ.get(TEST_POSTGRES_ENV)
    if not server:
        pytest.skip(f"PostgreSQL tests need {TEST_POSTGRES_ENV}")
    url, name = create_postgres_database(server, "tb_mig")
    try:
        yield url
    finally:
        drop_postgres_database(server, name)


def test_upgrade_matches_models_and_downgrade_reverses(empty_db_url: str) -> None:
    head = migrate.head_revision(empty_db_url)
    assert migrate.current_revision_for(empty_db_url) is None
    migrate.upgrade(empty_db_url)
    assert migrate.current_revision_for(empty_db_url) == head
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
            assert diffs == []
            if conn.dialect.name == "postgresql":  # 0008: gift ids compare bytewise (memcmp, not strcoll)
                collation = conn.execute(
                    text(
                        "SELECT collation_name FROM information_schema.columns"
                        " WHERE table_name = 'gifts' AND column_name = 'id'"
                    )
                ).scalar_one()
                assert collation == "C"
                options = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'accounts'")).scalar_one()
                assert options == ["fillfactor=25"]  # 0008: room for HOT balance updates
            assert {
                "accounts",
                "transfers",
                "transfer_legs",
                "gifts",
                "payments",
                "payment_events",
                "outbox",
                "holds",
                "api_keys",
                "system_balances",
            } <= set(inspect(conn).get_table_names())
        migrate.downgrade(empty_db_url, "base")
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    migrate.upgrade(empty_db_url)
    assert migrate.current_revision_for(empty_db_url) == head


def test_database_refuses_negative_balances(ledger: LedgerHarness) -> None:
    alice = ledger.user(5)
    engine = ledger.services.engine
    assert engine is not None
    for column in ("coins", "debt", "held", "earnings"):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(update(Account).where(Account.id == alice).values({column: -1}))
    assert ledger.services.accounts.get(alice).balances.coins == 5


def test_health_not_ready_before_migrations(tmp_path: Path) -> None:
    from tokenbridge.domain.errors import NotReady

    h = LedgerHarness(f"sqlite:///{tmp_path / 'unmigrated.sqlite3'}")
    try:
        with pytest.raises(NotReady, match="db upgrade"):
            h.services.health.ready()
    finally:
        h.close()


def test_cli_db_and_apikey(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenbridge.entrypoints.cli import app

    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    runner = CliRunner()
    r = runner.invoke(app, ["db", "current", "--url", url])
    assert r.exit_code == 0, r.output
    assert "current base" in r.output
    r = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert r.exit_code == 0, r.output
    assert migrate.current_revision_for(url) == migrate.head_revision(url)

    r = runner.invoke(app, ["apikey", "create", "--scope", "admin", "--url", url])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("tb_")
    h = LedgerHarness(url)
    try:
        info = h.services.api_keys.authenticate(key)
        assert info.scope == "admin"
        r = runner.invoke(app, ["apikey", "list", "--url", url])
        assert info.id in r.output
        assert key not in r.output  # never printed again
        r = runner.invoke(app, ["apikey", "revoke", info.id, "--url", url])
        assert r.exit_code == 0, r.output
        assert h.services.api_keys.list()[0].revoked
    finally:
        h.close()
    r = runner.invoke(app, ["apikey", "create", "--scope", "root", "--url", url])
    assert r.exit_code != 0

    r = runner.invoke(app, ["db", "downgrade", "base", "--url", url])
    assert r.exit_code == 0, r.output
    assert migrate.current_revision_for(url) is None
