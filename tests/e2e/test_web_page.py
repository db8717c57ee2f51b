"""The transparency page in a real browser: anvil + a real deployment with a settled gift tree,
committed liabilities and a history of split-rate changes, the FastAPI app (create_app +
mount_web) under uvicorn, and Debian's chromium driven by playwright-core (tests/e2e/web_page.mjs).
A real receipt is verified in the browser; tampered ones are rejected with the failing check
shown; the RPC URL is switched to a dead port and back; keyboard order and labels, the split
history, the epochs' transaction links and a one-section failure are checked. Screenshots are kept under
pytest's tmp path and their paths printed (run with -s to see them)."""

from __future__ import annotations

import copy
import itertools
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
SPLIT_DELAY = 5_400  # shown as "1 h 30 min"
EXPLORER = "https://explorer.example"
LOG_RANGE = 3  # blocks per eth_getLogs for this site (default 10,000): the ~12-block history takes several ranges


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
    settle_tx: str
    split_txs: list[str]  # propose, cancel, propose, apply, propose (oldest first)


@pytest.fixture(scope="module")
def chain_world(anvil: Anvil) -> Iterator[tuple[Deployment, dict[str, Any], int, str, list[str]]]:
    """A real vault with epoch 1 settled from a real gift tree and liabilities committed, then the split
    proposed, cancelled, proposed, applied (80 %) and proposed again (70 %, pending); reverted after."""
    snapshot = anvil.rpc("evm_snapshot")
    try:
        deployer, admin, bridge, pauser = (Account.from_key(k) for k in DEV_PRIVATE_KEYS[:4])
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        d = deploy(
            w3,
            deployer,
            admin.address,
            bridge.address,
            pauser.address,
            VaultParams(creator_bps=BPS, split_delay=SPLIT_DELAY),
        )
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
        settled = client.settle_gifts(
            1, 0, tree.root, len(gifts), sum(g.gross for g in gifts), list(per), list(per.values())
        )
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
        split_txs = [
            client.propose_creator_bps(8_000, account=admin),
            client.cancel_creator_bps(account=admin),
            client.propose_creator_bps(8_000, account=admin),
        ]
        anvil.rpc("evm_increaseTime", SPLIT_DELAY + 1)
        anvil.rpc("evm_mine")
        split_txs += [client.apply_creator_bps(account=admin), client.propose_creator_bps(7_000, account=admin)]
        yield d, receipt, client.reserve(), _tx(settled), [_tx(t) for t in split_txs]
    finally:
        anvil.rpc("evm_revert", snapshot)


@pytest.fixture(scope="module")
def site(
    anvil: Anvil,
    chain_world: tuple[Deployment, dict[str, Any], int, str, list[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    """The real API app with the page mounted, served by uvicorn in a thread on a free port."""
    import uvicorn

    from tokenbridge.config import load_settings
    from tokenbridge.entrypoints.api.app import create_app
    from tokenbridge.entrypoints.web import WebConfig, mount_web

    deployment, receipt, reserve, settle_tx, split_txs = chain_world
    db = tmp_path_factory.mktemp("web-db") / "web.sqlite3"
    app = create_app(settings=load_settings(database_url=f"sqlite:///{db}"))
    mount_web(
        app,
        config=WebConfig(anvil.rpc_url, anvil.chain_id, deployment.vault, deployment.deploy_block, EXPLORER, LOG_RANGE),
    )
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
        yield Site(f"http://127.0.0.1:{port}/", deployment, receipt, reserve, settle_tx, split_txs)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _tx(result: Any) -> str:
    """0x-hex transaction hash of a VaultClient call result."""
    h = getattr(result, "tx_hash", result)
    text = h.hex() if isinstance(h, bytes) else str(h)
    return (text if text.startswith("0x") else "0x" + text).lower()


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
        input=json.dumps(
            {
                "url": site.url,
                "screenshotDir": str(shots),
                "cases": cases,
                "badRpcUrl": f"http://127.0.0.1:{free_port()}",  # nothing listens there
                "validReceipt": json.dumps(site.receipt),
            }
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    print(f"\nweb page screenshots: {out['fullScreenshot']} (and {shots}/*.png)")
    # no CSP violation, no script error (the browser logs the refused connections to the wrong RPC URL)
    assert [e for e in out["consoleErrors"] if "net::ERR_CONNECTION_REFUSED" not in e] == []

    overview = out["overview"]
    assert overview["status"].startswith("Read from chain 31337"), overview["status"]
    assert overview["rpcUrl"] == anvil.rpc_url
    assert site.deployment.vault in overview["deployment"]
    assert "80.00 %" in overview["split"]  # applied after the delay
    assert "Pending change: 70.00 % (7000 bps)" in overview["split"]
    assert "wait 1 h 30 min before it applies" in overview["split"]  # splitDelay in a human unit
    # the split history: every proposal, cancellation and application, newest first, with block times
    history = overview["splitHistory"]
    assert [h["kind"] for h in history] == ["proposed", "applied", "proposed", "cancelled", "proposed", "initial"]
    assert history[0]["text"].startswith("Proposed 70.00 % (was 80.00 %); may apply from 20")
    assert history[1]["text"] == "Applied 80.00 % (was 75.00 %)"
    assert history[3]["text"] == "Cancelled the proposal of 80.00 %"
    assert history[5]["text"] == "Initial rate 75.00 %, set at deployment"  # the constructor's event
    assert all(h["when"].startswith("20") and h["when"].endswith("Z") for h in history)
    assert [h["tx"] for h in history[:5]] == [f"{EXPLORER}/tx/{t}" for t in reversed(site.split_txs)]
    # recent epochs link their settlement transaction on the configured explorer
    assert [row[0] for row in overview["epochs"]] == ["1"]
    assert overview["epochs"][0][1] == "4"  # gifts in the epoch, read from epoch(1)
    assert overview["epochs"][0][3] == "7500 bps"  # the epoch keeps the rate it settled at
    [[link]] = overview["epochTxs"]
    assert link["href"] == f"{EXPLORER}/tx/{site.settle_tx}"
    assert site.settle_tx in link["label"]
    assert "Solvent" in overview["reserve"]
    assert "50 coins" in overview["reserve"]
    # the chart: bars, a y axis in coins with ticks, an x axis of epochs, and a hidden table of the data
    assert overview["chartBars"] == 2  # reserve + liabilities of epoch 1
    assert "epoch 1: liabilities 50 coins, reserve 50 coins" in overview["chartDesc"]
    assert overview["chartTicks"] == ["0", "12.5", "25", "37.5", "50"]
    assert overview["chartAxes"] == ["coins", "epoch of the liabilities commitment"]
    [row] = overview["reserveTable"]
    assert (row[0], row[2], row[3]) == ("1", "50 coins", "50 coins")
    assert overview["reserveTableHidden"] is True
    assert ["rpc-url", "Ethereum RPC URL"] in overview["labels"]
    assert any(label[0] == "receipt" for label in overview["labels"])
    assert overview["live"] == "polite"

    # Tab from the top: the skip link, then the form controls in order, each labelled
    tab = out["tabOrder"]
    ids = [f["id"] for f in tab]
    controls = ["rpc-url", "receipt", "verify-button"]
    assert all(c in ids for c in controls), tab
    assert [i for i in ids if i in controls] == controls
    by_id = {f["id"]: f for f in tab}
    assert by_id["rpc-url"]["label"] == "Ethereum RPC URL"
    assert by_id["receipt"]["label"].startswith("Gift receipt (JSON")
    assert by_id["verify-button"]["label"] == "Verify in this browser"
    assert tab[0]["label"] == "Skip to the receipt check"
    assert any(f["tag"] == "button" and f["label"] == "Reload from this node" for f in tab)
    assert all(f["label"] for f in tab), tab  # links (tx hashes) included: none without a name

    # a wrong RPC URL: a clear error in the status and in every section; back to the right one: verified
    switch = out["rpcSwitch"]
    assert switch["bad"]["status"].startswith("Could not reach the node at http://127.0.0.1:"), switch["bad"]
    assert len(switch["bad"]["errors"]) == 3
    assert all(e.startswith("Could not read the") for e in switch["bad"]["errors"])
    assert switch["badVerify"]["verdict"] == "unusable"
    assert "The node did not answer" in switch["badVerify"]["text"]
    assert switch["back"]["status"].startswith("Read from chain 31337"), switch["back"]
    assert switch["back"]["errors"] == []
    assert "80.00 %" in switch["back"]["split"]
    assert switch["backVerify"]["verdict"] == "verified", switch["backVerify"]["text"]

    # no explorer configured: full hashes, selectable, no links
    plain = out["noExplorer"]
    assert plain["links"] == 0
    assert plain["epochHashes"] == [{"text": site.settle_tx, "userSelect": "all"}]
    assert plain["historyHashes"][:5] == list(reversed(site.split_txs))

    # events are read newest first in ranges of at most LOG_RANGE blocks, back to the deployment
    ranges = out["getLogs"]
    assert all(r["to"] - r["from"] + 1 <= LOG_RANGE for r in ranges), ranges
    by_section: dict[str, list[dict[str, Any]]] = {}
    for r in ranges:
        by_section.setdefault(",".join(sorted(r["topics"])), []).append(r)
    assert len(by_section) == 3  # split events, GiftsSettled, LiabilitiesCommitted: read independently
    for section in by_section.values():
        assert len(section) >= 3, section  # no stop condition is met before the deployment block
        assert [r["to"] for r in section] == sorted((r["to"] for r in section), reverse=True)  # newest first
        assert all(newer["from"] == older["to"] + 1 for newer, older in itertools.pairwise(section))
        assert section[-1]["from"] == site.deployment.deploy_block

    # the node refuses the epochs' eth_getLogs only: that section shows its error, the others still load
    partial = out["partial"]
    assert "1 of 3 sections could not be read" in partial["status"], partial["status"]
    [error] = partial["errors"]
    assert error.startswith("Could not read the epochs:")
    assert "80.00 %" in partial["split"]
    assert "Solvent" in partial["reserve"]

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
    from tokenbridge.entrypoints.web import PUBLIC_EXPLORER_ENV, PUBLIC_RPC_ENV, config_from_settings

    monkeypatch.delenv(PUBLIC_RPC_ENV, raising=False)
    monkeypatch.delenv(PUBLIC_EXPLORER_ENV, raising=False)
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
    assert public.explorer_url == ""


def test_public_rpc_and_explorer_are_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenbridge.config import load_settings
    from tokenbridge.entrypoints.web import PUBLIC_EXPLORER_ENV, PUBLIC_RPC_ENV, config_from_settings

    monkeypatch.delenv(PUBLIC_RPC_ENV, raising=False)
    monkeypatch.setenv(PUBLIC_EXPLORER_ENV, "https://etherscan.io/")
    config = config_from_settings(
        load_settings(
            rpc_url="https://node.example/v3/SECRETKEY",
            public_rpc_url="https://rpc.example",
            deployments_dir=tmp_path,
        )
    )
    assert (config.rpc_url, config.explorer_url) == ("https://rpc.example", "https://etherscan.io")
    # an explorer that is not an http(s) URL is dropped (the page then shows plain hashes)
    odd = config_from_settings(load_settings(public_explorer_url="javascript:alert(1)", deployments_dir=tmp_path))
    assert odd.explorer_url == ""


def test_the_embedded_config_cannot_close_its_script_tag() -> None:
    from tokenbridge.entrypoints.web import WebConfig, render_index

    html = render_index(WebConfig("http://x/</script><script>alert(1)</script>", 1, None, 0))
    assert "</script><script>alert(1)" not in html
    start = html.index('type="application/json">') + len('type="application/json">')
    embedded = json.loads(html[start : html.index("</script>", start)])
    assert embedded["rpc_url"] == "http://x/</script><script>alert(1)</script>"
