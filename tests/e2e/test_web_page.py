"""The transparency page in a real browser: anvil + a real deployment with a settled gift tree and
committed liabilities, the FastAPI app (create_app + mount_web) under uvicorn, and Debian's
chromium driven by playwright-core (tests/e2e/web_page.mjs). A real receipt is verified in the
browser; tampered ones are rejected with the failing check shown. Screenshots are kept under
pytest's tmp path and their paths printed (run with -s to see them)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from tokenbridge.adapters.chain.deploy import Deployment, VaultParams, deploy
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil, free_port
from tokenbridge.adapters.chain.vault import VaultClient
from tokenbridge.domain.keys import account_key, new_salt
from tokenbridge.domain.merkle import GiftLeaf, gift_tree
from tokenbridge.domain.merkle_sum import MerkleSumTree
from tokenbridge.domain.split import split
from tokenbridge.services.verify import build_gift_receipt

pytestmark = [pytest.mark.chain, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
NODE = shutil.which("node")
DRIVER = Path(__file__).with_name("web_page.mjs")
APP_JS = ROOT / "src/tokenbridge/entrypoints/web/static/app.js"
BPS = 7_500
COIN = 10**6


def _require_browser() -> None:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install -y chromium` (make e2e-deps) to run the browser test")
    if NODE is None or not (ROOT / "node_modules/playwright-core").is_dir():
        pytest.skip("node or node_modules/playwright-core missing: run `npm ci`")


def _ensure_bundle() -> None:
    """Build app.js when missing or older than its sources (make setup normally did it)."""
    sources = [*ROOT.glob("web/src/*.js"), ROOT / "scripts/build_web.mjs"]
    if not APP_JS.is_file() or APP_JS.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        subprocess.run([NODE or "node", str(ROOT / "scripts/build_web.mjs")], check=True, cwd=ROOT, timeout=120)


@dataclass
class Site:
    url: str
    deployment: Deployment
    receipt: dict[str, Any]
    reserve: int


@pytest.fixture(scope="module")
def chain_world(anvil: Anvil) -> Iterator[tuple[Deployment, dict[str, Any], int]]:
    """A real vault with epoch 1 settled from a real gift tree and liabilities committed; reverted after."""
    snapshot = anvil.rpc("evm_snapshot")
    try:
        deployer, admin, bridge, pauser = (Account.from_key(k) for k in DEV_PRIVATE_KEYS[:4])
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        d = deploy(w3, deployer, admin.address, bridge.address, pauser.address, VaultParams(creator_bps=BPS))
        client = VaultClient(w3, d.vault, bridge)
        salt = {n: new_salt() for n in ("alice", "bob", "carol")}
        ids = {"alice": "user:alice:coins", "bob": "creator:bob:earnings", "carol": "creator:carol:earnings"}
        key = {n: account_key(ids[n], salt[n]) for n in ids}
        client.mint_for_recharges(1, 50 * COIN, b"\x02" * 32, 1)
        gifts = [
            GiftLeaf.of(f"web-gift-{i}", key["alice"], key[c], split(g, BPS))
            for i, (c, g) in enumerate([("bob", 7 * COIN), ("carol", 3_333_333), ("bob", 11), ("carol", 2 * COIN)])
        ]
        tree = gift_tree(gifts)
        per: dict[bytes, int] = {}
        for g in gifts:
            per[g.creator_key] = per.get(g.creator_key, 0) + g.gross
        client.settle_gifts(1, 0, tree.root, len(gifts), sum(g.gross for g in gifts), list(per), list(per.values()))
        spent = sum(g.gross for g in gifts)
        liabilities = MerkleSumTree.of(
            {
                key["alice"]: 50 * COIN - spent,
                key["bob"]: sum(g.creator_amount for g in gifts if g.creator_key == key["bob"]),
                key["carol"]: sum(g.creator_amount for g in gifts if g.creator_key == key["carol"]),
                account_key("platform:revenue", new_salt()): sum(g.platform_amount for g in gifts),
            }
        )
        client.commit_liabilities(1, liabilities.root, liabilities.total)
        receipt = build_gift_receipt(
            tree,
            gifts[1],
            gift_id="web-gift-1",
            epoch_id=1,
            creator_bps=BPS,
            chain_id=anvil.chain_id,
            vault=d.vault,
            sender=(ids["alice"], salt["alice"]),
        )
        yield d, receipt, client.reserve()
    finally:
        anvil.rpc("evm_revert", snapshot)


@pytest.fixture(scope="module")
def site(
    anvil: Anvil, chain_world: tuple[Deployment, dict[str, Any], int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """The real API app with the page mounted, served by uvicorn in a thread on a free port."""
    import uvicorn

    from tokenbridge.config import load_settings
    from tokenbridge.entrypoints.api.app import create_app
    from tokenbridge.entrypoints.web import WebConfig, mount_web

    deployment, receipt, reserve = chain_world
    db = tmp_path_factory.mktemp("web-db") / "web.sqlite3"
    app = create_app(settings=load_settings(database_url=f"sqlite:///{db}"))
    mount_web(app, config=WebConfig(anvil.rpc_url, anvil.chain_id, deployment.vault, deployment.deploy_block))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        started = threading.Event()
        for _ in range(200):  # until uvicorn reports it is listening (bounded, not a timing assertion)
            if server.started:
                started.set()
                break
            threading.Event().wait(0.05)
        assert started.is_set(), "uvicorn did not start"
        yield Site(f"http://127.0.0.1:{port}/", deployment, receipt, reserve)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _tamper(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target = out
    *parents, last = path.split(".")
    for p in parents:
        target = target[p]
    target[last] = value(target[last]) if callable(value) else value
    return out


def test_the_page_is_served_with_its_script_and_policy(site: Site) -> None:
    with urllib.request.urlopen(site.url, timeout=10) as r:  # noqa: S310 (our local server)
        html = r.read().decode()
        csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert site.deployment.vault in html
    assert '<script defer src="/web/app.js">' in html
    with urllib.request.urlopen(site.url + "web/app.js", timeout=10) as r:  # noqa: S310
        assert r.headers["Content-Type"].startswith("text/javascript")
        assert len(r.read()) > 10_000


def test_receipts_are_verified_in_the_browser(
    site: Site, anvil: Anvil, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _require_browser()
    _ensure_bundle()
    shots = tmp_path_factory.mktemp("web-screenshots")
    cases = [
        {"name": "valid", "receipt": json.dumps(site.receipt, indent=2), "submitWith": "click"},
        {
            "name": "tampered-amount",
            "receipt": json.dumps(_tamper(site.receipt, "gift.creator_amount", lambda v: str(int(v) + 1))),
            "submitWith": "keyboard",
        },
        {
            "name": "tampered-bps",
            "receipt": json.dumps(_tamper(site.receipt, "gift.creator_bps", 9_000)),
            "submitWith": "click",
        },
        {
            "name": "forged-proof",
            "receipt": json.dumps(_tamper(site.receipt, "proof", lambda p: ["0x" + "ee" * 32, *p[1:]])),
            "submitWith": "click",
        },
        {
            "name": "salt-mismatch",
            "receipt": json.dumps(_tamper(site.receipt, "sender.salt", "0x" + "00" * 32)),
            "submitWith": "click",
        },
        {"name": "wrong-chain", "receipt": json.dumps(_tamper(site.receipt, "chain_id", 1)), "submitWith": "click"},
        {"name": "not-json", "receipt": "{ this is not json", "submitWith": "click"},
    ]
    proc = subprocess.run(
        [NODE or "node", str(DRIVER)],
        input=json.dumps({"url": site.url, "screenshotDir": str(shots), "cases": cases}),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    print(f"\nweb page screenshots: {out['fullScreenshot']} (and {shots}/*.png)")
    assert out["consoleErrors"] == []  # no CSP violation, no script error

    overview = out["overview"]
    assert overview["status"].startswith("Read from chain 31337"), overview["status"]
    assert overview["rpcUrl"] == anvil.rpc_url
    assert site.deployment.vault in overview["deployment"]
    assert "75.00 %" in overview["split"]
    assert "No change pending." in overview["split"]
    assert [row[0] for row in overview["epochs"]] == ["1"]
    assert overview["epochs"][0][1] == "4"  # gifts in the epoch, read from epoch(1)
    assert "Solvent" in overview["reserve"]
    assert "50 coins" in overview["reserve"]
    assert overview["chartBars"] == 2  # reserve + liabilities of epoch 1
    assert "epoch 1: liabilities 50 coins, reserve 50 coins" in overview["chartDesc"]
    assert ["rpc-url", "Ethereum RPC URL"] in overview["labels"]
    assert any(label[0] == "receipt" for label in overview["labels"])
    assert overview["live"] == "polite"

    by_name = {c["name"]: c for c in out["cases"]}
    valid = by_name["valid"]
    assert valid["verdict"] == "verified", valid["text"]
    assert valid["failed"] == []
    assert {r["name"] for r in valid["rows"]} == {
        "vault_is_deployment",
        "gift_id_hash",
        "sender_key",
        "epoch_settled",
        "epoch_bps",
        "split",
        "merkle_proof",
        "vault_verify_gift",
    }
    assert all(r["result"] == "✓ passed" for r in valid["rows"])
    assert "Verified: all 8 checks passed" in valid["text"]

    expected_failed = {
        "tampered-amount": {"split", "merkle_proof", "vault_verify_gift"},
        "tampered-bps": {"epoch_bps"},
        "forged-proof": {"merkle_proof", "vault_verify_gift"},
        "salt-mismatch": {"sender_key"},
    }
    for name, failed in expected_failed.items():
        case = by_name[name]
        assert case["verdict"] == "failed", (name, case["text"])
        assert set(case["failed"]) == failed, name
        shown = {r["name"] for r in case["rows"] if r["result"] == "✗ FAILED"}
        assert shown == failed, name
        assert "Not verified: failed" in case["text"]

    assert by_name["wrong-chain"]["verdict"] == "unusable"
    assert "for chain 1 but the RPC serves chain 31337" in by_name["wrong-chain"]["text"]
    assert by_name["not-json"]["verdict"] == "unusable"
    assert "not valid JSON" in by_name["not-json"]["text"]
    assert Path(out["fullScreenshot"]).stat().st_size > 10_000


# --- the page's config (no browser needed) ------------------------------------------------------


def test_config_comes_from_the_deployment_record_and_hides_private_rpc_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokenbridge.config import load_settings
    from tokenbridge.entrypoints.web import PUBLIC_RPC_ENV, config_from_settings

    monkeypatch.delenv(PUBLIC_RPC_ENV, raising=False)
    (tmp_path / "5.json").write_text(json.dumps({"vault": "0x" + "ab" * 20, "deploy_block": 42}))
    local = config_from_settings(load_settings(rpc_url="http://127.0.0.1:8545", chain_id=5, deployments_dir=tmp_path))
    assert (local.rpc_url, local.vault, local.deploy_block) == ("http://127.0.0.1:8545", "0x" + "ab" * 20, 42)
    private = config_from_settings(
        load_settings(rpc_url="https://node.example/v3/SECRETKEY", chain_id=5, deployments_dir=tmp_path)
    )
    assert private.rpc_url == ""  # a provider URL may embed an API key: never put it in a public page
    monkeypatch.setenv(PUBLIC_RPC_ENV, "https://public.example")
    public = config_from_settings(
        load_settings(rpc_url="https://node.example/v3/SECRETKEY", chain_id=9, deployments_dir=tmp_path)
    )
    assert (public.rpc_url, public.vault) == ("https://public.example", None)


def test_the_embedded_config_cannot_close_its_script_tag() -> None:
    from tokenbridge.entrypoints.web import WebConfig, render_index

    html = render_index(WebConfig("http://x/</script><script>alert(1)</script>", 1, None, 0))
    assert "</script><script>alert(1)" not in html
    start = html.index('type="application/json">') + len('type="application/json">')
    embedded = json.loads(html[start : html.index("</script>", start)])
    assert embedded["rpc_url"] == "http://x/</script><script>alert(1)</script>"
