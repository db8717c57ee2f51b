"""Who may call what: every route of the app, generated from its route table.

`POLICY` names each (method, path template) with its access rule and how to build a
request for the caller's own resource and for another account's. A route the app serves
that is missing here fails `test_every_route_has_a_policy`, so a new endpoint cannot
ship without its auth cases.

Rules (docs/api.md): `admin` may do everything; `app` may do account and gift
operations; an `app` key bound to an account may only act on / read that account;
webhooks authenticate by signature; operations endpoints and docs are public.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from tokenbridge.entrypoints.api.deps import AUTH_DEPENDENCIES

from .conftest import Api, auth, recharge_event, sign, uid


@dataclass
class World:
    """Two users and two creators with funds and one gift each; `alice` is the caller's own account."""

    alice: str
    bob: str  # creator alice tips
    carol: str  # another user
    dave: str  # another creator
    alice_gift: str
    carol_gift: str
    alice_key: str  # app key bound to alice


@dataclass
class Req:
    method: str
    url: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] | None = None


Build = Callable[[World], Req]


@dataclass
class Policy:
    access: str  # "public" | "webhook" | "app" | "admin"
    own: Build
    other: Build | None = None  # a request on another account's resource (app routes only)
    bound_own: bool = True  # whether a key bound to alice may make the `own` request
    chain: bool = False  # settlement route: needs a chain, so this app answers 503 after auth (2xx cases in
    # tests/api/test_settlement_routes.py, which wires a vault on anvil)


def _gift(sender: str, to: str) -> dict[str, Any]:
    return {"id": uid("g"), "from": sender, "to": to, "amount": 1}


_SIG = "0x" + "11" * 65
_WALLET = "0x" + "22" * 20


def _link_body() -> dict[str, Any]:
    return {"wallet": _WALLET, "deadline": 2**40, "signature": _SIG}


def _withdrawal_body(creator: str) -> dict[str, Any]:
    return {"id": uid("w"), "creator_id": creator, "to": _WALLET, "amount": 1, "deadline": 2**40, "signature": _SIG}


def _signed_recharge(w: World) -> Req:
    body = recharge_event(w.alice, 5)
    return Req("POST", "/v1/webhooks/payments", content=body, headers={"Tokenbridge-Signature": sign(body)})


POLICY: dict[tuple[str, str], Policy] = {
    ("POST", "/v1/accounts"): Policy(
        "app",
        own=lambda w: Req("POST", "/v1/accounts", json={"id": w.alice, "kind": "user"}),
        other=lambda _: Req("POST", "/v1/accounts", json={"id": uid("new"), "kind": "user"}),
    ),
    ("GET", "/v1/accounts/{account_id}"): Policy(
        "app",
        own=lambda w: Req("GET", f"/v1/accounts/{w.alice}"),
        other=lambda w: Req("GET", f"/v1/accounts/{w.carol}"),
    ),
    ("GET", "/v1/accounts"): Policy(
        "app",
        own=lambda _: Req("GET", "/v1/accounts?limit=5"),
        other=lambda _: Req("GET", "/v1/accounts?limit=5"),
        bound_own=False,  # listing every account is never a bound key's own resource
    ),
    ("PATCH", "/v1/accounts/{account_id}"): Policy(
        "admin", own=lambda w: Req("PATCH", f"/v1/accounts/{w.alice}", json={"is_minor": False})
    ),
    ("POST", "/v1/gifts"): Policy(
        "app",
        own=lambda w: Req("POST", "/v1/gifts", json=_gift(w.alice, w.bob)),
        other=lambda w: Req("POST", "/v1/gifts", json=_gift(w.carol, w.bob)),
    ),
    ("POST", "/v1/gifts/batch"): Policy(
        "app",
        own=lambda w: Req("POST", "/v1/gifts/batch", json={"gifts": [_gift(w.alice, w.bob)]}),
        other=lambda w: Req("POST", "/v1/gifts/batch", json={"gifts": [_gift(w.alice, w.bob), _gift(w.carol, w.dave)]}),
    ),
    ("GET", "/v1/gifts/{gift_id}"): Policy(
        "app",
        own=lambda w: Req("GET", f"/v1/gifts/{w.alice_gift}"),
        other=lambda w: Req("GET", f"/v1/gifts/{w.carol_gift}"),
    ),
    ("GET", "/v1/gifts"): Policy(
        "app",
        own=lambda w: Req("GET", f"/v1/gifts?account_id={w.alice}"),
        other=lambda w: Req("GET", f"/v1/gifts?account_id={w.carol}"),
    ),
    ("POST", "/v1/api-keys"): Policy("admin", own=lambda _: Req("POST", "/v1/api-keys", json={"scope": "app"})),
    ("POST", "/v1/webhooks/payments"): Policy("webhook", own=_signed_recharge),
    ("GET", "/healthz"): Policy("public", own=lambda _: Req("GET", "/healthz")),
    ("GET", "/readyz"): Policy("public", own=lambda _: Req("GET", "/readyz")),
    ("GET", "/metrics"): Policy("public", own=lambda _: Req("GET", "/metrics")),
    ("GET", "/openapi.json"): Policy("public", own=lambda _: Req("GET", "/openapi.json")),
    ("GET", "/docs"): Policy("public", own=lambda _: Req("GET", "/docs")),
    ("GET", "/docs/oauth2-redirect"): Policy("public", own=lambda _: Req("GET", "/docs/oauth2-redirect")),
    ("GET", "/redoc"): Policy("public", own=lambda _: Req("GET", "/redoc")),
    # the transparency page (entrypoints/web), mounted by `tokenbridge serve` and by the `api` fixture
    ("GET", "/"): Policy("public", own=lambda _: Req("GET", "/")),
    ("GET", "/web/app.js"): Policy("public", own=lambda _: Req("GET", "/web/app.js")),
    ("GET", "/web/style.css"): Policy("public", own=lambda _: Req("GET", "/web/style.css")),
    ("POST", "/v1/creators/{creator_id}/wallet"): Policy(
        "app",
        own=lambda w: Req("POST", f"/v1/creators/{w.bob}/wallet", json=_link_body()),
        other=lambda w: Req("POST", f"/v1/creators/{w.dave}/wallet", json=_link_body()),
        bound_own=False,  # alice is a user; the bound case is covered with a creator key in test_settlement_routes
        chain=True,
    ),
    ("POST", "/v1/withdrawals"): Policy(
        "app",
        own=lambda w: Req("POST", "/v1/withdrawals", json=_withdrawal_body(w.bob)),
        other=lambda w: Req("POST", "/v1/withdrawals", json=_withdrawal_body(w.dave)),
        bound_own=False,
        chain=True,
    ),
    ("GET", "/v1/withdrawals/{withdrawal_id}"): Policy(
        "app", own=lambda _: Req("GET", "/v1/withdrawals/w-1"), chain=True
    ),
    ("GET", "/v1/accounts/{account_id}/balance-proof"): Policy(
        "app",
        own=lambda w: Req("GET", f"/v1/accounts/{w.alice}/balance-proof"),
        other=lambda w: Req("GET", f"/v1/accounts/{w.carol}/balance-proof"),
        chain=True,
    ),
    ("GET", "/v1/public/split"): Policy("public", own=lambda _: Req("GET", "/v1/public/split"), chain=True),
    ("GET", "/v1/public/epochs"): Policy("public", own=lambda _: Req("GET", "/v1/public/epochs"), chain=True),
    ("GET", "/v1/public/epochs/{epoch_id}"): Policy(
        "public", own=lambda _: Req("GET", "/v1/public/epochs/1"), chain=True
    ),
    ("GET", "/v1/public/gifts/{gift_id}/proof"): Policy(
        "public", own=lambda w: Req("GET", f"/v1/public/gifts/{w.alice_gift}/proof"), chain=True
    ),
    ("GET", "/v1/public/reserve"): Policy("public", own=lambda _: Req("GET", "/v1/public/reserve"), chain=True),
    ("GET", "/v1/gifts/{gift_id}/receipt"): Policy(
        "app",
        own=lambda w: Req("GET", f"/v1/gifts/{w.alice_gift}/receipt"),
        other=lambda w: Req("GET", f"/v1/gifts/{w.carol_gift}/receipt"),
        chain=True,  # the receipt with the sender's salt; 2xx in test_settlement_routes
    ),
}

KEYED = sorted(k for k, p in POLICY.items() if p.access in ("app", "admin"))
ADMIN_ONLY = sorted(k for k, p in POLICY.items() if p.access == "admin")
ACCOUNT_BOUND = sorted(k for k, p in POLICY.items() if p.other is not None)
BOUND_OWN = sorted(k for k in ACCOUNT_BOUND if POLICY[k].bound_own and not POLICY[k].chain)
KEYED_NO_CHAIN = sorted(k for k in KEYED if not POLICY[k].chain)


def _route_table(api: Api) -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}
    for context in iter_route_contexts(api.client.app.routes):  # type: ignore[attr-defined]
        for method in context.methods or ():
            if method != "HEAD":
                table[(method, context.path)] = context.original_route
    return table


def _auth_kinds(dependant: Any) -> set[str]:
    found = {kind for kind, fn in AUTH_DEPENDENCIES.items() if dependant.call is fn}
    for sub in dependant.dependencies:
        found |= _auth_kinds(sub)
    return found


def _send(api: Api, req: Req, key: str | None = None, extra: dict[str, str] | None = None) -> Any:
    headers = dict(req.headers or {}) | (auth(key) if key else {}) | (extra or {})
    return api.client.request(req.method, req.url, json=req.json, content=req.content, headers=headers)


@pytest.fixture(scope="module")
def world(api: Api) -> World:
    alice, bob, carol, dave = uid("alice"), uid("bob"), uid("carol"), uid("dave")
    for account_id, kind in ((alice, "user"), (bob, "creator"), (carol, "user"), (dave, "creator")):
        api.open(account_id, kind)
    api.fund(alice, 1_000)
    api.fund(carol, 1_000)
    gifts = []
    for sender, to in ((alice, bob), (carol, dave)):
        body = _gift(sender, to)
        r = api.client.post("/v1/gifts", json=body, headers=auth(api.admin_key))
        assert r.status_code == 201, r.text
        gifts.append(body["id"])
    return World(alice, bob, carol, dave, gifts[0], gifts[1], api.bound_key(alice))


def test_every_route_has_a_policy(api: Api) -> None:
    served = set(_route_table(api))
    assert served == set(POLICY), f"routes without a policy: {served - set(POLICY)}; stale: {set(POLICY) - served}"


def test_policy_matches_the_routes_auth_dependency(api: Api) -> None:
    table = _route_table(api)
    for key, policy in POLICY.items():
        dependant = getattr(table[key], "dependant", None)
        kinds = _auth_kinds(dependant) if dependant is not None else set()
        expected = {policy.access} if policy.access in ("app", "admin") else set()
        assert kinds == expected, f"{key}: route requires {kinds or 'no key'}, policy says {policy.access}"


@pytest.mark.parametrize("route", KEYED, ids=" ".join)
def test_no_key_is_401(api: Api, world: World, route: tuple[str, str]) -> None:
    r = _send(api, POLICY[route].own(world))
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/unauthorized")


@pytest.mark.parametrize("route", KEYED, ids=" ".join)
@pytest.mark.parametrize(
    "header", ["Bearer tb_not_a_real_key", "Bearer ", "Basic dXNlcjpwYXNz", "tb_raw_key_without_scheme"]
)
def test_invalid_key_is_401(api: Api, world: World, route: tuple[str, str], header: str) -> None:
    r = _send(api, POLICY[route].own(world), extra={"Authorization": header})
    assert r.status_code == 401, r.text
    assert r.json()["type"].endswith("/unauthorized")


@pytest.mark.parametrize("route", ADMIN_ONLY, ids=" ".join)
def test_app_scope_on_admin_route_is_403(api: Api, world: World, route: tuple[str, str]) -> None:
    for key in (api.app_key, world.alice_key):
        r = _send(api, POLICY[route].own(world), key)
        assert r.status_code == 403, r.text
        assert r.json()["type"].endswith("/forbidden")


@pytest.mark.parametrize("route", ACCOUNT_BOUND, ids=" ".join)
def test_bound_key_on_another_accounts_resource_is_403(api: Api, world: World, route: tuple[str, str]) -> None:
    policy = POLICY[route]
    assert policy.other is not None
    before = api.coins(world.carol)
    r = _send(api, policy.other(world), world.alice_key)
    assert r.status_code == 403, r.text
    assert r.json()["type"].endswith("/forbidden")
    assert api.coins(world.carol) == before  # refused before anything moved


@pytest.mark.parametrize("route", BOUND_OWN, ids=" ".join)
def test_bound_key_on_its_own_resource_is_2xx(api: Api, world: World, route: tuple[str, str]) -> None:
    r = _send(api, POLICY[route].own(world), world.alice_key)
    assert 200 <= r.status_code < 300, r.text


@pytest.mark.parametrize("route", KEYED_NO_CHAIN, ids=" ".join)
def test_sufficient_key_is_2xx(api: Api, world: World, route: tuple[str, str]) -> None:
    keys = [api.admin_key] if POLICY[route].access == "admin" else [api.app_key, api.admin_key]
    for key in keys:
        r = _send(api, POLICY[route].own(world), key)
        assert 200 <= r.status_code < 300, r.text


@pytest.mark.parametrize(
    "route", sorted(k for k, p in POLICY.items() if p.access == "public" and not p.chain), ids=" ".join
)
def test_public_routes_need_no_key(api: Api, world: World, route: tuple[str, str]) -> None:
    r = _send(api, POLICY[route].own(world))
    # /web/app.js answers 503 until the bundle is built (`make web`); never 401/403
    assert r.status_code == 200 or (route == ("GET", "/web/app.js") and r.status_code == 503), r.text


@pytest.mark.parametrize("route", sorted(k for k, p in POLICY.items() if p.chain), ids=" ".join)
def test_settlement_routes_without_a_chain_are_503_after_auth(api: Api, world: World, route: tuple[str, str]) -> None:
    policy = POLICY[route]
    r = _send(api, policy.own(world), api.admin_key if policy.access != "public" else None)
    assert r.status_code == 503, r.text
    assert r.json()["type"].endswith("/settlement-unavailable")


def test_webhook_ignores_api_keys_and_needs_a_signature(api: Api, world: World) -> None:
    req = _signed_recharge(world)
    unsigned = Req(req.method, req.url, content=req.content)
    for key in (None, api.admin_key):
        r = _send(api, unsigned, key)
        assert r.status_code == 401, r.text
        assert r.json()["type"].endswith("/invalid-signature")
    assert _send(api, req).status_code == 200


def test_creator_bound_key_reads_received_gift_without_the_senders_salt(api: Api, world: World) -> None:
    creator_key = api.bound_key(world.bob)
    r = _send(api, Req("GET", f"/v1/gifts/{world.alice_gift}"), creator_key)
    assert r.status_code == 200, r.text
    assert r.json()["sender_salt"] is None
    own = _send(api, Req("GET", f"/v1/gifts/{world.alice_gift}"), world.alice_key).json()
    assert own["sender_salt"] is not None


def test_creator_bound_key_cannot_fetch_the_senders_receipt_with_salt(api: Api, world: World) -> None:
    """The receipt with `sender` carries the sender's salt: the creator's key is refused before the chain."""
    r = _send(api, Req("GET", f"/v1/gifts/{world.alice_gift}/receipt"), api.bound_key(world.bob))
    assert r.status_code == 403, r.text
    assert r.json()["type"].endswith("/forbidden")
