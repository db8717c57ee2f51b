"""The settlement routes over HTTP with a vault on anvil and a fresh database: wallet links and
withdrawals (app scope, account-bound keys), and the public transparency endpoints whose documents
verify against the chain alone."""

# ruff: noqa: F811  (pytest fixtures imported from support_settlement)
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account import Account

from support_settlement import (  # noqa: F401  (fixtures)
    CHAIN_ID,
    COIN,
    PAYOUT_DELAY,
    Settlement,
    fresh_db_url,
    settle,
    sign_typed,
)
from tokenbridge.domain.withdrawal import WalletLinkMessage
from tokenbridge.entrypoints.api.app import create_app
from tokenbridge.entrypoints.cli import app as cli_app

from .conftest import TestClient, auth


@pytest.fixture
def http(settle: Settlement) -> Iterator[tuple[Settlement, TestClient, str]]:
    app = create_app(settle.services)
    app.state.settlement = SimpleNamespace(epochs=settle.epochs, withdrawals=settle.withdrawals)
    _, app_key = settle.services.api_keys.create("app")
    with TestClient(app) as client:
        yield settle, client, app_key


def _link_body(h: Settlement, creator: str, wallet: Any, signer: Any | None = None) -> dict[str, Any]:
    deadline = int(time.time()) + 600
    key = h.services.accounts.get(creator).account_key
    typed = WalletLinkMessage(creator, key, wallet.address, deadline).typed_data(CHAIN_ID, h.vault.address)
    return {"wallet": wallet.address, "deadline": deadline, "signature": sign_typed(signer or wallet, typed)}


def _problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/" + code)


def test_link_and_withdraw_over_http(http: tuple[Settlement, TestClient, str]) -> None:
    h, client, app_key = http
    bob, carol = h.creator(), h.creator()
    bob_key, carol_key = (h.services.api_keys.create("app", a)[1] for a in (bob, carol))
    wallet = Account.create()
    body = _link_body(h, bob, wallet)
    r = client.post(f"/v1/creators/{bob}/wallet", json=body, headers=auth(bob_key))
    assert r.status_code == 201, r.text
    assert r.json()["wallet"] == wallet.address
    assert client.post(f"/v1/creators/{bob}/wallet", json=body, headers=auth(app_key)).status_code == 200
    _problem(client.post(f"/v1/creators/{bob}/wallet", json=body, headers=auth(carol_key)), 403, "forbidden")
    forged = _link_body(h, bob, Account.create(), signer=Account.create())
    _problem(client.post(f"/v1/creators/{bob}/wallet", json=forged, headers=auth(app_key)), 403, "wrong-signer")

    h.gift(h.user(10 * COIN), bob, 10 * COIN)
    h.settle_all()
    h.advance(PAYOUT_DELAY + 1)
    req = h.withdrawal(bob, wallet, 5 * COIN)
    payload = {
        "id": req.id,
        "creator_id": bob,
        "to": req.to,
        "amount": req.amount,
        "deadline": req.deadline,
        "signature": req.signature,
    }
    _problem(client.post("/v1/withdrawals", json=payload, headers=auth(carol_key)), 403, "forbidden")
    r = client.post("/v1/withdrawals", json=payload, headers=auth(bob_key))
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "requested"
    assert client.post("/v1/withdrawals", json=payload, headers=auth(app_key)).status_code == 200  # replay
    _problem(
        client.post("/v1/withdrawals", json={**payload, "amount": 4 * COIN}, headers=auth(app_key)),
        409,
        "idempotency-conflict",
    )
    _problem(
        client.post("/v1/withdrawals", json={**payload, "amount": 1.5}, headers=auth(app_key)), 422, "invalid-input"
    )
    too_much = h.withdrawal(bob, wallet, 4 * COIN)
    r = client.post(
        "/v1/withdrawals",
        json={
            **payload,
            "id": too_much.id,
            "amount": too_much.amount,
            "deadline": too_much.deadline,
            "signature": too_much.signature,
        },
        headers=auth(app_key),
    )
    _problem(r, 409, "exceeds-withdrawable")
    expired = h.withdrawal(bob, wallet, COIN, deadline=int(time.time()) - 5)
    r = client.post(
        "/v1/withdrawals",
        json={
            **payload,
            "id": expired.id,
            "amount": COIN,
            "deadline": expired.deadline,
            "signature": expired.signature,
        },
        headers=auth(app_key),
    )
    _problem(r, 422, "signature-expired")

    h.drive(lambda: h.withdrawals.get(req.id).state == "confirmed")
    r = client.get(f"/v1/withdrawals/{req.id}", headers=auth(bob_key))
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["state"] == "confirmed"
    assert got["tx_hash"] == h.withdrawals.get(req.id).tx_hash
    assert h.w3.eth.get_transaction_receipt(got["tx_hash"])["status"] == 1
    _problem(client.get(f"/v1/withdrawals/{req.id}", headers=auth(carol_key)), 403, "forbidden")
    _problem(client.get("/v1/withdrawals/w-nope", headers=auth(app_key)), 404, "not-found")
    _problem(client.get(f"/v1/withdrawals/{req.id}"), 401, "unauthorized")


def test_public_transparency_endpoints(http: tuple[Settlement, TestClient, str]) -> None:
    h, client, app_key = http
    alice, bob = h.user(30 * COIN), h.creator()
    gift_id = h.gift(alice, bob, 10 * COIN + 1)

    split = client.get("/v1/public/split").json()
    assert (split["creator_bps"], split["platform_bps"], split["pending"]) == (8_000, 2_000, None)
    assert split["payout_delay"] == PAYOUT_DELAY
    _problem(client.get(f"/v1/public/gifts/{gift_id}/proof"), 404, "not-found")  # not settled yet

    epoch_id = h.settle_all()
    page = client.get("/v1/public/epochs?limit=10").json()
    assert [e["id"] for e in page["items"]] == [epoch_id]
    epoch = client.get(f"/v1/public/epochs/{epoch_id}").json()
    assert epoch["state"] == "settled"
    assert epoch["settle_tx_hash"] == epoch["chunks"][0]["tx_hash"]
    assert epoch["liabilities_tx_hash"] is not None
    assert epoch["gift_root"] == "0x" + h.vault.epoch(epoch_id).gift_root.hex()
    _problem(client.get("/v1/public/epochs/999"), 404, "not-found")
    _problem(client.get("/v1/public/epochs?cursor=abc"), 422, "invalid-input")

    doc = client.get(f"/v1/public/gifts/{gift_id}/proof").json()
    assert doc["format"] == "tokenbridge-gift-receipt/v1"
    assert "sender" not in doc  # public: no salt
    g = doc["gift"]
    assert h.vault.verify_gift(
        epoch_id,
        bytes.fromhex(g["gift_id_hash"][2:]),
        bytes.fromhex(g["from_key"][2:]),
        bytes.fromhex(g["creator_key"][2:]),
        int(g["gross"]),
        int(g["creator_amount"]),
        int(g["platform_amount"]),
        [bytes.fromhex(p[2:]) for p in doc["proof"]],
    )

    reserve = client.get("/v1/public/reserve").json()
    assert reserve["reserve"] == str(30 * COIN)
    assert reserve["liabilities_total"] == str(30 * COIN)
    assert reserve["liabilities_epoch"] == epoch_id
    assert reserve["solvent"] is True

    alice_key = h.services.api_keys.create("app", alice)[1]
    r = client.get(f"/v1/accounts/{alice}/balance-proof", headers=auth(alice_key))
    assert r.status_code == 200, r.text
    proof = r.json()
    assert proof["balance"] == str(20 * COIN - 1)
    assert h.vault.verify_liability(
        epoch_id,
        bytes.fromhex(proof["account"]["account_key"][2:]),
        int(proof["balance"]),
        int(proof["index"]),
        [bytes.fromhex(x[2:]) for x in proof["sibling_hashes"]],
        [int(x) for x in proof["sibling_sums"]],
    )
    _problem(client.get(f"/v1/accounts/{bob}/balance-proof", headers=auth(alice_key)), 403, "forbidden")
    _problem(client.get(f"/v1/accounts/{bob}/balance-proof"), 401, "unauthorized")
    assert client.get(f"/v1/accounts/{bob}/balance-proof", headers=auth(app_key)).status_code == 200

    h.vault.propose_creator_bps(7_500, account=h.admin)
    h.rate.invalidate()
    pending = client.get("/v1/public/split").json()["pending"]
    assert pending["creator_bps"] == 7_500
    assert pending["effective_at"] >= h.chain_now()


def test_the_senders_receipt_carries_the_salt_and_passes_sender_key(
    http: tuple[Settlement, TestClient, str], tmp_path: Path
) -> None:
    """GET /v1/gifts/{id}/receipt: the sender's own key (or an unbound key) gets the receipt with
    `sender`, which `tokenbridge verify gift` checks from the chain alone, including `sender_key`."""
    from typer.testing import CliRunner

    h, client, app_key = http
    alice, bob, carol = h.user(10 * COIN), h.creator(), h.user(COIN)
    gift_id = h.gift(alice, bob, 3 * COIN + 7)
    alice_key, bob_key, carol_key = (h.services.api_keys.create("app", a)[1] for a in (alice, bob, carol))
    _problem(client.get(f"/v1/gifts/{gift_id}/receipt", headers=auth(alice_key)), 404, "not-found")  # unsettled
    epoch_id = h.settle_all()

    r = client.get(f"/v1/gifts/{gift_id}/receipt", headers=auth(alice_key))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["format"] == "tokenbridge-gift-receipt/v1"
    assert doc["epoch_id"] == epoch_id
    assert doc["sender"]["account_id"] == alice
    assert client.get(f"/v1/gifts/{gift_id}/receipt", headers=auth(app_key)).json() == doc  # unbound app key
    _problem(client.get(f"/v1/gifts/{gift_id}/receipt", headers=auth(bob_key)), 403, "forbidden")  # the creator
    _problem(client.get(f"/v1/gifts/{gift_id}/receipt", headers=auth(carol_key)), 403, "forbidden")
    _problem(client.get(f"/v1/gifts/{gift_id}/receipt"), 401, "unauthorized")
    _problem(client.get("/v1/gifts/g-nope/receipt", headers=auth(alice_key)), 404, "not-found")
    public = client.get(f"/v1/public/gifts/{gift_id}/proof").json()
    assert {k: v for k, v in doc.items() if k != "sender"} == public  # same receipt, plus the sender

    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(doc))
    result = CliRunner().invoke(
        cli_app,
        ["verify", "gift", str(path), "--rpc", h.anvil.rpc_url, "--vault", h.vault.address, "--json"],
        env={"NO_COLOR": "1"},
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["ok"] is True, out
    checks = {c["name"]: c for c in out["checks"]}
    assert checks["sender_key"]["passed"] is True
    assert checks["vault_is_deployment"]["passed"] is True
    assert alice in checks["sender_key"]["detail"]
