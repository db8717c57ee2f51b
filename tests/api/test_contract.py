"""The wire contract of DESIGN.md section 7, as clients see it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import Api, auth, uid

PROBLEM_KEYS = {"type", "title", "status", "detail"}
HEX32 = re.compile(r"^0x[0-9a-f]{64}$")


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == status
    assert body["type"] == f"https://tokenbridge.dev/problems/{code}"
    assert body["title"]
    assert body["detail"]
    return body


@pytest.fixture
def pair(api: Api) -> tuple[str, str]:
    """A funded user (1,000,000 units) and a creator."""
    user, creator = uid("u"), uid("c")
    api.open(user, "user")
    api.open(creator, "creator")
    api.fund(user, 1_000_000)
    return user, creator


# accounts


def test_open_account_201_then_200_with_the_same_account(api: Api) -> None:
    account_id = uid("u")
    first = api.client.post("/v1/accounts", json={"id": account_id, "kind": "user"}, headers=auth(api.app_key))
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["id"] == account_id
    assert body["kind"] == "user"
    assert HEX32.match(body["account_key"])
    assert body["balances"] == {"coins": 0, "earnings": 0, "held": 0, "debt": 0}
    again = api.client.post("/v1/accounts", json={"id": account_id, "kind": "user"}, headers=auth(api.app_key))
    assert again.status_code == 200
    assert again.json() == body


def test_open_account_with_another_kind_is_409(api: Api) -> None:
    account_id = uid("u")
    api.open(account_id, "user")
    r = api.client.post("/v1/accounts", json={"id": account_id, "kind": "creator"}, headers=auth(api.app_key))
    assert_problem(r, 409, "idempotency-conflict")


def test_get_account_shape(api: Api, pair: tuple[str, str]) -> None:
    user, _ = pair
    r = api.client.get(f"/v1/accounts/{user}", headers=auth(api.app_key))
    assert r.status_code == 200
    body = r.json()
    assert {"id", "kind", "account_key", "balances"} <= set(body)
    assert set(body["balances"]) == {"coins", "earnings", "held", "debt"}
    assert all(type(v) is int for v in body["balances"].values())
    assert body["balances"]["coins"] == 1_000_000


def test_unknown_account_is_404_problem(api: Api) -> None:
    assert_problem(api.client.get(f"/v1/accounts/{uid('nobody')}", headers=auth(api.app_key)), 404, "not-found")


@pytest.mark.parametrize("path", ["/v1/accounts/nul%00", "/v1/gifts/nul%00", "/v1/accounts/.hidden"])
def test_unsafe_ids_in_paths_are_422_never_500(api: Api, path: str) -> None:
    assert_problem(api.client.get(path, headers=auth(api.admin_key)), 422, "invalid-input")


def test_ids_may_contain_at_signs(api: Api) -> None:
    account_id = f"{uid('u')}@example.org"
    api.open(account_id)
    assert api.client.get(f"/v1/accounts/{account_id}", headers=auth(api.app_key)).json()["id"] == account_id


@pytest.mark.parametrize(
    "body",
    [
        {"id": "", "kind": "user"},
        {"id": "a" * 129, "kind": "user"},
        {"id": "has space", "kind": "user"},
        {"id": "../etc", "kind": "user"},
        {"id": "..", "kind": "user"},
        {"id": "nul\x00", "kind": "user"},
        {"id": "ok", "kind": "admin"},
        {"id": "ok"},
        {"id": 5, "kind": "user"},
        {"id": "ok", "kind": "user", "is_minor": 1},
        {"id": "ok", "kind": "user", "surprise": True},
    ],
)
def test_malformed_account_is_422(api: Api, body: dict[str, Any]) -> None:
    assert_problem(api.client.post("/v1/accounts", json=body, headers=auth(api.app_key)), 422, "invalid-input")


def test_accounts_paginate_without_gaps_or_repeats(api: Api) -> None:
    for _ in range(3):
        api.open(uid("page"), "user")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        r = api.client.get("/v1/accounts", params=params, headers=auth(api.admin_key))
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 2
        seen += [a["id"] for a in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages >= 2
    assert len(seen) == len(set(seen))
    total = api.client.get("/v1/accounts", params={"limit": 200}, headers=auth(api.admin_key)).json()
    if total["next_cursor"] is None:
        assert set(seen) == {a["id"] for a in total["items"]}


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"limit": "x"}, {"limt": 5}, {"cursor": "\x00"}, {"cursor": "a/b"}]
)
def test_bad_page_parameters_are_422(api: Api, params: dict[str, Any]) -> None:
    assert_problem(api.client.get("/v1/accounts", params=params, headers=auth(api.admin_key)), 422, "invalid-input")


# gifts


def test_gift_201_then_same_body_200_same_receipt_then_other_body_409(api: Api, pair: tuple[str, str]) -> None:
    user, creator = pair
    gift = {"id": uid("g"), "from": user, "to": creator, "amount": 1_000}
    first = api.client.post("/v1/gifts", json=gift, headers=auth(api.app_key))
    assert first.status_code == 201, first.text
    receipt = first.json()
    assert receipt["id"] == gift["id"]
    assert receipt["from"] == user
    assert receipt["to"] == creator
    assert receipt["gross"] == 1_000
    assert receipt["creator_bps"] == 7_000
    assert receipt["creator_amount"] == 1_000 * 7_000 // 10_000
    assert receipt["platform_amount"] == 1_000 - receipt["creator_amount"]
    assert receipt["status"] in ("posted", "settled")

    replay = api.client.post("/v1/gifts", json=gift, headers=auth(api.app_key))
    assert replay.status_code == 200
    assert replay.json() == receipt
    assert api.coins(user) == 1_000_000 - 1_000  # the replay moved nothing

    other = api.client.post("/v1/gifts", json=gift | {"amount": 1_001}, headers=auth(api.app_key))
    assert_problem(other, 409, "idempotency-conflict")
    assert api.coins(user) == 1_000_000 - 1_000

    fetched = api.client.get(f"/v1/gifts/{gift['id']}", headers=auth(api.app_key))
    assert fetched.status_code == 200
    assert fetched.json() == receipt


def test_gift_beyond_balance_is_409_insufficient_funds(api: Api, pair: tuple[str, str]) -> None:
    user, creator = pair
    r = api.client.post(
        "/v1/gifts", json={"id": uid("g"), "from": user, "to": creator, "amount": 1_000_001}, headers=auth(api.app_key)
    )
    assert_problem(r, 409, "insufficient-funds")
    assert api.coins(user) == 1_000_000


def test_gift_to_unknown_creator_is_a_client_error(api: Api, pair: tuple[str, str]) -> None:
    user, _ = pair
    r = api.client.post(
        "/v1/gifts", json={"id": uid("g"), "from": user, "to": uid("ghost"), "amount": 1}, headers=auth(api.app_key)
    )
    assert 400 <= r.status_code < 500
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("amount", "why"),
    [
        (0, "zero"),
        (-1, "negative"),
        (2**63, "2**63"),
        (2**64 + 5, "far beyond"),
        (1.0, "float"),
        (1.5, "fraction"),
        ("100", "string"),
        (True, "bool"),
        (None, "null"),
        ([1], "list"),
    ],
)
def test_bad_amount_is_422(api: Api, pair: tuple[str, str], amount: object, why: str) -> None:
    user, creator = pair
    body = {"id": uid("g"), "from": user, "to": creator, "amount": amount}
    problem = assert_problem(api.client.post("/v1/gifts", json=body, headers=auth(api.app_key)), 422, "invalid-input")
    assert "amount" in problem["detail"], why
    assert api.coins(user) == 1_000_000


def test_largest_valid_amount_passes_validation(api: Api, pair: tuple[str, str]) -> None:
    user, creator = pair
    r = api.client.post(
        "/v1/gifts", json={"id": uid("g"), "from": user, "to": creator, "amount": 2**63 - 1}, headers=auth(api.app_key)
    )
    # valid input, refused by the ledger (funds or daily limit), never by validation
    assert r.status_code in (403, 409), r.text
    assert r.json()["type"].rsplit("/", 1)[1] in ("insufficient-funds", "limit-exceeded")


@pytest.mark.parametrize("missing", ["id", "from", "to", "amount"])
def test_gift_missing_field_is_422_naming_it(api: Api, pair: tuple[str, str], missing: str) -> None:
    user, creator = pair
    body = {"id": uid("g"), "from": user, "to": creator, "amount": 5}
    del body[missing]
    problem = assert_problem(api.client.post("/v1/gifts", json=body, headers=auth(api.app_key)), 422, "invalid-input")
    assert missing in problem["detail"]


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"[]", b"null", b'{"id": "x"'])
def test_malformed_json_is_422_not_400_or_500(api: Api, raw: bytes) -> None:
    headers = auth(api.app_key) | {"Content-Type": "application/json"}
    assert_problem(api.client.post("/v1/gifts", content=raw, headers=headers), 422, "invalid-input")


def test_batch_reports_each_item(api: Api, pair: tuple[str, str]) -> None:
    user, creator = pair
    done = {"id": uid("g"), "from": user, "to": creator, "amount": 10}
    assert api.client.post("/v1/gifts", json=done, headers=auth(api.app_key)).status_code == 201
    items = [
        {"id": uid("g"), "from": user, "to": creator, "amount": 100},
        done,  # replay: 200
        done | {"amount": 11},  # other body: 409
        {"id": uid("g"), "from": user, "to": creator, "amount": 10**9},  # insufficient: 409
        {"id": uid("g"), "from": user, "to": creator, "amount": 200},
    ]
    r = api.client.post("/v1/gifts/batch", json={"gifts": items}, headers=auth(api.app_key))
    assert r.status_code == 200, r.text
    body = r.json()
    statuses = [res["status"] for res in body["results"]]
    assert statuses == [201, 200, 409, 409, 201]
    assert (body["created"], body["replayed"], body["failed"]) == (2, 1, 2)
    assert body["results"][0]["receipt"]["gross"] == 100
    assert body["results"][2]["problem"]["type"].endswith("/idempotency-conflict")
    assert body["results"][3]["problem"]["type"].endswith("/insufficient-funds")
    assert body["results"][3]["receipt"] is None
    assert api.coins(user) == 1_000_000 - 10 - 100 - 200


def test_batch_repeats_of_an_id_answer_like_sequential_posts(api: Api, pair: tuple[str, str]) -> None:
    user, creator = pair
    first = {"id": uid("g"), "from": user, "to": creator, "amount": 5}
    items = [first, first, first | {"amount": 6}]
    r = api.client.post("/v1/gifts/batch", json={"gifts": items}, headers=auth(api.app_key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [res["status"] for res in body["results"]] == [201, 200, 409]
    assert body["results"][0]["receipt"] == body["results"][1]["receipt"]
    got = api.client.get(f"/v1/gifts/{first['id']}", headers=auth(api.app_key))
    assert got.json() == body["results"][0]["receipt"]  # the batch receipt is the stored one
    assert api.coins(user) == 1_000_000 - 5


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_size_is_bounded(api: Api, pair: tuple[str, str], size: int) -> None:
    user, creator = pair
    items = [{"id": f"b{i}-{uid()}", "from": user, "to": creator, "amount": 1} for i in range(size)]
    assert_problem(
        api.client.post("/v1/gifts/batch", json={"gifts": items}, headers=auth(api.app_key)), 422, "invalid-input"
    )
    assert api.coins(user) == 1_000_000


def test_batch_with_one_malformed_item_is_rejected_whole(api: Api, pair: tuple[str, str]) -> None:
    user, creator = pair
    items = [
        {"id": uid("g"), "from": user, "to": creator, "amount": 1},
        {"id": uid("g"), "from": user, "to": creator, "amount": 0},
    ]
    problem = assert_problem(
        api.client.post("/v1/gifts/batch", json={"gifts": items}, headers=auth(api.app_key)), 422, "invalid-input"
    )
    assert "gifts.1.amount" in problem["detail"]
    assert api.coins(user) == 1_000_000


def test_gift_list_filters_by_account_and_paginates(api: Api, pair: tuple[str, str]) -> None:
    user, creator = pair
    ids = [uid("g") for _ in range(3)]
    for gift_id in ids:
        body = {"id": gift_id, "from": user, "to": creator, "amount": 7}
        assert api.client.post("/v1/gifts", json=body, headers=auth(api.app_key)).status_code == 201
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"account_id": creator, "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.client.get("/v1/gifts", params=params, headers=auth(api.app_key)).json()
        seen += [g["id"] for g in page["items"]]
        assert all(creator in (g["from"], g["to"]) for g in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)


def test_unknown_route_and_method_are_problems(api: Api) -> None:
    assert_problem(api.client.get("/v1/nothing-here"), 404, "not-found")
    r = api.client.delete("/v1/gifts", headers=auth(api.app_key))
    assert_problem(r, 405, "method-not-allowed")
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
