"""Operator commands against a real deployment on the session anvil: `split`, `pause`/`unpause`,
`keys create`, `roles`, and scripts/{smoke_check.py, deploy_network.py, handover_admin.sh}.

One deployment per module (admin DEV[3], bridge DEV[4], pauser DEV[5]); each test works on a
copy of the record inside an evm_snapshot that is reverted afterwards.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import Result
from eth_account import Account
from eth_utils.address import to_checksum_address
from pydantic import SecretStr
from typer.testing import CliRunner

from tokenbridge.adapters.chain.deploy import Deployment
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil
from tokenbridge.adapters.chain.keystore import create_keystore
from tokenbridge.adapters.chain.vault import ROLES, VaultClient
from tokenbridge.entrypoints.cli import app
from tokenbridge.entrypoints.cli_common import iso_utc

pytestmark = pytest.mark.chain

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CLI = str(BIN / "tokenbridge")
DEV = [Account.from_key(k).address for k in DEV_PRIVATE_KEYS]
ADMIN, BRIDGE, PAUSER = 3, 4, 5
KEY_ENV = "OPS_TEST_KEY"
FAST_KDF: dict[str, Any] = {"kdf": "pbkdf2", "iterations": 2}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBRIDGE_")}
    env.update(NO_COLOR="1", COLUMNS="200", **extra)
    return env


@pytest.fixture(scope="module")
def deployed(anvil: Anvil, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    snapshot = anvil.rpc("evm_snapshot")
    out = tmp_path_factory.mktemp("ops-deploy")
    args = ["deploy", "--dev", "--rpc-url", anvil.rpc_url, "--deployments-dir", str(out)]
    args += ["--admin", DEV[ADMIN], "--bridge", DEV[BRIDGE], "--pauser", DEV[PAUSER]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    try:
        yield out / f"{anvil.chain_id}.json"
    finally:
        anvil.rpc("evm_revert", snapshot)


@dataclass
class Ops:
    anvil: Anvil
    record: Path
    client: VaultClient

    @property
    def deployment(self) -> Deployment:
        return Deployment.from_json(self.record.read_text())

    def base(self) -> list[str]:
        return ["--rpc-url", self.anvil.rpc_url, "--deployment", str(self.record)]

    def cli(self, *args: str, signer: int | None = None, input: str | None = None) -> Result:
        """Run `tokenbridge ARGS` in-process; `signer` picks the dev key passed through --key-env."""
        env = {KEY_ENV: DEV_PRIVATE_KEYS[signer]} if signer is not None else {}
        extra = ["--key-env", KEY_ENV] if signer is not None else []
        return CliRunner().invoke(app, [*args, *extra, *self.base()], env=env, input=input)

    def json(self, *args: str, signer: int | None = None) -> dict[str, Any]:
        result = self.cli(*args, "--json", signer=signer)
        assert result.exit_code == 0, result.output
        parsed: dict[str, Any] = json.loads(result.stdout)
        assert parsed["ok"] is True
        return parsed

    def travel(self, seconds: int) -> None:
        self.anvil.rpc("evm_increaseTime", seconds)
        self.anvil.rpc("evm_mine")

    def chain_time(self) -> int:
        return int(self.client.w3.eth.get_block("latest")["timestamp"])


@pytest.fixture
def ops(anvil: Anvil, deployed: Path, tmp_path: Path) -> Iterator[Ops]:
    from web3 import Web3

    snapshot = anvil.rpc("evm_snapshot")
    record = tmp_path / "deployment.json"
    shutil.copy(deployed, record)
    vault = Deployment.from_json(record.read_text()).vault
    try:
        yield Ops(anvil, record, VaultClient(Web3(Web3.HTTPProvider(anvil.rpc_url)), vault))
    finally:
        anvil.rpc("evm_revert", snapshot)


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


# --- split ------------------------------------------------------------------------------------


def test_split_propose_wait_apply_with_time_travel(ops: Ops) -> None:
    shown = ops.json("split", "show")
    assert (shown["creator_bps"], shown["split_delay"], shown["pending"]) == (8_000, 86_400, None)
    assert shown["vault"] == ops.deployment.vault

    proposed = ops.json("split", "propose", "7000", signer=ADMIN)
    effective_at = proposed["pending"]["effective_at"]
    assert effective_at == ops.chain_time() + 86_400
    assert ops.client.pending_creator_bps().bps == 7_000

    human = ops.cli("split", "show")
    assert human.exit_code == 0, human.output
    assert f"7000 bps, effective at {iso_utc(effective_at)} (in 1d)" in human.stdout
    assert "8000 bps (80% to creators, 20% to the platform)" in human.stdout

    too_early = ops.cli("split", "apply", signer=ADMIN)
    line = _one_line_error(too_early)
    assert line.startswith(f"error: split change not ready until {iso_utc(effective_at)} ")
    assert line.endswith("(CoinVaultBpsNotReady)")
    assert ops.client.creator_bps() == 8_000

    ops.travel(effective_at - ops.chain_time() - 60)  # a minute short of the effective time
    assert not ops.json("split", "show")["pending"]["ready"]
    _one_line_error(ops.cli("split", "apply", signer=ADMIN))

    ops.travel(60)
    assert ops.json("split", "show")["pending"]["ready"] is True
    applied = ops.json("split", "apply", signer=ADMIN)
    assert (applied["previous_bps"], applied["creator_bps"], applied["pending"]) == (8_000, 7_000, None)
    assert ops.client.creator_bps() == 7_000
    receipt = ops.client.w3.eth.get_transaction_receipt(applied["tx_hash"])
    assert receipt["status"] == 1


def test_apply_too_early_through_the_real_entry_point(ops: Ops) -> None:
    ops.json("split", "propose", "6500", signer=ADMIN)
    out = subprocess.run(
        [CLI, "split", "apply", "--key-env", KEY_ENV, *ops.base()],
        capture_output=True,
        text=True,
        env=_env(**{KEY_ENV: DEV_PRIVATE_KEYS[ADMIN]}),
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: split change not ready until ")
    assert "Traceback" not in out.stderr
    assert DEV_PRIVATE_KEYS[ADMIN].removeprefix("0x") not in out.stderr


def test_non_admin_signer_is_refused_clearly(ops: Ops) -> None:
    refused = ops.cli("split", "propose", "5000", signer=BRIDGE)
    assert _one_line_error(refused) == (
        f"error: signer {DEV[BRIDGE]} does not hold the admin role (AccessControlUnauthorizedAccount)"
    )
    assert not ops.client.pending_creator_bps().exists

    as_json = ops.cli("split", "propose", "5000", "--json", signer=BRIDGE)
    assert as_json.exit_code == 1
    parsed = json.loads(as_json.stdout)
    assert parsed["ok"] is False
    assert parsed["revert"] == "AccessControlUnauthorizedAccount"
    assert "does not hold the admin role" in parsed["error"]


def test_propose_out_of_range_and_cancel(ops: Ops) -> None:
    assert _one_line_error(ops.cli("split", "propose", "10001", signer=ADMIN)) == (
        "error: BPS must be in [0, 10000], got 10001"
    )
    ops.json("split", "propose", "9000", signer=ADMIN)
    replaced = ops.json("split", "propose", "8500", signer=ADMIN)
    assert replaced["replaced_pending_bps"] == 9_000
    cancelled = ops.json("split", "cancel", signer=ADMIN)
    assert (cancelled["cancelled_bps"], cancelled["pending"], cancelled["creator_bps"]) == (8_500, None, 8_000)
    assert not ops.client.pending_creator_bps().exists
    again = _one_line_error(ops.cli("split", "cancel", signer=ADMIN))
    assert again == "error: no split change is pending (CoinVaultNoPendingBps)"


# --- pause --------------------------------------------------------------------------------------


def test_pauser_pauses_but_cannot_unpause_admin_unpauses(ops: Ops) -> None:
    refused = _one_line_error(ops.cli("pause", signer=ADMIN))  # admin may not pause: one power each
    assert f"signer {DEV[ADMIN]} does not hold the pauser role" in refused
    assert not ops.client.paused()

    paused = ops.json("pause", signer=PAUSER)
    assert (paused["target"], paused["changed"], paused["paused"]) == ("vault", True, True)
    assert ops.client.paused()
    again = ops.json("pause", signer=PAUSER)
    assert (again["changed"], again["tx_hash"]) == (False, None)

    line = _one_line_error(ops.cli("unpause", signer=PAUSER))
    assert line == f"error: signer {DEV[PAUSER]} does not hold the admin role (AccessControlUnauthorizedAccount)"
    assert ops.client.paused()

    assert ops.json("unpause", signer=ADMIN)["paused"] is False
    assert not ops.client.paused()


def test_coin_switch_is_separate_from_the_vault_switch(ops: Ops) -> None:
    ops.json("pause", "--coin", signer=PAUSER)
    assert ops.client.coin_paused()
    assert not ops.client.paused()
    _one_line_error(ops.cli("unpause", "--coin", signer=PAUSER))
    assert ops.client.coin_paused()
    human = ops.cli("unpause", "--coin", signer=ADMIN)
    assert human.exit_code == 0, human.output
    assert "CreatorCoin transfers: now running (unpaused)" in human.stdout
    assert not ops.client.coin_paused()


def test_signing_with_a_keystore_and_a_wrong_password(ops: Ops, tmp_path: Path) -> None:
    keyfile = tmp_path / "pauser.json"
    create_keystore(keyfile, "right", private_key=SecretStr(DEV_PRIVATE_KEYS[PAUSER]), **FAST_KDF)
    args = ["pause", "--keystore", str(keyfile), "--password-env", "OPS_PW", *ops.base()]
    wrong = CliRunner().invoke(app, args, env={"OPS_PW": "wrong"})
    assert _one_line_error(wrong) == f"error: keystore {keyfile}: wrong password or corrupt file"
    assert not ops.client.paused()
    prompted = CliRunner().invoke(app, [a for a in args if a not in ("--password-env", "OPS_PW")], input="right\n")
    assert prompted.exit_code == 0, prompted.output
    assert ops.client.paused()


def test_missing_signer_and_missing_record_are_one_line(ops: Ops, tmp_path: Path) -> None:
    no_key = CliRunner().invoke(app, ["pause", "--key-env", "OPS_UNSET_VAR", *ops.base()])
    assert "no signer" in _one_line_error(no_key)
    missing = tmp_path / "nope.json"
    no_record = CliRunner().invoke(app, ["split", "show", "--rpc-url", ops.anvil.rpc_url, "--deployment", str(missing)])
    assert _one_line_error(no_record).startswith(f"error: no deployment record at {missing}")


# --- signer choice ----------------------------------------------------------------------------

WRITING_COMMANDS = [
    ("split", "propose", "7000"),
    ("split", "apply"),
    ("split", "cancel"),
    ("pause",),
    ("unpause",),
    ("roles", "grant", "bridge", DEV[7]),
    ("roles", "revoke", "bridge", DEV[7]),
    ("roles", "transfer-admin", "--to", DEV[7], "--yes", "--allow-eoa"),
]


@pytest.mark.parametrize("command", WRITING_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_writing_commands_never_default_to_the_worker_key(ops: Ops, command: tuple[str, ...]) -> None:
    """The worker's hot key in the environment (here: the admin's, so it *could* sign) is not used."""
    env = {"TOKENBRIDGE_BRIDGE_PRIVATE_KEY": DEV_PRIVATE_KEYS[ADMIN], "TOKENBRIDGE_BRIDGE_KEYSTORE": ""}
    block = ops.client.w3.eth.block_number
    refused = CliRunner().invoke(app, [*command, *ops.base()], env=env)
    line = _one_line_error(refused)
    assert line.startswith("error: no signer: pass --keystore PATH")
    assert "--key-env VAR" in line
    assert "--dev" in line
    assert ops.client.w3.eth.block_number == block  # nothing was sent
    assert DEV_PRIVATE_KEYS[ADMIN].removeprefix("0x") not in refused.output

    as_json = CliRunner().invoke(app, [*command, "--json", *ops.base()], env=env)
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["error"].startswith("no signer:")


def test_two_signer_options_are_refused(ops: Ops) -> None:
    refused = ops.cli("pause", "--dev", signer=PAUSER)
    assert _one_line_error(refused) == "error: pass one signer, not --key-env and --dev"
    assert not ops.client.paused()


def test_dev_picks_the_dev_key_holding_the_needed_role(ops: Ops) -> None:
    """`deploy --dev` with split roles: --dev signs pause as the pauser, unpause and split as the admin."""
    assert (ops.deployment.admin, ops.deployment.pauser) == (DEV[ADMIN], DEV[PAUSER])
    paused = ops.json("pause", "--dev")
    assert paused["changed"] is True
    assert ops.client.w3.eth.get_transaction(paused["tx_hash"])["from"] == DEV[PAUSER]
    assert ops.client.paused()

    unpaused = ops.json("unpause", "--dev")
    assert ops.client.w3.eth.get_transaction(unpaused["tx_hash"])["from"] == DEV[ADMIN]
    assert not ops.client.paused()

    coin = ops.json("pause", "--coin", "--dev")
    assert ops.client.w3.eth.get_transaction(coin["tx_hash"])["from"] == DEV[PAUSER]
    proposed = ops.json("split", "propose", "6000", "--dev")
    assert ops.client.w3.eth.get_transaction(proposed["tx_hash"])["from"] == DEV[ADMIN]


def test_dev_is_refused_when_no_dev_key_holds_the_role(ops: Ops) -> None:
    admin = Account.from_key(DEV_PRIVATE_KEYS[ADMIN])
    ops.client.grant_role("pauser", Account.create().address, account=admin)  # a key that is not anvil's
    ops.client.revoke_role("pauser", DEV[PAUSER], account=admin)
    assert not any(ops.client.has_role("pauser", a) for a in DEV)

    refused = ops.cli("pause", "--dev")
    assert _one_line_error(refused) == (
        f"error: --dev: no anvil dev key holds the pauser role of vault {ops.deployment.vault} "
        f"(the record names {DEV[PAUSER]}); sign with --keystore or --key-env"
    )
    assert not ops.client.paused()


# --- keys ---------------------------------------------------------------------------------------


def test_keys_create_writes_a_0600_keystore_and_prints_only_the_address(tmp_path: Path) -> None:
    out_path = tmp_path / "keys" / "bridge.json"
    cmd = [CLI, "keys", "create", "--out", str(out_path), "--password-env", "OPS_NEW_PW"]
    env = _env(OPS_NEW_PW="correct horse")
    made = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    address = made.stdout.strip()
    assert made.stdout == address + "\n"  # the address and nothing else
    assert stat.S_IMODE(out_path.stat().st_mode) == 0o600
    key = Account.decrypt(json.loads(out_path.read_text()), "correct horse")
    assert Account.from_key(key).address == address
    assert key.hex() not in made.stdout + made.stderr
    assert key.hex() not in out_path.read_text()

    before = out_path.read_text()
    again = CliRunner().invoke(app, cmd[1:], env={"OPS_NEW_PW": "other"})
    assert _one_line_error(again) == f"error: keystore {out_path} already exists; not overwriting it"
    assert out_path.read_text() == before


def test_keys_create_prompts_twice_and_refuses_a_mismatch(tmp_path: Path) -> None:
    mismatch = tmp_path / "a.json"
    refused = CliRunner().invoke(app, ["keys", "create", "--out", str(mismatch)], input="one\ntwo\n")
    assert refused.exit_code == 1
    assert not mismatch.exists()

    good = tmp_path / "b.json"
    made = CliRunner().invoke(app, ["keys", "create", "--out", str(good), "--json"], input="pw-9\npw-9\n")
    assert made.exit_code == 0, made.output
    parsed = json.loads(made.stdout.splitlines()[-1])
    keyfile = json.loads(good.read_text())  # (decryption itself is checked in the test above: scrypt is slow)
    assert parsed == {"ok": True, "address": to_checksum_address(keyfile["address"]), "keystore": str(good)}
    assert keyfile["crypto"]["kdf"] == "scrypt"
    assert "pw-9" not in made.output  # the prompt hides the input


# --- roles --------------------------------------------------------------------------------------


def test_roles_show_lists_each_holder(ops: Ops) -> None:
    shown = ops.json("roles", "show")
    holders = {role: [h["address"] for h in hs] for role, hs in shown["roles"].items()}
    assert holders == {"admin": [DEV[ADMIN]], "bridge": [DEV[BRIDGE]], "pauser": [DEV[PAUSER]]}
    assert all(not h["contract"] for hs in shown["roles"].values() for h in hs)


def test_transfer_admin_to_a_contract_removes_the_old_admin(ops: Ops) -> None:
    multisig = ops.deployment.coin  # any contract address stands in for a multisig here
    eoa = _one_line_error(ops.cli("roles", "transfer-admin", "--to", DEV[7], "--yes", signer=ADMIN))
    assert f"{DEV[7]} has no contract code" in eoa
    assert "--allow-eoa" in eoa
    unconfirmed = _one_line_error(ops.cli("roles", "transfer-admin", "--to", multisig, signer=ADMIN))
    assert unconfirmed.endswith("re-run with --yes")
    assert ops.client.has_role("admin", DEV[ADMIN])
    assert not ops.client.has_role("admin", multisig)
    not_admin = _one_line_error(ops.cli("roles", "transfer-admin", "--to", multisig, "--yes", signer=BRIDGE))
    assert f"signer {DEV[BRIDGE]} does not hold the admin role" in not_admin

    moved = ops.json("roles", "transfer-admin", "--to", multisig, "--yes", signer=ADMIN)
    assert (moved["new_admin"], moved["previous_admin"], moved["other_admins"]) == (multisig, DEV[ADMIN], [])
    assert ops.client.has_role("admin", multisig)
    assert not ops.client.has_role("admin", DEV[ADMIN])
    assert ops.deployment.admin == multisig
    shown = ops.json("roles", "show")
    assert shown["roles"]["admin"] == [{"address": multisig, "contract": True}]
    # the old admin has lost its powers
    assert "does not hold the admin role" in _one_line_error(ops.cli("split", "propose", "1", signer=ADMIN))


def test_bridge_key_rotation_grant_then_revoke(ops: Ops) -> None:
    new = DEV[7]
    granted = ops.json("roles", "grant", "bridge", new, signer=ADMIN)
    assert granted["tx_hash"] is not None
    assert ops.deployment.bridge == new
    assert ops.client.has_role("bridge", new)
    assert ops.client.has_role("bridge", DEV[BRIDGE])
    both = ops.json("roles", "show")["roles"]["bridge"]
    assert sorted(h["address"] for h in both) == sorted([new, DEV[BRIDGE]])
    revoked = ops.json("roles", "revoke", "bridge", DEV[BRIDGE], signer=ADMIN)
    assert revoked["record_names_revoked"] is False
    assert not ops.client.has_role("bridge", DEV[BRIDGE])
    assert [h["address"] for h in ops.json("roles", "show")["roles"]["bridge"]] == [new]
    self_revoke = _one_line_error(ops.cli("roles", "revoke", "admin", DEV[ADMIN], signer=ADMIN))
    assert "transfer-admin" in self_revoke
    assert ops.client.has_role("admin", DEV[ADMIN])


# --- scripts ------------------------------------------------------------------------------------


@functools.cache
def _script(name: str) -> ModuleType:
    """Load scripts/<name>.py as a module (its main(argv) runs in-process: no interpreter start-up)."""
    spec = importlib.util.spec_from_file_location(f"ops_script_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _smoke(ops: Ops, capsys: pytest.CaptureFixture[str], record: Path | None = None) -> tuple[int, dict[str, Any]]:
    argv = ["--json", "--rpc-url", ops.anvil.rpc_url, "--deployment", str(record or ops.record)]
    code = _script("smoke_check").main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_smoke_check_passes_on_a_good_deployment_and_fails_when_paused(
    ops: Ops, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _smoke(ops, capsys)
    assert (code, report["ok"], report["failures"]) == (0, True, [])
    names = {c["name"] for c in report["checks"]}
    assert {"vault code", "coin code", "coin.vault", "decimals", "admin role", "vault not paused"} <= names

    ops.client.pause(account=Account.from_key(DEV_PRIVATE_KEYS[PAUSER]))
    ops.client.pause_coin(account=Account.from_key(DEV_PRIVATE_KEYS[PAUSER]))
    code, report = _smoke(ops, capsys)
    assert (code, report["ok"]) == (1, False)
    assert report["failures"] == ["vault not paused", "coin not paused"]


def test_smoke_check_flags_a_record_that_does_not_match_the_chain(
    ops: Ops, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(ops.record.read_text())
    data["bridge"] = DEV[8]  # nobody granted this key the bridge role
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(data))
    code, report = _smoke(ops, capsys, wrong)
    assert code == 1
    assert report["failures"] == ["bridge role"]


def test_deploy_network_with_a_keystore_then_smoke_check(anvil: Anvil, deployed: Path, tmp_path: Path) -> None:
    snapshot = anvil.rpc("evm_snapshot")
    try:
        keyfile = tmp_path / "deployer.json"
        create_keystore(keyfile, "pw", private_key=SecretStr(DEV_PRIVATE_KEYS[8]), **FAST_KDF)
        out = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "deploy_network.py"),
                *("--rpc-url", anvil.rpc_url, "--keystore", str(keyfile), "--password-env", "DEPLOY_PW", "--yes"),
                *("--admin", DEV[ADMIN], "--bridge", DEV[BRIDGE], "--pauser", DEV[PAUSER]),
                *("--deployments-dir", str(tmp_path / "deployments")),
            ],
            capture_output=True,
            text=True,
            env=_env(DEPLOY_PW="pw"),
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        d = Deployment.from_json((tmp_path / "deployments" / f"{anvil.chain_id}.json").read_text())
        assert (d.deployer, d.admin, d.bridge, d.pauser) == (DEV[8], DEV[ADMIN], DEV[BRIDGE], DEV[PAUSER])
        assert "smoke check passed" in out.stdout
        assert DEV_PRIVATE_KEYS[8].removeprefix("0x") not in out.stdout + out.stderr
    finally:
        anvil.rpc("evm_revert", snapshot)


def test_handover_admin_script_moves_admin_to_a_multisig(ops: Ops, tmp_path: Path) -> None:
    keyfile = tmp_path / "admin.json"
    create_keystore(keyfile, "pw", private_key=SecretStr(DEV_PRIVATE_KEYS[ADMIN]), **FAST_KDF)
    multisig = ops.deployment.coin
    out = subprocess.run(
        [
            *("bash", str(ROOT / "scripts" / "handover_admin.sh"), "--to", multisig, "--keystore", str(keyfile)),
            *("--password-env", "ADMIN_PW", "--yes", "--rpc-url", ops.anvil.rpc_url, "--deployment", str(ops.record)),
        ],
        capture_output=True,
        text=True,
        env=_env(ADMIN_PW="pw", TOKENBRIDGE_BIN=CLI, PYTHON=sys.executable),
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert ops.client.has_role("admin", multisig)
    assert not ops.client.has_role("admin", DEV[ADMIN])
    assert "smoke check passed" in out.stdout
    assert DEV_PRIVATE_KEYS[ADMIN].removeprefix("0x") not in out.stdout + out.stderr


def test_every_script_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("smoke_check", "deploy_network"):
        with pytest.raises(SystemExit) as exited:
            _script(name).main(["--help"])
        assert exited.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: {name}.py")
        assert "--rpc-url" in text
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "handover_admin.sh"), "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: scripts/handover_admin.sh --to ADDRESS --keystore PATH")
    bad = subprocess.run(
        ["bash", str(ROOT / "scripts" / "handover_admin.sh"), "--keystore", "k.json"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert (bad.returncode, bad.stderr) == (2, "error: --to ADDRESS is required (see --help)\n")


def test_calldata_prints_the_call_for_a_multisig_without_a_signer(ops: Ops) -> None:
    from tokenbridge.adapters.chain.vault import send_transaction

    printed = ops.json("split", "propose", "7250", "--calldata")  # no key anywhere
    call = printed["calldata"]
    assert (call["to"], call["function"], call["value"]) == (ops.deployment.vault, "proposeCreatorBps", 0)
    assert call["data"] == ops.client.encode_call("proposeCreatorBps", 7_250)
    assert not ops.client.pending_creator_bps().exists  # nothing was sent

    # the admin (standing in for the multisig) submits exactly those bytes
    admin = Account.from_key(DEV_PRIVATE_KEYS[ADMIN])
    send_transaction(ops.client.w3, admin, {"to": call["to"], "data": call["data"]}, "multisig proposal")
    assert ops.client.pending_creator_bps().bps == 7_250

    grant = ops.json("roles", "grant", "bridge", DEV[7], "--calldata")["calldata"]
    assert grant["data"] == ops.client.encode_call("grantRole", ROLES["bridge"], DEV[7])
    unpause = ops.cli("unpause", "--coin", "--calldata")
    assert unpause.exit_code == 0, unpause.output
    assert "function  unpauseCoin" in unpause.stdout
    assert ops.deployment.bridge == DEV[BRIDGE]  # printing calldata does not touch the record
