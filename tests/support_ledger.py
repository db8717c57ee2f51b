"""Helpers for ledger tests: PostgreSQL databases per test session and the LedgerHarness.

Importable from any test module as `support_ledger` (pytest's `pythonpath` includes tests/).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEST_POSTGRES_ENV = "TOKENBRIDGE_TEST_POSTGRES_URL"


def create_postgres_database(server_url: str, prefix: str = "tb") -> tuple[str, str]:
    """CREATE DATABASE <prefix>_<random> on the server; return (url of the new db, its name)."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{secrets.token_hex(6)}"
    server = make_url(server_url).set(drivername="postgresql")
    with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.set(database=name).render_as_string(hide_password=False), name


def drop_postgres_database(server_url: str, name: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(server_url).set(drivername="postgresql")
    with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


LEDGER_WEBHOOK_SECRETS = ("whsec_ledger_test_new", "whsec_ledger_test_old")


class LedgerHarness:
    """Services on one database plus the few helpers every ledger test needs."""

    def __init__(self, url: str, **overrides: object) -> None:
        from tokenbridge.bootstrap import build_services
        from tokenbridge.config import load_settings

        settings: dict[str, object] = {
            "database_url": url,
            "webhook_secrets": ",".join(LEDGER_WEBHOOK_SECRETS),
            "creator_bps": 7_000,
        }
        settings.update(overrides)
        self.url = url
        self.services = build_services(load_settings(**settings))

    def uid(self, prefix: str = "t") -> str:
        return f"{prefix}-{secrets.token_hex(6)}"

    def event(
        self, event_type: str, account_id: str, amount: int, payment_id: str, event_id: str | None = None
    ) -> bytes:
        import json

        body = {
            "id": event_id or self.uid("evt"),
            "type": event_type,
            "data": {"payment_id": payment_id, "account_id": account_id, "amount": amount},
        }
        return json.dumps(body).encode()

    def deliver(self, body: bytes, secret: str = LEDGER_WEBHOOK_SECRETS[0], t: int | None = None) -> object:
        import time

        from tokenbridge.domain.recharge import signature_header

        ts = int(time.time()) if t is None else t
        return self.services.payments.handle_webhook(body, signature_header([secret.encode()], ts, body), now=None)

    def recharge(self, account_id: str, amount: int, payment_id: str | None = None) -> str:
        pid = payment_id or self.uid("pay")
        self.deliver(self.event("recharge.succeeded", account_id, amount, pid))
        return pid

    def user(self, amount: int = 0, **flags: bool) -> str:
        account_id = self.uid("u")
        self.services.accounts.open(account_id, "user", **flags)
        if amount:
            self.recharge(account_id, amount)
        return account_id

    def creator(self, **flags: bool) -> str:
        account_id = self.uid("c")
        self.services.accounts.open(account_id, "creator", **flags)
        return account_id

    def close(self) -> None:
        self.services.close()


@contextmanager
def fresh_database(backend: str, tmp_dir: Path, prefix: str) -> Iterator[str]:
    """A new, migrated database used by one test only: a SQLite file in `tmp_dir`, or a PostgreSQL
    database `<prefix>_<random>` on TOKENBRIDGE_TEST_POSTGRES_URL (skipped with the reason when unset),
    dropped afterwards."""
    import pytest

    from tokenbridge.adapters.db import migrate

    if backend == "sqlite":
        url = f"sqlite:///{tmp_dir / f'{prefix}.sqlite3'}"
        migrate.upgrade(url)
        yield url
        return
    server = os.environ.get(TEST_POSTGRES_ENV)
    if not server:
        pytest.skip(f"PostgreSQL tests need {TEST_POSTGRES_ENV}")
    url, name = create_postgres_database(server, prefix=prefix)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop_postgres_database(server, name)


@contextmanager
def own_ledger(backend: str, tmp_dir: Path, prefix: str) -> Iterator[LedgerHarness]:
    """A `LedgerHarness` on a `fresh_database` of its own, closed and dropped afterwards."""
    with fresh_database(backend, tmp_dir, prefix) as url:
        h = LedgerHarness(url)
        try:
            yield h
        finally:
            h.close()
