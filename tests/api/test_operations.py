"""Liveness, readiness, metrics, the catch-all 500, admin operations, and the OpenAPI document."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tokenbridge.bootstrap import Services
from tokenbridge.domain.errors import NotReady
from tokenbridge.entrypoints.api.app import create_app

from .conftest import Api, TestClient, auth, uid


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


class _Broken:
    """Stands in for a service: every call fails the way a lost database might."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __getattr__(self, _name: str) -> Any:
        def fail(*_a: object, **_k: object) -> None:
            raise self.exc

        return fail


def _app_with(services: Services, **replacements: object) -> TestClient:
    return TestClient(create_app(dataclasses.replace(services, **replacements)), raise_server_exceptions=False)


def test_healthz_and_readyz_answer_ok(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    r = api.client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "exc",
    [NotReady("schema at revision abc, head is def"), RuntimeError("connection to postgresql://u:hunter2@db failed")],
)
def test_readyz_is_503_problem_when_not_ready_and_leaks_no_secret(api: Api, exc: Exception) -> None:
    client = _app_with(api.services, health=_Broken(exc))
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/not-ready")
    assert "hunter2" not in r.text
    assert client.get("/healthz").status_code == 200  # liveness does not depend on the database


def test_unexpected_error_is_a_bare_500_problem(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    secret_error = RuntimeError("SELECT * FROM api_keys -- postgresql://u:hunter2@db")
    client = _app_with(api.services, gifts=_Broken(secret_error))
    with caplog.at_level(logging.ERROR, logger="tokenbridge.api"):
        r = client.get(f"/v1/gifts/{uid('g')}", headers=auth(api.admin_key))
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["type"].endswith("/internal-error")
    assert "hunter2" not in r.text
    assert "Traceback" not in r.text
    assert any("hunter2" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)  # logged server-side


def test_metrics_count_requests_by_route_template(api: Api) -> None:
    for _ in range(3):
        api.client.get(f"/v1/gifts/{uid('missing')}", headers=auth(api.admin_key))
    r = api.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    requests = _samples(r.text, "tokenbridge_http_requests_total")
    by_route = {(s["method"], s["route"], s["status"]): v for s, v in requests}
    assert by_route[("GET", "/v1/gifts/{gift_id}", "404")] >= 3
    assert not any(s["route"].startswith("/v1/gifts/missing") for s, _ in requests)  # templates, not raw paths
    latency = _samples(r.text, "tokenbridge_http_request_duration_seconds_count")
    assert any(s["route"] == "/v1/gifts/{gift_id}" and v >= 3 for s, v in latency)


def test_gifts_are_counted_in_metrics(api: Api) -> None:
    user, creator = uid("u"), uid("c")
    api.open(user, "user")
    api.open(creator, "creator")
    api.fund(user, 100)

    def count(result: str) -> float:
        text = api.client.get("/metrics").text
        return sum(v for s, v in _samples(text, "tokenbridge_gifts_total") if s["result"] == result)

    before_created, before_rejected = count("created"), count("rejected")
    gift = {"id": uid("g"), "from": user, "to": creator, "amount": 10}
    api.client.post("/v1/gifts", json=gift, headers=auth(api.app_key))
    api.client.post("/v1/gifts", json=gift | {"id": uid("g"), "amount": 10_000}, headers=auth(api.app_key))
    assert count("created") == before_created + 1
    assert count("rejected") == before_rejected + 1


def test_admin_creates_a_bound_key_that_works_once_shown(api: Api) -> None:
    account_id = uid("u")
    api.open(account_id)
    r = api.client.post("/v1/api-keys", json={"scope": "app", "account_id": account_id}, headers=auth(api.admin_key))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["scope"] == "app"
    assert created["account_id"] == account_id
    key = created["key"]
    assert api.client.get(f"/v1/accounts/{account_id}", headers=auth(key)).status_code == 200
    assert api.client.get("/v1/accounts", headers=auth(key)).status_code == 403


def test_admin_key_cannot_be_bound_and_unknown_account_is_404(api: Api) -> None:
    r = api.client.post("/v1/api-keys", json={"scope": "admin", "account_id": "x"}, headers=auth(api.admin_key))
    assert r.status_code == 422
    r = api.client.post("/v1/api-keys", json={"scope": "app", "account_id": uid("ghost")}, headers=auth(api.admin_key))
    assert r.status_code == 404


def test_admin_sets_flags(api: Api) -> None:
    account_id = uid("u")
    api.open(account_id)
    r = api.client.patch(f"/v1/accounts/{account_id}", json={"restricted": True}, headers=auth(api.admin_key))
    assert r.status_code == 200, r.text
    assert r.json()["restricted"] is True
    assert r.json()["is_minor"] is False


def test_openapi_declares_problems_and_security_for_every_operation(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    assert "Problem" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    for path, item in schema["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert any(c.startswith("2") for c in codes), (method, path)
            assert "422" in codes, (method, path)  # an unknown query parameter is a 422 on every route
            for code in (c for c in codes if c[0] in "45"):
                content = op["responses"][code].get("content", {})
                assert "application/problem+json" in content, (method, path, code)
            public = not path.startswith("/v1/") or path.startswith(("/v1/public/", "/v1/webhooks/"))
            if not public:
                assert op.get("security") == [{"ApiKey": []}], (method, path)
            if op.get("security"):
                assert "401" in codes, (method, path)


def test_key_revoked_in_this_process_stops_working_at_once(api: Api) -> None:
    account_id = uid("u")
    api.open(account_id)
    info, key = api.services.api_keys.create("app", account_id)
    assert api.client.get(f"/v1/accounts/{account_id}", headers=auth(key)).status_code == 200  # now cached
    api.services.api_keys.revoke(info.id)
    r = api.client.get(f"/v1/accounts/{account_id}", headers=auth(key))
    assert r.status_code == 401, r.text  # was: still 200 for up to 10 s
    assert r.headers["www-authenticate"] == "Bearer"
    # other cached keys keep working (re-read once)
    assert api.client.get(f"/v1/accounts/{account_id}", headers=auth(api.admin_key)).status_code == 200


def test_key_revoked_by_another_process_stops_working_within_the_cache_window(api: Api) -> None:
    """`tokenbridge apikey revoke` (another process) writes the row; this process's cache forgets it
    within KEY_CACHE_SECONDS (docs/api.md)."""
    import time

    from sqlalchemy import update

    from tokenbridge.adapters.db.models import ApiKey
    from tokenbridge.entrypoints.api.deps import KEY_CACHE_SECONDS

    assert KEY_CACHE_SECONDS <= 2.0
    account_id = uid("u")
    api.open(account_id)
    info, key = api.services.api_keys.create("app", account_id)
    assert api.client.get(f"/v1/accounts/{account_id}", headers=auth(key)).status_code == 200
    engine = api.services.engine
    assert engine is not None
    with engine.begin() as conn:  # what another process's revoke does: the row only, no in-process signal
        conn.execute(update(ApiKey).where(ApiKey.id == info.id).values(revoked_at=_utcnow()))
    revoked_at = time.monotonic()
    while api.client.get(f"/v1/accounts/{account_id}", headers=auth(key)).status_code == 200:
        assert time.monotonic() - revoked_at < KEY_CACHE_SECONDS + 1.0, "revoked key still accepted"
        time.sleep(0.1)
    assert time.monotonic() - revoked_at <= KEY_CACHE_SECONDS + 1.0


def _utcnow() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
