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
