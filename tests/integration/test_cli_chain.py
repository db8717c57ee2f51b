"""`tokenbridge deploy` and `devnet` end to end: the deploy script is tested like code
(every role on the result, the deployments file, refusal to redeploy over live contracts);
`demo`'s options here, its whole run in tests/e2e/test_demo.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account
from typer.testing import CliRunner

from tokenbridge.adapters.chain.artifacts import artifact_hashes
from tokenbridge.adapters.chain.deploy import Deployment
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil, free_port
from tokenbridge.adapters.chain.vault import VaultClient
from tokenbridge.entrypoints.cli import app

pytestmark = pytest.mark.chain

CLI = str(Path(sys.executable).with_name("tokenbridge"))
DEV = [Account.from_key(k).address for k in DEV_PRIVATE_KEYS]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBRIDGE_")}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


def _deploy_args(anvil: Anvil, out: Path, *extra: str) -> list[str]:
    return [
        "deploy",
        "--dev",
        "--rpc-url",
        anvil.rpc_url,
        "--deployments-dir",
        str(out),
        "--admin",
        DEV[3],
        "--bridge",
        DEV[4],
        "--pauser",
        DEV[5],
        "--creator-bps",
        "7500",
        "--payout-delay",
        "7200",
        *extra,
    ]


def _client(anvil: Anvil, vault: str) -> VaultClient:
    from web3 import Web3

    return VaultClient(Web3(Web3.HTTPProvider(anvil.rpc_url)), vault)


def test_deploy_writes_the_record_and_grants_every_role(chain_snapshot: Anvil, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, _deploy_args(chain_snapshot, tmp_path))
    assert result.exit_code == 0, result.output
    record = tmp_path / f"{chain_snapshot.chain_id}.json"
    d = Deployment.from_json(record.read_text())
    assert d.chain_id == chain_snapshot.chain_id
    assert (d.admin, d.bridge, d.pauser, d.deployer) == (DEV[3], DEV[4], DEV[5], DEV[0])
    assert d.artifact_hashes == artifact_hashes()
    assert d.vault in result.output
    client = _client(chain_snapshot, d.vault)
    for role, holder in (("admin", DEV[3]), ("bridge", DEV[4]), ("pauser", DEV[5])):
        assert client.has_role(role, holder), role
        # one power each: nobody else in the cast holds it, the deployer keeps nothing
        for other in {DEV[0], DEV[3], DEV[4], DEV[5]} - {holder}:
            assert not client.has_role(role, other), (role, other)
    assert client.creator_bps() == 7_500
    assert client.payout_delay() == 7_200
    assert client.coin_address == d.coin
    receipt = client.w3.eth.get_transaction_receipt(d.tx_hashes["CoinVault"])
    assert receipt["contractAddress"] == d.vault
    assert receipt["blockNumber"] == d.deploy_block


def test_second_deploy_refuses_in_one_line_unless_redeploy(chain_snapshot: Anvil, tmp_path: Path) -> None:
    first = CliRunner().invoke(app, _deploy_args(chain_snapshot, tmp_path))
    assert first.exit_code == 0, first.output
    record = tmp_path / f"{chain_snapshot.chain_id}.json"
    before = record.read_text()

    # through the real entry point, as an operator sees it: one line on stderr, exit 1
    again = subprocess.run(
        [CLI, *_deploy_args(chain_snapshot, tmp_path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1, again.stderr
    assert again.stderr.startswith("error: contracts already deployed on chain")
    assert "--redeploy" in again.stderr
    assert "Traceback" not in again.stderr + again.stdout
    assert record.read_text() == before

    redeployed = CliRunner().invoke(app, _deploy_args(chain_snapshot, tmp_path, "--redeploy"))
    assert redeployed.exit_code == 0, redeployed.output
    new = Deployment.from_json(record.read_text())
    old = Deployment.from_json(before)
    assert new.vault != old.vault
    assert _client(chain_snapshot, new.vault).has_role("admin", DEV[3])


def test_deploy_over_a_record_whose_contracts_are_gone(chain_snapshot: Anvil, tmp_path: Path) -> None:
    """A devnet restarted from scratch: the record is stale, so deploying again is allowed."""
    stale = {
        "chain_id": chain_snapshot.chain_id,
        "vault": "0x000000000000000000000000000000000000dEaD",
        "coin": "0x000000000000000000000000000000000000bEEF",
        "admin": DEV[0],
        "bridge": DEV[0],
        "pauser": DEV[0],
        "deployer": DEV[0],
        "deploy_block": 1,
        "tx_hashes": {},
        "artifact_hashes": {},
        "params": {},
    }
    (tmp_path / f"{chain_snapshot.chain_id}.json").write_text(json.dumps(stale))
    result = CliRunner().invoke(app, _deploy_args(chain_snapshot, tmp_path))
    assert result.exit_code == 0, result.output
    assert "replaced the previous deployment" in result.output


def test_deploy_without_a_key_is_a_one_line_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [CLI, "deploy", "--deployments-dir", str(tmp_path), "--rpc-url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert (
        out.stderr.strip()
        == "error: no deployer key: set TOKENBRIDGE_BRIDGE_PRIVATE_KEY (or pass --dev on a local anvil)"
    )
    assert not list(tmp_path.glob("*.json"))


def test_deploy_reads_the_key_from_the_named_env_var(chain_snapshot: Anvil, tmp_path: Path) -> None:
    env = {**_env(), "MY_DEPLOY_KEY": DEV_PRIVATE_KEYS[7]}
    out = subprocess.run(
        [
            CLI,
            "deploy",
            "--key-env",
            "MY_DEPLOY_KEY",
            "--rpc-url",
            chain_snapshot.rpc_url,
            "--deployments-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    d = Deployment.from_json((tmp_path / f"{chain_snapshot.chain_id}.json").read_text())
    assert d.deployer == d.admin == d.bridge == d.pauser == DEV[7]
    assert DEV_PRIVATE_KEYS[7] not in out.stdout + out.stderr  # a real key is never echoed


def test_demo_help_names_the_story_and_its_knobs() -> None:
    # the full run (anvil, API, worker, population, report, exit status) is tests/e2e/test_demo.py
    out = subprocess.run([CLI, "demo", "--help"], capture_output=True, text=True, env=_env(), timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    for option in ("--users", "--creators", "--batch-gifts", "--payout-delay", "--data-dir", "--keep-running"):
        assert option in out.stdout, option
    assert "--tamper-receipt" not in out.stdout  # a test hook, hidden


def test_devnet_serves_until_sigterm_then_stops_anvil(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [CLI, "devnet", "--port", str(port), "--chain-id", "4242"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if "press Ctrl-C" in line:
                break
        text = "".join(seen)
        assert f"RPC URL   http://127.0.0.1:{port}" in text
        assert "chain id  4242" in text
        assert DEV[0] in text
        assert DEV_PRIVATE_KEYS[0] in text
        anvil_pid = int(text.split("anvil pid ")[1].split(";")[0])
        from web3 import Web3

        assert Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}")).eth.chain_id == 4242
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        for _ in range(50):  # anvil is reaped by the CLI; give the kernel a moment
            try:
                os.kill(anvil_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"anvil pid {anvil_pid} still running after devnet exited")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# --- error paths: one line, checked before anything is started or deployed ----------------------


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=env or _env(), cwd=cwd, timeout=60, check=False
    )


def test_devnet_on_a_busy_port_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:  # another node already listens there
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        out = _cli("devnet", "--port", str(port), cwd=tmp_path)
    assert out.returncode == 1, out.stdout
    assert out.stderr.strip() == f"error: port {port} is in use"
    assert "funded dev accounts" not in out.stdout  # was: the other node's info, as if ours


@pytest.mark.parametrize("value", ["/nonexistent/anvil", "{tmp}"])
def test_set_but_invalid_anvil_bin_is_an_error_not_ignored(tmp_path: Path, value: str) -> None:
    bad = value.format(tmp=tmp_path)  # a directory is not an executable either
    out = _cli("devnet", "--port", str(free_port()), env={**_env(), "TOKENBRIDGE_ANVIL_BIN": bad}, cwd=tmp_path)
    assert out.returncode == 1, out.stdout
    assert out.stderr.strip() == f"error: TOKENBRIDGE_ANVIL_BIN {bad!r} is not an executable file"


def test_deploy_into_an_unwritable_directory_fails_before_deploying(chain_snapshot: Anvil, tmp_path: Path) -> None:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(chain_snapshot.rpc_url))
    nonce = w3.eth.get_transaction_count(DEV[0])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # root may write anywhere, but not under a file
    out = _cli(*_deploy_args(chain_snapshot, blocker / "deployments"))
    assert out.returncode == 1, out.stdout
    assert out.stderr.strip().startswith(f"error: cannot write deployment records in {blocker / 'deployments'}")
    assert len(out.stderr.strip().splitlines()) == 1
    assert w3.eth.get_transaction_count(DEV[0]) == nonce  # nothing was deployed
