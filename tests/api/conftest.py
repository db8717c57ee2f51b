"""Fixtures for the HTTP API tests: one app per database backend and test session.

Backends: SQLite (a temporary file) always; PostgreSQL when TOKENBRIDGE_TEST_POSTGRES_URL
is set: a database `tb_api_<random>` is created on that server for this session and
dropped at the end, since other test runs share the server. Tests isolate themselves by
using fresh ids (`uid()`), not by resetting the database, so the same app and
connection pool serve the whole session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

with warnings.catch_warnings():  # starlette warns once, at import, that httpx2 is preferred over httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

__all__ = ["TestClient"]

from tokenbridge.bootstrap import Services, build_services
from tokenbridge.config import load_settings
from tokenbridge.entrypoints.api.app import create_app
from tokenbridge.entrypoints.web import mount_web

WEBHOOK_SECRETS = ("whsec_api_test_current", "whsec_api_test_previous")


def uid(prefix: str = "t") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def sign(body: bytes, *, secret: str = WEBHOOK_SECRETS[0], t: int | None = None) -> str:
    ts = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def recharge_event(
    account_id: str, amount: int, *, event_id: str | None = None, payment_id: str | None = None
) -> bytes:
    event = {
        "id": event_id or uid("evt"),
        "type": "recharge.succeeded",
        "data": {"payment_id": payment_id or uid("pay"), "account_id": account_id, "amount": amount},
    }
    return json.dumps(event).encode()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Api:
    """The app under test, its services (to mint keys) and ready-made keys."""

    backend: str
    client: TestClient
    services: Services
    admin_key: str
    app_key: str

    def bound_key(self, account_id: str) -> str:
        _, plaintext = self.services.api_keys.create("app", account_id)
        return plaintext

    def open(self, account_id: str, kind: str = "user") -> dict[str, Any]:
        r = self.client.post("/v1/accounts", json={"id": account_id, "kind": kind}, headers=auth(self.admin_key))
        assert r.status_code in (200, 201), r.text
        body: dict[str, Any] = r.json()
        return body

    def fund(self, account_id: str, amount: int) -> None:
        body = recharge_event(account_id, amount)
        r = self.client.post("/v1/webhooks/payments", content=body, headers={"Tokenbridge-Signature": sign(body)})
        assert r.status_code == 200, r.text

    def coins(self, account_id: str) -> int:
        r = self.client.get(f"/v1/accounts/{account_id}", headers=auth(self.admin_key))
        assert r.status_code == 200, r.text
        coins: int = r.json()["balances"]["coins"]
        return coins


def _sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield f"sqlite:///{tmp_path_factory.mktemp('api-db') / 'api.sqlite3'}"


def _postgres_url(admin_url: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"tb_api_{secrets.token_hex(6)}"
    admin = make_url(admin_url).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    from tokenbridge.adapters.db import migrate

    if request.param == "sqlite":
        urls = _sqlite_url(tmp_path_factory)
    else:  # the shared fixture skips, saying why, when TOKENBRIDGE_TEST_POSTGRES_URL is unset
        urls = _postgres_url(request.getfixturevalue("postgres_server_url"))
    url = next(urls)
    try:
        migrate.upgrade(url)
        settings = load_settings(database_url=url, webhook_secrets=",".join(WEBHOOK_SECRETS), creator_bps=7_000)
        services = build_services(settings)
        try:
            app = create_app(services, settings)
            mount_web(app, settings)  # as `tokenbridge serve` does, so every served route is under test
            _, admin_key = services.api_keys.create("admin")
            _, app_key = services.api_keys.create("app")
            with TestClient(app) as client:
                yield Api(request.param, client, services, admin_key, app_key)
        finally:
            services.close()
    finally:
        urls.close()
