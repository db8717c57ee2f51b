"""Payment webhooks over HTTP: signature, tolerance window, replay, malformed bodies."""

from __future__ import annotations

import json
import time

import pytest

from .conftest import WEBHOOK_SECRETS, Api, recharge_event, sign, uid

URL = "/v1/webhooks/payments"


@pytest.fixture
def user(api: Api) -> str:
    account_id = uid("u")
    api.open(account_id, "user")
    return account_id


def _post(api: Api, body: bytes, signature: str | None) -> object:
    headers = {"Content-Type": "application/json"} | ({"Tokenbridge-Signature": signature} if signature else {})
    return api.client.post(URL, content=body, headers=headers)


def test_valid_signature_credits_once_and_replay_answers_the_same_result(api: Api, user: str) -> None:
    body = recharge_event(user, 2_500_000)
    first = _post(api, body, sign(body))
    assert first.status_code == 200, first.text
    result = first.json()
    assert result["credited"] == 2_500_000
    assert result["account_id"] == user
    assert result["replayed"] is False
    assert api.coins(user) == 2_500_000

    again = _post(api, body, sign(body))  # same event, freshly signed (providers retry)
    assert again.status_code == 200
    assert again.json() == result | {"replayed": True}
    assert api.coins(user) == 2_500_000


def test_previous_secret_still_verifies_during_rotation(api: Api, user: str) -> None:
    body = recharge_event(user, 10)
    assert _post(api, body, sign(body, secret=WEBHOOK_SECRETS[1])).status_code == 200
    assert api.coins(user) == 10


def test_several_v1_entries_any_may_match(api: Api, user: str) -> None:
    body = recharge_event(user, 11)
    t = int(time.time())
    good = sign(body, t=t).split("v1=")[1]
    header = f"t={t},v1={'0' * 64},v1={good}"
    assert _post(api, body, header).status_code == 200
    assert api.coins(user) == 11


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda _: None, id="missing"),
        pytest.param(lambda _: "", id="empty"),
        pytest.param(lambda body: sign(body, secret="whsec_attacker"), id="wrong-secret"),
        pytest.param(lambda body: sign(body + b" "), id="other-body"),
        pytest.param(lambda body: sign(body, t=int(time.time()) - 301), id="stale"),
        pytest.param(lambda body: sign(body, t=int(time.time()) + 301), id="future"),
        pytest.param(lambda body: "v1=" + sign(body).split("v1=")[1], id="no-timestamp"),
        pytest.param(lambda body: sign(body).split(",")[0], id="no-v1"),
        pytest.param(lambda _: "garbage", id="garbage"),
    ],
)
def test_forged_or_stale_signature_is_401_and_credits_nothing(api: Api, user: str, forge: object) -> None:
    body = recharge_event(user, 1_000)
    r = _post(api, body, forge(body))  # type: ignore[operator]
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/invalid-signature")
    assert api.coins(user) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b"[]",
        json.dumps({"id": "e", "type": "recharge.succeeded"}).encode(),
        json.dumps({"id": "e", "type": "recharge.succeeded", "data": {"payment_id": "p", "account_id": "a"}}).encode(),
        json.dumps(
            {"id": "e", "type": "recharge.succeeded", "data": {"payment_id": "p", "account_id": "a", "amount": 0}}
        ).encode(),
        json.dumps(
            {"id": "e", "type": "recharge.succeeded", "data": {"payment_id": "p", "account_id": "a", "amount": 1.5}}
        ).encode(),
        json.dumps(
            {"id": "e", "type": "recharge.succeeded", "data": {"payment_id": "p", "account_id": "a", "amount": "10"}}
        ).encode(),
        json.dumps(
            {"id": "e", "type": "recharge.succeeded", "data": {"payment_id": "p", "account_id": "a", "amount": 2**63}}
        ).encode(),
        json.dumps(
            {"id": "e", "type": "recharge.unknown", "data": {"payment_id": "p", "account_id": "a", "amount": 1}}
        ).encode(),
    ],
    ids=["not-json", "empty-object", "array", "no-data", "no-amount", "zero", "float", "string", "2**63", "bad-type"],
)
def test_malformed_but_signed_body_is_422(api: Api, body: bytes) -> None:
    r = _post(api, body, sign(body))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 422


def test_malformed_unsigned_body_is_401_not_422(api: Api) -> None:
    """Nothing about an unsigned body is trusted, not even whether it parses."""
    r = _post(api, b"not json", None)
    assert r.status_code == 401


def test_webhook_results_are_counted_in_metrics(api: Api, user: str) -> None:
    body = recharge_event(user, 3)
    _post(api, body, sign(body))
    _post(api, body, sign(body))
    _post(api, body, sign(body, secret="whsec_attacker"))
    text = api.client.get("/metrics").text
    assert 'tokenbridge_webhook_events_total{code="",result="processed"}' in text
    assert 'tokenbridge_webhook_events_total{code="",result="replayed"}' in text
    assert 'tokenbridge_webhook_events_total{code="invalid-signature",result="rejected"}' in text


def test_signed_event_for_an_unknown_account_is_404_problem(api: Api) -> None:
    body = recharge_event(uid("ghost"), 5)
    r = _post(api, body, sign(body))
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_refund_of_a_payment_never_credited_is_409_for_the_provider_to_retry(api: Api, user: str) -> None:
    event = {
        "id": uid("evt"),
        "type": "recharge.refunded",
        "data": {"payment_id": uid("pay"), "account_id": user, "amount": 5},
    }
    body = json.dumps(event).encode()
    r = _post(api, body, sign(body))
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/unknown-payment")
    assert api.coins(user) == 0


# --- header fuzz: whatever bytes arrive, a bad header is a 401, never a 500 -------------------


def _good_v1(body: bytes, t: int) -> str:
    return sign(body, t=t).split("v1=")[1]


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda b, t: f"t={t},v1=".encode() + _good_v1(b, t)[:-1].encode() + b"\xe9", id="latin1-in-v1"),
        pytest.param(lambda _b, t: f"t={t},v1=".encode() + b"\xff" * 64, id="latin1-bytes-v1"),
        pytest.param(lambda b, t: b"t=\xe9" + f"{t},v1={_good_v1(b, t)}".encode(), id="latin1-in-t"),
        pytest.param(lambda _b, t: f"t={t},v1={'z' * 64}".encode(), id="non-hex-v1"),
        pytest.param(lambda b, t: f"t={t},v1={_good_v1(b, t)[:40]}".encode(), id="short-v1"),
        pytest.param(lambda _b, t: f"t={t},v1=".encode(), id="empty-v1"),
        pytest.param(lambda b, t: f"t=,v1={_good_v1(b, t)}".encode(), id="empty-t"),
        pytest.param(lambda b, t: f"t={t},t={t},v1={_good_v1(b, t)}".encode(), id="duplicate-t"),
        pytest.param(lambda b, t: f"t={'9' * 40},v1={_good_v1(b, t)}".encode(), id="huge-t"),
        pytest.param(lambda b, t: f"t={t}.5,v1={_good_v1(b, t)}".encode(), id="fractional-t"),
        pytest.param(lambda _b, _t: b",,,=,=", id="separators-only"),
        pytest.param(lambda _b, _t: b"t=" + b"1" * 5000, id="over-4k"),
    ],
)
def test_fuzzed_signature_headers_are_401_never_500(api: Api, user: str, make_header: object) -> None:
    body = recharge_event(user, 7)
    header = make_header(body, int(time.time()))  # type: ignore[operator]
    r = api.client.post(
        URL, content=body, headers={"Content-Type": "application/json", "Tokenbridge-Signature": header}
    )
    assert r.status_code == 401, r.text
    assert r.json()["type"].endswith("/invalid-signature")
    assert api.coins(user) == 0


# --- size: refused from Content-Length before reading, and while streaming ----------------------


def test_oversized_body_is_413_from_its_content_length(api: Api, user: str) -> None:
    from tokenbridge.entrypoints.api.routes.webhooks import MAX_WEBHOOK_BODY

    body = b'{"pad": "' + b"x" * MAX_WEBHOOK_BODY + b'"}'
    r = api.client.post(URL, content=body, headers={"Tokenbridge-Signature": sign(body)})
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/payload-too-large")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversized_body_is_not_read_past_the_cap(declared: bool) -> None:
    """With a Content-Length over the cap nothing is read; without one, reading stops at the cap."""
    import anyio
    from starlette.requests import Request

    from tokenbridge.entrypoints.api.routes.webhooks import MAX_WEBHOOK_BODY, PayloadTooLargeError, _read_capped

    chunk, chunks = MAX_WEBHOOK_BODY // 4, 64  # 1 MiB offered in 16 KiB messages
    pulled: list[int] = []

    async def receive() -> dict[str, object]:
        pulled.append(chunk)
        return {"type": "http.request", "body": b"x" * chunk, "more_body": len(pulled) < chunks}

    headers = [(b"content-length", str(chunk * chunks).encode())] if declared else []
    request = Request({"type": "http", "method": "POST", "headers": headers}, receive)

    async def read() -> None:
        with pytest.raises(PayloadTooLargeError):
            await _read_capped(request)

    anyio.run(read)
    assert sum(pulled) == (0 if declared else MAX_WEBHOOK_BODY + chunk)


def test_streamed_body_without_length_is_cut_at_the_cap(api: Api) -> None:
    from tokenbridge.entrypoints.api.routes.webhooks import MAX_WEBHOOK_BODY

    def chunks() -> object:
        for _ in range(8):
            yield b"x" * (MAX_WEBHOOK_BODY // 4)
        yield b"y"

    r = api.client.post(URL, content=chunks(), headers={"Tokenbridge-Signature": "t=1"})  # chunked: no length
    assert r.status_code == 413, r.text
    assert r.json()["type"].endswith("/payload-too-large")


def test_body_at_the_cap_is_still_read(api: Api, user: str) -> None:
    from tokenbridge.entrypoints.api.routes.webhooks import MAX_WEBHOOK_BODY

    event = json.loads(recharge_event(user, 9))
    raw = json.dumps(event).encode()
    body = raw[:-1] + b" " * (MAX_WEBHOOK_BODY - len(raw)) + b"}"
    assert len(body) == MAX_WEBHOOK_BODY
    r = _post(api, body, sign(body))
    assert r.status_code == 200, r.text
    assert api.coins(user) == 9


# --- payment conflicts, refused recharges, refunds above what is left ---------------------------


def test_existing_payment_id_with_another_amount_or_account_is_409_and_applies_nothing(api: Api, user: str) -> None:
    other = uid("u")
    api.open(other)
    pid = uid("pay")
    body = recharge_event(user, 100, payment_id=pid)
    assert _post(api, body, sign(body)).status_code == 200
    for account, amount in ((user, 101), (other, 100)):
        forged = recharge_event(account, amount, payment_id=pid)
        r = _post(api, forged, sign(forged))
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("/payment-conflict")
    assert (api.coins(user), api.coins(other)) == (100, 0)


def _reversal(account_id: str, payment_id: str, amount: int, kind: str = "recharge.refunded") -> bytes:
    event = {
        "id": uid("evt"),
        "type": kind,
        "data": {"payment_id": payment_id, "account_id": account_id, "amount": amount},
    }
    return json.dumps(event).encode()


def test_refused_recharge_then_its_refund_closes_cleanly(api: Api) -> None:
    restricted = uid("u")
    r = api.client.post(
        "/v1/accounts", json={"id": restricted, "kind": "user", "restricted": True}, headers=_auth(api.admin_key)
    )
    assert r.status_code == 201, r.text
    pid = uid("pay")
    body = recharge_event(restricted, 500, payment_id=pid)
    first = _post(api, body, sign(body))
    assert first.status_code == 403, first.text
    assert first.json()["type"].endswith("/account-restricted")
    retry = _post(api, body, sign(body))  # the provider retries: recorded, nothing credited
    assert retry.status_code == 200, retry.text
    assert (retry.json()["credited"], retry.json()["replayed"]) == (0, True)
    refund = _reversal(restricted, pid, 500)
    r = _post(api, refund, sign(refund))
    assert r.status_code == 200, r.text  # was 409 unknown-payment, forever
    assert (r.json()["reversed"], r.json()["debt_recorded"], r.json()["amount"]) == (0, 0, 0)
    assert api.coins(restricted) == 0


def test_refund_above_what_is_left_answers_what_was_reversed(api: Api, user: str) -> None:
    pid = uid("pay")
    body = recharge_event(user, 1_000, payment_id=pid)
    assert _post(api, body, sign(body)).status_code == 200
    refund = _reversal(user, pid, 4_000)
    r = _post(api, refund, sign(refund))
    assert r.status_code == 200, r.text
    assert (r.json()["amount"], r.json()["reversed"], r.json()["debt_recorded"]) == (1_000, 1_000, 0)
    assert api.coins(user) == 0


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- no secret configured: 503, and a warning at start -------------------------------------------


def test_without_secrets_the_webhook_is_503_and_start_warns(
    api: Api, user: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokenbridge.bootstrap import build_services
    from tokenbridge.config import load_settings
    from tokenbridge.entrypoints.api.app import create_app
    from tokenbridge.entrypoints.api.routes.webhooks import NOT_CONFIGURED_WARNING

    from .conftest import TestClient

    monkeypatch.delenv("TOKENBRIDGE_WEBHOOK_SECRETS", raising=False)
    engine = api.services.engine
    assert engine is not None
    settings = load_settings(database_url=engine.url.render_as_string(hide_password=False), webhook_secrets="")
    services = build_services(settings)
    try:
        with caplog.at_level("WARNING", logger="tokenbridge.api"), TestClient(create_app(services, settings)) as client:
            assert [r.getMessage() for r in caplog.records if r.name == "tokenbridge.api"] == [NOT_CONFIGURED_WARNING]
            # a body signed with the old published default, or any other: a server misconfiguration, not a 401
            for secret in ("whsec_dev_only_change_me", WEBHOOK_SECRETS[0]):
                body = recharge_event(user, 5)
                r = client.post(URL, content=body, headers={"Tokenbridge-Signature": sign(body, secret=secret)})
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["type"].endswith("/webhooks-not-configured")
    finally:
        services.close()
    assert api.coins(user) == 0


def test_configured_app_does_not_warn_at_start(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    from tokenbridge.entrypoints.api.app import create_app

    from .conftest import TestClient

    with caplog.at_level("WARNING", logger="tokenbridge.api"), TestClient(create_app(api.services)):
        pass
    assert not [r for r in caplog.records if r.name == "tokenbridge.api"]
