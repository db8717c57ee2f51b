"""Fixtures shared by every test package: a real anvil node per session (free port,
killed by pid) and a snapshot/revert per test so chain tests stay isolated and fast."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tokenbridge.adapters.chain.devnet import Anvil, start_anvil


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def chain_snapshot(anvil: Anvil) -> Iterator[Anvil]:
    """Revert every chain change a test makes (evm_snapshot / evm_revert)."""
    snapshot = anvil.rpc("evm_snapshot")
    try:
        yield anvil
    finally:
        anvil.rpc("evm_revert", snapshot)


# --- ledger databases -----------------------------------------------------------------------
# `db_url` runs a test on SQLite (a temp file) and on PostgreSQL (skipped, with the reason
# shown by -ra, unless TOKENBRIDGE_TEST_POSTGRES_URL is set). Each test session creates its
# own PostgreSQL database `tb_<random>` (other runs share the server) and drops it at the
# end; migrations run through alembic. Tests isolate themselves with fresh ids, not resets.

import os  # noqa: E402

from support_ledger import (  # noqa: E402
    TEST_POSTGRES_ENV,
    LedgerHarness,
    create_postgres_database,
    drop_postgres_database,
)


@pytest.fixture(scope="session")
def sqlite_db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tokenbridge.adapters.db import migrate

    url = f"sqlite:///{tmp_path_factory.mktemp('ledger-db') / 'ledger.sqlite3'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get(TEST_POSTGRES_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {TEST_POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return url


@pytest.fixture(scope="session")
def postgres_db_url(postgres_server_url: str) -> Iterator[str]:
    from tokenbridge.adapters.db import migrate

    url, name = create_postgres_database(postgres_server_url)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop_postgres_database(postgres_server_url, name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database URL shared by the session, once per backend."""
    name = "sqlite_db_url" if request.param == "sqlite" else "postgres_db_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def ledger(db_url: str) -> Iterator[LedgerHarness]:
    harness = LedgerHarness(db_url)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def make_ledger(db_url: str) -> Iterator[object]:
    """Factory for harnesses with other settings (limits, rates) on the same database."""
    made: list[LedgerHarness] = []

    def make(**overrides: object) -> LedgerHarness:
        h = LedgerHarness(db_url, **overrides)
        made.append(h)
        return h

    try:
        yield make
    finally:
        for h in made:
            h.close()
