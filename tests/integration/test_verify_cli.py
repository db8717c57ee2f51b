"""`tokenbridge verify gift|balance|reserve` against a real anvil: a real gift tree settled on the
vault and a real liabilities tree committed, then real and tampered documents checked through
the CLI (exit 0 verified, 1 a check failed, 2 unusable input)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner
from web3 import Web3

from tokenbridge.adapters.chain.deploy import Deployment, VaultParams, deploy
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil, free_port
from tokenbridge.adapters.chain.vault import VaultClient
from tokenbridge.domain.keys import account_key, new_salt
from tokenbridge.domain.merkle import GiftLeaf, gift_tree
from tokenbridge.domain.merkle_sum import MerkleSumTree
from tokenbridge.domain.split import split
from tokenbridge.entrypoints.cli import app
from tokenbridge.services.verify import build_balance_proof, build_gift_receipt

pytestmark = pytest.mark.chain

BPS = 7_500
COIN = 10**6
CLI = str(Path(sys.executable).with_name("tokenbridge"))
# No deployment record unless a test passes --deployments-dir: the vault then comes from the document.
NO_DEPLOYMENTS = {"TOKENBRIDGE_DEPLOYMENTS_DIR": "/nonexistent/tokenbridge-deployments"}


@dataclass
class World:
    anvil: Anvil
    deployment: Deployment
    client: VaultClient
    bridge: Any
    receipt: dict[str, Any]
    other_receipt: dict[str, Any]  # a gift of epoch 2
    balance: dict[str, Any]
    reserve: int


@pytest.fixture(scope="module")
def world(anvil: Anvil) -> Iterator[World]:
    """Deploy, mint, settle two epochs of real gifts, commit the real liabilities; reverted after the module."""
    snapshot = anvil.rpc("evm_snapshot")
    try:
        deployer, admin, bridge, pauser = (Account.from_key(k) for k in DEV_PRIVATE_KEYS[:4])
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        d = deploy(w3, deployer, admin.address, bridge.address, pauser.address, VaultParams(creator_bps=BPS))
        client = VaultClient(w3, d.vault, bridge)
        salts = {name: new_salt() for name in ("alice", "dave", "bob", "carol", "platform")}
        ids = {
            "alice": "user:alice:coins",
            "dave": "user:dave:coins",
            "bob": "creator:bob:earnings",
            "carol": "creator:carol:earnings",
            "platform": "platform:revenue",
        }
        key = {n: account_key(ids[n], salts[n]) for n in ids}
        minted = {"alice": 60 * COIN, "dave": 40 * COIN}
        client.mint_for_recharges(1, sum(minted.values()), b"\x01" * 32, 2)

        def settle(epoch: int, specs: list[tuple[str, str, int]]) -> tuple[list[GiftLeaf], Any]:
            gifts = [
                GiftLeaf.of(f"gift-{epoch}-{i}", key[s], key[c], split(gross, BPS))
                for i, (s, c, gross) in enumerate(specs)
            ]
            tree = gift_tree(gifts)
            per: dict[bytes, int] = {}
            for g in gifts:
                per[g.creator_key] = per.get(g.creator_key, 0) + g.gross
            client.settle_gifts(
                epoch, 0, tree.root, len(gifts), sum(g.gross for g in gifts), list(per), list(per.values())
            )
            return gifts, tree

        e1 = [
            ("alice", "bob", 7 * COIN),
            ("alice", "carol", 3_333_333),
            ("dave", "bob", 1_000_001),
            ("dave", "carol", 5),
        ]
        e2 = [("alice", "carol", 2 * COIN), ("dave", "bob", 4 * COIN), ("alice", "bob", 999)]
        gifts1, tree1 = settle(1, e1)
        gifts2, tree2 = settle(2, e2)
        everything = gifts1 + gifts2
        balances = {
            key["alice"]: minted["alice"] - sum(g.gross for g in everything if g.from_key == key["alice"]),
            key["dave"]: minted["dave"] - sum(g.gross for g in everything if g.from_key == key["dave"]),
            key["bob"]: sum(g.creator_amount for g in everything if g.creator_key == key["bob"]),
            key["carol"]: sum(g.creator_amount for g in everything if g.creator_key == key["carol"]),
            key["platform"]: sum(g.platform_amount for g in everything),
        }
        liabilities = MerkleSumTree.of(balances)
        client.commit_liabilities(2, liabilities.root, liabilities.total)
        reserve = client.reserve()
        assert reserve == liabilities.total == sum(minted.values())

        common = {"creator_bps": BPS, "chain_id": anvil.chain_id, "vault": d.vault}
        receipt = build_gift_receipt(
            tree1, gifts1[1], gift_id="gift-1-1", epoch_id=1, sender=(ids["alice"], salts["alice"]), **common
        )
        other = build_gift_receipt(tree2, gifts2[0], gift_id="gift-2-0", epoch_id=2, **common)
        balance = build_balance_proof(
            liabilities,
            account_id=ids["carol"],
            salt=salts["carol"],
            epoch_id=2,
            chain_id=anvil.chain_id,
            vault=d.vault,
        )
        yield World(anvil, d, client, bridge, receipt, other, balance, reserve)
    finally:
        anvil.rpc("evm_revert", snapshot)


def _write(tmp_path: Path, doc: Any, name: str = "doc.json") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def _verify(*args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(
        app, ["verify", *args, "--json"], env={"NO_COLOR": "1", "COLUMNS": "200", **NO_DEPLOYMENTS}
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout  # one JSON object, nothing else on stdout
    return result.exit_code, json.loads(lines[0]), result.stderr


def _gift(world: World, tmp_path: Path, doc: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    return _verify("gift", _write(tmp_path, doc), "--rpc", world.anvil.rpc_url)


def test_a_real_receipt_is_verified(world: World, tmp_path: Path) -> None:
    code, out, _ = _gift(world, tmp_path, world.receipt)
    assert code == 0, out
    assert out["ok"] is True
    assert out["verdict"] == "verified"
    assert out["failed"] == []
    names = {c["name"] for c in out["checks"]}
    assert names == {
        "gift_id_hash",
        "sender_key",
        "epoch_settled",
        "epoch_bps",
        "split",
        "merkle_proof",
        "vault_verify_gift",
    }
    assert out["facts"]["epoch bps"] == str(BPS)
    assert out["facts"]["vault"] == world.deployment.vault
    # no deployment record and no --vault: still verified, but flagged as the document's own claim
    assert out["facts"]["vault source"] == "document (unverified)"
    assert len(out["warnings"]) == 1
    assert f"the vault address {world.deployment.vault} came from the document itself" in out["warnings"][0]
    code, out, _ = _gift(world, tmp_path, world.other_receipt)
    assert code == 0, out


def test_the_human_output_is_a_table_with_the_verdict(world: World, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["verify", "gift", _write(tmp_path, world.receipt), "--rpc", world.anvil.rpc_url],
        env={"NO_COLOR": "1", "COLUMNS": "200", **NO_DEPLOYMENTS},
    )
    assert result.exit_code == 0, result.output
    assert "VERIFIED: every check passed (7)" in result.stdout
    assert "vault_verify_gift" in result.stdout
    assert world.deployment.vault in result.stdout
    tail = result.stdout[result.stdout.index("VERIFIED") :]  # the warning comes with the verdict, boxed
    assert "WARNING" in tail
    unboxed = " ".join(tail.replace("│", " ").split())  # Rich wraps the panel's text inside its border
    assert "came from the document itself" in unboxed


def _tamper(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target = out
    *parents, last = path.split(".")
    for p in parents:
        target = target[p]
    target[last] = value(target[last]) if callable(value) else value
    return out


@pytest.mark.parametrize(
    ("case", "path", "value", "expected_failed"),
    [
        (
            "changed amount",
            "gift.creator_amount",
            lambda v: str(int(v) + 1),
            {"split", "merkle_proof", "vault_verify_gift"},
        ),
        ("changed gross", "gift.gross", lambda v: str(int(v) * 2), {"split", "merkle_proof", "vault_verify_gift"}),
        ("changed bps", "gift.creator_bps", 8_000, {"epoch_bps"}),
        ("wrong epoch (settled)", "epoch_id", 2, {"merkle_proof", "vault_verify_gift"}),
        (
            "wrong epoch (unsettled)",
            "epoch_id",
            99,
            {"epoch_settled", "epoch_bps", "split", "merkle_proof", "vault_verify_gift"},
        ),
        ("forged proof", "proof", lambda p: ["0x" + "5a" * 32, *p[1:]], {"merkle_proof", "vault_verify_gift"}),
        ("changed creator key", "gift.creator_key", "0x" + "cd" * 32, {"merkle_proof", "vault_verify_gift"}),
        ("salt mismatch", "sender.salt", "0x" + "00" * 32, {"sender_key"}),
        ("account mismatch", "sender.account_id", "user:mallory:coins", {"sender_key"}),
        ("id mismatch", "gift.id", "gift-1-2", {"gift_id_hash"}),
    ],
)
def test_tampered_receipts_fail_the_right_check(
    world: World, tmp_path: Path, case: str, path: str, value: Any, expected_failed: set[str]
) -> None:
    code, out, _ = _gift(world, tmp_path, _tamper(world.receipt, path, value))
    assert code == 1, (case, out)
    assert out["ok"] is False
    assert set(out["failed"]) == expected_failed, case


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"format": "something-else/v1"}), "format tag"),
        (None, "gift.gross"),  # filled below: a non-integer amount
    ],
)
def test_malformed_input_exits_2_with_one_line(world: World, tmp_path: Path, content: str | None, message: str) -> None:
    if content is None:
        content = json.dumps(_tamper(world.receipt, "gift.gross", "lots"))
    code, out, err = _verify("gift", _write(tmp_path, content), "--rpc", world.anvil.rpc_url)
    assert code == 2
    assert out["ok"] is False
    assert message in out["error"]
    assert err.count("\n") == 1
    assert err.startswith("error: ")


def test_wrong_chain_id_and_missing_vault_exit_2(world: World, tmp_path: Path) -> None:
    code, out, _ = _gift(world, tmp_path, _tamper(world.receipt, "chain_id", 1))
    assert code == 2
    assert "chain 1 but the RPC serves chain 31337" in out["error"]
    code, out, _ = _gift(world, tmp_path, _tamper(world.receipt, "vault", "0x" + "42" * 20))
    assert code == 2
    assert "no contract at vault" in out["error"]


def test_vault_option_is_the_deployment_the_document_must_name(world: World, tmp_path: Path) -> None:
    code, out, _ = _verify(
        "gift", _write(tmp_path, world.receipt), "--rpc", world.anvil.rpc_url, "--vault", world.deployment.vault
    )
    assert code == 0, out
    assert out["checks"][0]["name"] == "vault_is_deployment"
    assert out["warnings"] == []
    assert out["facts"]["vault source"] == "deployment"
    # a document naming another vault: the deployment's vault is read, and the document fails the check
    doc = _tamper(world.receipt, "vault", "0x" + "42" * 20)
    code, out, _ = _verify(
        "gift", _write(tmp_path, doc), "--rpc", world.anvil.rpc_url, "--vault", world.deployment.vault
    )
    assert code == 1, out
    assert out["failed"] == ["vault_is_deployment"]
    assert out["facts"]["vault"] == world.deployment.vault


def test_the_deployment_record_is_the_trusted_vault(world: World, tmp_path: Path) -> None:
    records = tmp_path / "deployments"
    records.mkdir()
    (records / f"{world.anvil.chain_id}.json").write_text(world.deployment.to_json())
    common = ("--rpc", world.anvil.rpc_url, "--deployments-dir", str(records))
    for kind, doc in (("gift", world.receipt), ("balance", world.balance)):
        code, out, _ = _verify(kind, _write(tmp_path, doc), *common)
        assert code == 0, (kind, out)
        assert out["warnings"] == [], kind
        vault_check = next(c for c in out["checks"] if c["name"] == "vault_is_deployment")
        assert vault_check["passed"] is True
        assert world.deployment.vault in vault_check["detail"]
        code, out, _ = _verify(kind, _write(tmp_path, _tamper(doc, "vault", "0x" + "42" * 20)), *common)
        assert code == 1, (kind, out)
        assert out["failed"] == ["vault_is_deployment"], kind
    (records / f"{world.anvil.chain_id}.json").write_text("{not a record")
    code, out, _ = _verify("gift", _write(tmp_path, world.receipt), *common)
    assert code == 2
    assert "is not a deployment record" in out["error"]


def test_unreachable_rpc_exits_2_without_a_traceback(world: World, tmp_path: Path) -> None:
    """Through the installed entry point, as a user runs it."""
    path = _write(tmp_path, world.receipt)
    proc = subprocess.run(
        [CLI, "verify", "gift", path, "--rpc", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot reach an Ethereum node")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.count("\n") == 1


# --- balance proofs ---------------------------------------------------------------------------


def _balance(world: World, tmp_path: Path, doc: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    return _verify("balance", _write(tmp_path, doc), "--rpc", world.anvil.rpc_url)


def test_a_real_balance_proof_is_verified(world: World, tmp_path: Path) -> None:
    code, out, _ = _balance(world, tmp_path, world.balance)
    assert code == 0, out
    assert out["facts"]["committed total"] == str(world.reserve)
    assert "vault_is_deployment" not in {c["name"] for c in out["checks"]}
    assert "came from the document itself" in out["warnings"][0]


@pytest.mark.parametrize(
    ("path", "value", "expected_failed"),
    [
        ("balance", lambda v: str(int(v) + 1), {"document_root", "committed_root", "vault_verify_liability"}),
        ("account.salt", "0x" + "00" * 32, {"account_key"}),
        (
            "sibling_sums",
            lambda s: [str(int(s[0]) + 1), *s[1:]],
            {"document_root", "committed_root", "vault_verify_liability"},
        ),
        ("epoch_id", 1, {"commitment_exists", "committed_root", "vault_verify_liability"}),
        ("root", "0x" + "77" * 32, {"document_root"}),
    ],
)
def test_tampered_balance_proofs_fail(
    world: World, tmp_path: Path, path: str, value: Any, expected_failed: set[str]
) -> None:
    code, out, _ = _balance(world, tmp_path, _tamper(world.balance, path, value))
    assert code == 1, out
    assert set(out["failed"]) == expected_failed


def test_a_gift_receipt_is_not_a_balance_proof(world: World, tmp_path: Path) -> None:
    code, out, _ = _balance(world, tmp_path, world.receipt)
    assert code == 2
    assert "format tag" in out["error"]


# --- reserve ----------------------------------------------------------------------------------


def test_reserve_is_solvent(world: World, tmp_path: Path) -> None:
    code, out, _ = _verify("reserve", "--rpc", world.anvil.rpc_url, "--vault", world.deployment.vault)
    assert code == 0, out
    assert out["verdict"] == "solvent"
    assert out["facts"]["reserve"] == out["facts"]["liabilities total"] == str(world.reserve)


def test_reserve_vault_defaults_to_the_deployment_record(world: World, tmp_path: Path) -> None:
    (tmp_path / f"{world.anvil.chain_id}.json").write_text(world.deployment.to_json())
    code, out, _ = _verify("reserve", "--rpc", world.anvil.rpc_url, "--deployments-dir", str(tmp_path))
    assert code == 0, out
    assert out["facts"]["vault"] == world.deployment.vault
    code, out, _ = _verify("reserve", "--rpc", world.anvil.rpc_url, "--deployments-dir", str(tmp_path / "none"))
    assert code == 2
    assert "no --vault given" in out["error"]


def test_reserve_is_insolvent_when_liabilities_exceed_it(world: World, chain_snapshot: Anvil) -> None:
    world.client.commit_liabilities(3, b"\x09" * 32, world.reserve + 1)
    code, out, _ = _verify("reserve", "--rpc", world.anvil.rpc_url, "--vault", world.deployment.vault)
    assert code == 1, out
    assert out["verdict"] == "NOT solvent"
    assert set(out["failed"]) == {"reserve_covers_liabilities", "vault_solvent"}
    assert out["facts"]["liabilities epoch"] == "3"
