"""The served gift routes (`GiftFastPath`) answer exactly like the declared FastAPI routes.

`create_app(fast_path=False)` serves POST /v1/gifts and /v1/gifts/batch through FastAPI
(dependencies, body validation, exception handlers): the reference. Every request below,
good or bad, goes to both apps over the same services and database; status, problem
headers and bodies must be byte-identical (receipts of new gifts differ only in the ids
the test chose for each app).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json

from tokenbridge.domain.accounts import validate_id
from tokenbridge.domain.money import validate_amount
from tokenbridge.entrypoints.api.app import create_app
from tokenbridge.entrypoints.api.fast_gifts import GiftFastPath
from tokenbridge.entrypoints.api.routes.gifts import new_receipt_json, receipt_json
from tokenbridge.entrypoints.api.schemas import Amount, GiftBatchOut, GiftReceiptOut, Id
from tokenbridge.services.views import GiftReceipt

from .conftest import Api, TestClient, auth, uid


@pytest.fixture(scope="module")
def reference(api: Api) -> Iterator[TestClient]:
    """The same services behind FastAPI's own request handling."""
    app = create_app(api.services, fast_path=False)
    assert not any(m.cls is GiftFastPath for m in app.user_middleware)
    with TestClient(app) as client:
        yield client


def test_the_served_app_has_the_fast_path(api: Api) -> None:
    app: Any = api.client.app
    assert any(m.cls is GiftFastPath for m in app.user_middleware)


@pytest.fixture(scope="module")
def people(api: Api) -> dict[str, str]:
    user, other, creator = uid("u"), uid("u"), uid("c")
    api.open(user, "user")
    api.open(other, "user")
    api.open(creator, "creator")
    api.fund(user, 10**12)
    api.fund(other, 10**12)
    return {"user": user, "other": other, "creator": creator, "bound": api.bound_key(user)}


def _same(a: Any, b: Any, what: str) -> None:
    assert a.status_code == b.status_code, (what, a.status_code, a.text, b.status_code, b.text)
    for header in ("content-type", "www-authenticate", "allow"):
        assert a.headers.get(header) == b.headers.get(header), (what, header)
    assert a.content == b.content, (what, a.text, b.text)


def _both(api: Api, reference: TestClient, what: str, path: str, **kw: Any) -> Any:
    fast = api.client.post(path, **kw)
    slow = reference.post(path, **kw)
    _same(fast, slow, what)
    return fast


def _bodies(people: dict[str, str]) -> list[tuple[str, bytes]]:
    """Bodies that never create a gift (each is refused before or by the ledger)."""
    user, creator = people["user"], people["creator"]

    def gift(**over: Any) -> dict[str, Any]:
        return {"id": uid("g"), "from": user, "to": creator, "amount": 10} | over

    def drop(field: str) -> dict[str, Any]:
        body = gift()
        del body[field]
        return body

    cases: list[tuple[str, Any]] = [
        ("empty", b""),
        ("open brace", b"{"),
        ("not json", b"not json"),
        ("list", b"[]"),
        ("null", b"null"),
        ("number", b"5"),
        ("truncated", b'{"id": "x"'),
        ("invalid utf-8", b'{"id": "\xff\xfe"}'),
        ("utf-16", '{"id": "x"}'.encode("utf-16")),
        ("NaN amount", f'{{"id": "g1", "from": "{user}", "to": "{creator}", "amount": NaN}}'.encode()),
        ("duplicate keys", f'{{"id": "g1", "from": "{user}", "to": "{creator}", "amount": 1, "amount": 0}}'.encode()),
        ("extra field", gift(note="hi")),
        ("field name for alias", {k if k != "from" else "sender": v for k, v in gift(amount=10**15).items()}),
        ("zero", gift(amount=0)),
        ("negative", gift(amount=-1)),
        ("2**63", gift(amount=2**63)),
        ("far beyond", gift(amount=2**64 + 5)),
        ("float", gift(amount=1.0)),
        ("string amount", gift(amount="100")),
        ("bool amount", gift(amount=True)),
        ("null amount", gift(amount=None)),
        ("list amount", gift(amount=[1])),
        ("id too long", gift(id="g" * 129)),
        ("id bad char", gift(id="a/b")),
        ("id leading dot", gift(id=".hidden")),
        ("id not a string", gift(id=5)),
        ("everything wrong", {"id": "", "from": 1, "to": None, "amount": "x", "zzz": 1}),
        ("unknown creator", gift(to=uid("ghost"))),
        ("unknown sender", gift(**{"from": uid("ghost")})),
        ("sender is a creator", gift(**{"from": creator})),
        ("insufficient", gift(amount=10**15)),
        ("largest amount", gift(amount=2**63 - 1)),
        *((f"missing {f}", drop(f)) for f in ("id", "from", "to", "amount")),
    ]
    return [(what, body if isinstance(body, bytes) else json.dumps(body).encode()) for what, body in cases]


CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/merge-patch+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "",
]


def test_bad_gift_requests_answer_alike(api: Api, reference: TestClient, people: dict[str, str]) -> None:
    before = api.coins(people["user"])
    for what, body in _bodies(people):
        for content_type in CONTENT_TYPES:
            headers = auth(api.app_key) | ({"Content-Type": content_type} if content_type is not None else {})
            _both(api, reference, f"{what} / {content_type}", "/v1/gifts", content=body, headers=headers)
            batch = b'{"gifts": [' + body + b"]}" if body else b'{"gifts": []}'
            _both(api, reference, f"batch {what} / {content_type}", "/v1/gifts/batch", content=batch, headers=headers)
    assert api.coins(people["user"]) == before


def _gift(people: dict[str, str], **over: Any) -> dict[str, Any]:
    return {"id": uid("g"), "from": people["user"], "to": people["creator"], "amount": 10} | over


@pytest.mark.parametrize(
    ("what", "header"),
    [
        ("none", None),
        ("empty", ""),
        ("scheme only", "Bearer"),
        ("scheme and space", "Bearer "),
        ("basic", "Basic dXNlcjpwYXNz"),
        ("unknown key", "Bearer tb_nosuchkey"),
        ("not a key", "Bearer x"),
        ("huge key", "Bearer " + "k" * 600),
        ("lower-case scheme with bad key", "bearer tb_nosuchkey"),
        ("tab separated", "Bearer\ttb_nosuchkey"),
        ("non-ascii", "Bearer tb_é"),
    ],
)
def test_authentication_failures_answer_alike(
    api: Api, reference: TestClient, people: dict[str, str], what: str, header: str | None
) -> None:
    headers: dict[str, Any] = {"Authorization": header.encode()} if header is not None else {}  # bytes: UTF-8 too
    for body in (_gift(people), {"id": 1}, b"{"):
        kw: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
        kw["headers"] = headers | {"Content-Type": "application/json"}
        r = _both(api, reference, f"{what} {body!r}", "/v1/gifts", **kw)
        assert r.status_code in (401, 422), r.text
        batch = {"gifts": [body]} if not isinstance(body, bytes) else None
        _both(
            api,
            reference,
            f"batch {what} {body!r}",
            "/v1/gifts/batch",
            **({"json": batch} if batch else {"content": body}),
            headers=headers | {"Content-Type": "application/json"},
        )


@pytest.mark.parametrize("query", ["x=1", "a", "a=1&b=2", "&", "=", "limit=5", "amount=1&amount=2"])
def test_query_parameters_answer_alike(api: Api, reference: TestClient, people: dict[str, str], query: str) -> None:
    for headers in ({}, auth(api.app_key)):
        for path in ("/v1/gifts", "/v1/gifts/batch"):
            body = _gift(people, amount=10**15)  # refused by the ledger if it ever got that far
            payload = body if path == "/v1/gifts" else {"gifts": [body]}
            _both(api, reference, f"{path}?{query}", f"{path}?{query}", json=payload, headers=headers)
            _both(api, reference, f"{path}?{query} bad", f"{path}?{query}", content=b"{", headers=headers)


def test_bound_keys_answer_alike(api: Api, reference: TestClient, people: dict[str, str]) -> None:
    bound = auth(people["bound"])
    other = _gift(people, **{"from": people["other"]})
    r = _both(api, reference, "bound key, other sender", "/v1/gifts", json=other, headers=bound)
    assert r.status_code == 403
    r = _both(api, reference, "bound batch", "/v1/gifts/batch", json={"gifts": [_gift(people), other]}, headers=bound)
    assert r.status_code == 403


def test_created_replayed_and_conflicting_gifts_answer_alike(
    api: Api, reference: TestClient, people: dict[str, str]
) -> None:
    for key in (api.app_key, api.admin_key, people["bound"]):
        fast_gift, slow_gift = _gift(people), _gift(people)
        fast = api.client.post("/v1/gifts", json=fast_gift, headers=auth(key))
        slow = reference.post("/v1/gifts", json=slow_gift, headers=auth(key))
        assert (fast.status_code, slow.status_code) == (201, 201), (fast.text, slow.text)
        assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
        a, b = fast.json(), slow.json()
        assert a.keys() == b.keys()
        assert list(a) == list(b)
        for field in ("id", "created_at"):
            a.pop(field), b.pop(field)
        assert a == b
        # a replay and a conflict answer the same bytes from both apps, whichever app created the gift
        for gift in (fast_gift, slow_gift):
            replay = _both(api, reference, "replay", "/v1/gifts", json=gift, headers=auth(key))
            assert replay.status_code == 200
            assert replay.json() == api.client.get(f"/v1/gifts/{gift['id']}", headers=auth(key)).json()
            conflict = _both(api, reference, "conflict", "/v1/gifts", json=gift | {"amount": 11}, headers=auth(key))
            assert conflict.status_code == 409
        # a batch of replays and refusals (nothing new): identical answers
        items = [fast_gift, slow_gift, fast_gift | {"amount": 12}, _gift(people, to=uid("ghost"))]
        r = _both(api, reference, "batch", "/v1/gifts/batch", json={"gifts": items}, headers=auth(key))
        assert [x["status"] for x in r.json()["results"]] == [200, 200, 409, 404]


def test_receipt_json_is_what_the_model_writes() -> None:
    base = GiftReceipt(
        "g-1", "alice", "bob", "0x" + "ab" * 32, "0x" + "cd" * 32, "0x" + "ef" * 32, 1000, 700, 300, 7000,
        "posted", None, datetime(2026, 11, 26, 5, 41, 12, 625944, tzinfo=UTC),
    )  # fmt: skip
    variants = [
        base,
        GiftReceipt(**{**_fields(base), "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}),
        GiftReceipt(**{**_fields(base), "created_at": datetime(2026, 1, 2, 3, 4, 5, 7)}),  # naive (SQLite)
        GiftReceipt(**{**_fields(base), "created_at": datetime(2026, 1, 2, 3, 4, 5, 7, timezone(timedelta(hours=2)))}),
        GiftReceipt(**{**_fields(base), "status": "settled", "epoch_id": 42, "gross": 2**63 - 1}),
        GiftReceipt(**{**_fields(base), "id": 'quote"back\\slash\u00e9\u2028'}),
    ]

    for r in variants:
        for key_account in (None, "alice", "bob"):
            model = GiftReceiptOut.trusted(r, with_salt=key_account in (None, r.sender_id))
            assert to_json(receipt_json(r, key_account)) == model.model_dump_json().encode()
    batch = {"results": [{"status": 201, "receipt": receipt_json(base, None), "problem": None}]}
    batch |= {"created": 1, "replayed": 0, "failed": 0}
    assert to_json(batch) == GiftBatchOut.model_validate(batch).model_dump_json().encode()


_ID = st.text("abcXYZ019._@-", min_size=1, max_size=128)
_HEX32 = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())


@st.composite
def _new_receipts(draw: st.DrawFn) -> tuple[GiftReceipt, str | None]:
    gross = draw(st.integers(1, 2**63 - 1))
    creator_amount = draw(st.integers(0, gross))
    sender = draw(_ID)
    r = GiftReceipt(
        draw(_ID), sender, draw(_ID), draw(_HEX32), draw(_HEX32), draw(_HEX32), gross, creator_amount,
        gross - creator_amount, draw(st.integers(0, 10_000)), draw(st.sampled_from(["posted", "settled"])),
        draw(st.none() | st.integers(0, 2**63 - 1)),
        draw(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]))),
    )  # fmt: skip
    return r, draw(st.sampled_from([None, sender, sender + "x"]))


@given(_new_receipts())
def test_new_receipt_json_is_receipt_json(case: tuple[GiftReceipt, str | None]) -> None:
    """The batch answer's f-string receipt writes what pydantic writes for `receipt_json`."""
    r, key_account = case
    created_at = to_json(r.created_at).decode()
    assert new_receipt_json(r, key_account, created_at).encode() == to_json(receipt_json(r, key_account))


def test_a_batch_answer_is_what_the_model_writes(api: Api, people: dict[str, str]) -> None:
    """Created, replayed and refused items in one answer: the model reads it back byte for byte."""
    first = _gift(people)
    assert api.client.post("/v1/gifts", json=first, headers=auth(api.app_key)).status_code == 201
    items = [_gift(people), first, _gift(people), _gift(people, to=uid("ghost")), _gift(people, amount=10**15)]
    for key in (api.app_key, people["bound"]):
        r = api.client.post("/v1/gifts/batch", json={"gifts": items}, headers=auth(key))
        assert r.status_code == 200, r.text
        assert GiftBatchOut.model_validate_json(r.content).model_dump_json().encode() == r.content
        items = [_gift(people), first]  # the bound key: a replay of another key's gift, a new one
    body = json.loads(r.content)
    assert [x["status"] for x in body["results"]] == [201, 200]
    assert (body["created"], body["replayed"], body["failed"]) == (1, 1, 0)
    # the one rule the schema does not check (`check_parties`): a gift to oneself, refused alone
    selfish = _gift(people, to=people["user"])
    r = api.client.post("/v1/gifts/batch", json={"gifts": [_gift(people), selfish]}, headers=auth(api.app_key))
    statuses = [(x["status"], x["problem"] and x["problem"]["type"]) for x in r.json()["results"]]
    assert statuses[0][0] == 201
    assert statuses[1][0] == 422, statuses
    assert statuses[1][1].endswith("invalid-input"), statuses


def test_bodies_only_json_loads_reads_still_create_alike(
    api: Api, reference: TestClient, people: dict[str, str]
) -> None:
    """The fast path parses with pydantic first and falls back to FastAPI's way on any failure;
    a body only `json.loads` reads (a UTF-8 byte-order mark) creates the gift on both apps, and
    duplicate keys mean the last one on both."""
    headers = auth(api.app_key) | {"Content-Type": "application/json"}
    for client in (api.client, reference):
        gift = _gift(people)
        r = client.post("/v1/gifts", content=b"\xef\xbb\xbf" + json.dumps(gift).encode(), headers=headers)
        assert (r.status_code, r.json()["id"]) == (201, gift["id"]), r.text
        batch = b"\xef\xbb\xbf" + json.dumps({"gifts": [_gift(people)]}).encode()
        assert client.post("/v1/gifts/batch", content=batch, headers=headers).json()["created"] == 1
        first, last = uid("g"), uid("g")
        dup = (
            f'{{"id": "{first}", "from": "{people["user"]}", "to": "{people["creator"]}", "amount": 3, "id": "{last}"}}'
        )
        r = client.post("/v1/gifts", content=dup.encode(), headers=headers)
        assert (r.status_code, r.json()["id"]) == (201, last), r.text


def _fields(r: GiftReceipt) -> dict[str, Any]:
    return r._asdict()


def test_fast_path_requests_are_counted_under_the_route_template(api: Api, people: dict[str, str]) -> None:
    def count(route: str, status: str) -> float:
        text = api.client.get("/metrics").text
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "tokenbridge_http_requests_total"
            and s.labels.get("route") == route
            and s.labels.get("status") == status
            and s.labels.get("method") == "POST"
        )

    before = (count("/v1/gifts", "201"), count("/v1/gifts", "422"), count("/v1/gifts/batch", "200"))
    assert api.client.post("/v1/gifts", json=_gift(people), headers=auth(api.app_key)).status_code == 201
    assert api.client.post("/v1/gifts", content=b"{", headers=auth(api.app_key)).status_code == 422
    r = api.client.post("/v1/gifts/batch", json={"gifts": [_gift(people)]}, headers=auth(api.app_key))
    assert r.status_code == 200
    after = (count("/v1/gifts", "201"), count("/v1/gifts", "422"), count("/v1/gifts/batch", "200"))
    assert after == (before[0] + 1, before[1] + 1, before[2] + 1)


def test_other_methods_and_paths_are_left_to_the_router(api: Api, reference: TestClient) -> None:
    for method, path in [
        ("DELETE", "/v1/gifts"),
        ("PUT", "/v1/gifts/batch"),
        ("POST", "/v1/gifts/"),
        ("GET", "/v1/gifts/batch"),
    ]:
        fast = api.client.request(method, path, json={}, headers=auth(api.app_key), follow_redirects=False)
        slow = reference.request(method, path, json={}, headers=auth(api.app_key), follow_redirects=False)
        _same(fast, slow, f"{method} {path}")


def test_a_key_revoked_in_this_process_stops_posting_gifts_at_once(api: Api, people: dict[str, str]) -> None:
    info, key = api.services.api_keys.create("app")
    assert api.client.post("/v1/gifts", json=_gift(people), headers=auth(key)).status_code == 201  # now cached
    api.services.api_keys.revoke(info.id)
    for path, body in (("/v1/gifts", _gift(people)), ("/v1/gifts/batch", {"gifts": [_gift(people)]})):
        r = api.client.post(path, json=body, headers=auth(key))
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"


_ID_ADAPTER = TypeAdapter(Id)
_AMOUNT_ADAPTER = TypeAdapter(Amount)


@given(st.text("abcXYZ019._@-\n/ é" + chr(0), max_size=140) | st.text(max_size=20))
def test_every_id_the_schema_accepts_the_domain_accepts(value: str) -> None:
    """The batch route hands the ledger `GiftRequest`s built from the schema's values without
    `validate_gift` (`GiftService.post_requests`): the schema's id rule must be the stricter."""
    try:
        _ID_ADAPTER.validate_python(value)
    except ValidationError:
        return
    assert validate_id(value) == value


@given(st.integers(-(2**64), 2**64) | st.booleans() | st.floats() | st.text(max_size=3))
def test_every_amount_the_schema_accepts_the_domain_accepts(value: object) -> None:
    try:
        _AMOUNT_ADAPTER.validate_python(value)
    except ValidationError:
        return
    assert validate_amount(value) == value


def test_a_batch_whose_body_never_arrives_does_not_keep_the_collector_off(api: Api, people: dict[str, str]) -> None:
    """The collector pauses only around a batch's CPU-bound parts, never across an await: a
    client that announces a body and stalls (uvicorn has no body timeout) must not leave the
    whole process without cycle collection."""
    import asyncio
    import gc

    app: Any = api.client.app
    body = json.dumps({"gifts": [_gift(people)]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.append((b"authorization", f"Bearer {api.app_key}".encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/gifts/batch", "raw_path": b"/v1/gifts/batch", "root_path": "", "query_string": b"",
        "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        waiting, arrive = asyncio.Event(), asyncio.Event()

        async def receive() -> dict[str, Any]:
            waiting.set()
            await arrive.wait()
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        task = asyncio.create_task(app(scope, receive, send))
        await waiting.wait()
        assert gc.isenabled()  # the request is parked on its body
        arrive.set()
        await task
        assert gc.isenabled()

    assert gc.isenabled()
    asyncio.run(run())
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"])["created"] == 1
