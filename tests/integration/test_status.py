"""`tokenbridge status`: every section (chain, contracts, worker lease, outbox, in-flight txs,
indexer lag, epochs, solvency, alarms), the `ok` / exit-code rules (2: alarm or insolvent,
3: chain unreachable or wrong chain), ISO-8601 datetimes in --json, and a degraded answer with
the node down. Also `--json` of `alarms list|clear`, `apikey create|list|revoke`, `db upgrade|current`.

The service tests use a fake vault and a fixed clock; the CLI tests run against the session anvil
(a `tokenbridge deploy --dev` deployment with split roles) or against a closed port.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner

from support_bridge import uow_factory
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil
from tokenbridge.adapters.db import migrate
from tokenbridge.adapters.db.models import OutboxItem
from tokenbridge.adapters.db.models_deposits import Alarm, IndexerState
from tokenbridge.adapters.db.models_settlement import Epoch
from tokenbridge.adapters.db.models_tx import ChainTx, Signer
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.entrypoints.cli import app
from tokenbridge.services.status import (
    EXIT_ATTENTION,
    EXIT_CHAIN_UNAVAILABLE,
    EXIT_OK,
    StatusReport,
    StatusService,
)

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
COIN = "0xa16E02E87b7454126E5E10d957A927A7F5B5d2be"
SIGNER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
DEV = [Account.from_key(k).address for k in DEV_PRIVATE_KEYS]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
TOKENBRIDGE = str(Path(sys.executable).with_name("tokenbridge"))


@dataclass
class Commitment:
    epoch_id: int
    total: int
    committed_at: int


@dataclass
class FakeVault:
    """A StatusChain: records every read, so a test can see what was (not) asked."""

    reserve_units: int = 1_000
    commitment: Commitment = field(default_factory=lambda: Commitment(7, 900, 1_700_000_000))
    is_solvent: bool = True
    is_paused: bool = False
    holders: dict[str, set[str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    address: str = VAULT
    coin_address: str = COIN

    def paused(self) -> bool:
        self.calls.append("paused")
        return self.is_paused

    def coin_paused(self) -> bool:
        self.calls.append("coin_paused")
        return False

    def has_role(self, role: str, address: str) -> bool:
        self.calls.append(f"has_role:{role}")
        return address in self.holders.get(role, set())

    def reserve(self) -> int:
        self.calls.append("reserve")
        return self.reserve_units

    def solvent(self) -> bool:
        self.calls.append("solvent")
        return self.is_solvent

    def latest_liabilities(self) -> Commitment:
        self.calls.append("latest_liabilities")
        return self.commitment


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[str, UnitOfWorkFactory]]:
    url = f"sqlite:///{tmp_path / 'status.sqlite3'}"
    migrate.upgrade(url)
    factory, engine = uow_factory(url)
    try:
        yield url, factory
    finally:
        engine.dispose()


def add(uow: UnitOfWorkFactory, *rows: Any) -> None:
    with uow.write() as u:
        for row in rows:
            u.session.add(row)
            u.session.flush()
        u.commit()


def populate(uow: UnitOfWorkFactory) -> None:
    """A worker mid-flight: outbox rows in several states, one tx in flight, a live lease."""
    ago = lambda s: NOW - timedelta(seconds=s)  # noqa: E731
    add(
        uow,
        OutboxItem(kind="mint", amount=500, ref_id="p1", state="pending", created_at=ago(90), updated_at=ago(90)),
        OutboxItem(kind="mint", amount=300, ref_id="p2", state="batched", created_at=ago(400), updated_at=ago(40)),
        OutboxItem(kind="mint", amount=200, ref_id="p3", state="done", created_at=ago(9_000), updated_at=ago(8_000)),
        OutboxItem(kind="payout", amount=70, ref_id="h1", state="pending", created_at=ago(30), updated_at=ago(30)),
        Signer(
            address=SIGNER,
            chain_id=31337,
            next_nonce=12,
            lease_holder="host:42:abcd",
            lease_expires_at=NOW + timedelta(seconds=25),
            lease_token=3,
            updated_at=ago(5),
        ),
        ChainTx(
            signer=SIGNER,
            chain_id=31337,
            nonce=11,
            purpose="mint",
            ref="batch:1",
            to_address=VAULT,
            data=b"\x01",
            gas=100_000,
            state="broadcast",
            created_at=ago(60),
            updated_at=ago(10),
        ),
        ChainTx(
            signer=SIGNER,
            chain_id=31337,
            nonce=10,
            purpose="settle",
            ref="epoch:1",
            to_address=VAULT,
            data=b"\x02",
            gas=100_000,
            state="confirmed",
            created_at=ago(600),
            updated_at=ago(500),
        ),
        IndexerState(vault=VAULT, chain_id=31337, start_block=10, cursor_block=95, head_block=96, range_size=2000),
        Epoch(id=1, state="settled", gift_count=4, gross_total=1_000, created_at=ago(900), settled_at=ago(800)),
        Epoch(id=2, state="open", gift_count=1, gross_total=50, created_at=ago(100)),
    )


def service(uow: UnitOfWorkFactory, vault: FakeVault | None = None, **kwargs: Any) -> StatusService:
    args: dict[str, Any] = {
        "chain": vault,
        "chain_id": lambda: 31337,
        "expected_chain_id": 31337,
        "head": lambda: 100,
        "rpc_url": "http://node",
        "clock": lambda: NOW,
    }
    args.update(kwargs)
    return StatusService(uow, **args)


def dump(report: StatusReport) -> dict[str, Any]:
    """What `status --json` prints."""
    from tokenbridge.entrypoints.cli_bridge import _dump

    parsed: dict[str, Any] = json.loads(_dump(report.to_dict()))
    return parsed


# --- the service --------------------------------------------------------------------------------


def test_every_section_from_the_database_and_the_chain(db: tuple[str, UnitOfWorkFactory]) -> None:
    _, uow = db
    populate(uow)
    vault = FakeVault(holders={"admin": {DEV[1]}, "bridge": {DEV[2], SIGNER}, "pauser": {DEV[3]}})
    roles = {"admin": DEV[1], "bridge": DEV[2], "pauser": DEV[4]}  # the record's pauser lost its role
    report = service(uow, vault, roles=roles).report()

    assert report.chain is not None
    assert (report.chain.reachable, report.chain.chain_id, report.chain.head_block) == (True, 31337, 100)
    assert report.contracts is not None
    assert (report.contracts.vault, report.contracts.coin) == (VAULT, COIN)
    assert (report.contracts.vault_paused, report.contracts.coin_paused) == (False, False)
    assert [(r.role, r.holds) for r in report.contracts.roles] == [("admin", True), ("bridge", True), ("pauser", False)]

    assert report.worker is not None
    assert report.worker.live
    (signer,) = report.worker.signers
    assert (signer.address, signer.lease_holder, signer.next_nonce) == (SIGNER, "host:42:abcd", 12)
    assert (signer.lease_expires_in_s, signer.heartbeat_age_s, signer.bridge_role) == (25.0, 5.0, True)

    assert report.outbox == {"mint": {"batched": 1, "done": 1, "pending": 1}, "payout": {"pending": 1}}
    assert report.outbox_amounts["mint"] == {"batched": 300, "done": 200, "pending": 500}
    oldest = report.outbox_oldest_open
    assert oldest is not None
    assert (oldest.kind, oldest.state, oldest.age_s) == ("mint", "batched", 400.0)  # done rows do not count
    assert (report.in_flight, report.chain_txs) == (1, {"broadcast": 1})
    assert report.oldest_in_flight is not None
    assert (report.oldest_in_flight.purpose, report.oldest_in_flight.nonce, report.oldest_in_flight.age_s) == (
        "mint",
        11,
        60.0,
    )
    (indexer,) = report.indexers
    assert (indexer.cursor, indexer.head, indexer.lag) == (95, 100, 5)
    assert report.last_epoch is not None
    assert report.last_settled_epoch is not None
    assert (report.last_epoch.id, report.last_epoch.state, report.last_settled_epoch.id) == (2, "open", 1)
    solvency = report.solvency
    assert (solvency.reserve, solvency.committed_epoch, solvency.committed_total, solvency.solvent_on_chain) == (
        1_000,
        7,
        900,
        True,
    )

    assert report.ok
    assert report.exit_code == EXIT_OK
    assert report.warnings == [f"the recorded pauser {DEV[4]} no longer holds the pauser role"]

    out = dump(report)
    assert out["ok"] is True
    assert out["exit_code"] == 0
    assert out["problems"] == []
    for value in (
        out["generated_at"],
        out["worker"]["signers"][0]["lease_expires_at"],
        out["worker"]["signers"][0]["heartbeat_at"],
        out["outbox_oldest_open"]["created_at"],
        out["oldest_in_flight"]["created_at"],
        out["last_settled_epoch"]["settled_at"],
    ):
        assert ISO.match(value), value
    assert out["generated_at"] == "2026-11-26T12:00:00+00:00"


def test_lag_uses_a_head_read_after_the_snapshot_and_is_never_negative(db: tuple[str, UnitOfWorkFactory]) -> None:
    _, uow = db
    add(uow, IndexerState(vault=VAULT, chain_id=31337, start_block=10, cursor_block=120, range_size=2000))
    order: list[str] = []

    class Recording(UnitOfWorkFactory):
        def read(self) -> Any:
            order.append("snapshot")
            return uow.read()

    def head() -> int:
        order.append("head")
        return 118  # a node (or a load-balanced replica) a little behind the indexer's

    report = StatusService(Recording(uow._writer, uow._reader), head=head, clock=lambda: NOW).report()
    assert order == ["snapshot", "head"]
    (indexer,) = report.indexers
    assert (indexer.cursor, indexer.head, indexer.lag) == (120, 118, 0)


def test_an_open_alarm_or_an_insolvent_vault_exits_2(db: tuple[str, UnitOfWorkFactory]) -> None:
    _, uow = db
    assert service(uow, FakeVault()).report().exit_code == EXIT_OK

    insolvent = service(uow, FakeVault(reserve_units=800, is_solvent=False)).report()
    assert not insolvent.ok
    assert insolvent.exit_code == EXIT_ATTENTION
    assert [p.kind for p in insolvent.problems] == ["insolvent"]
    assert "reserve 800 below the committed liabilities 900 (epoch 7)" in insolvent.problems[0].detail

    no_commitment = FakeVault(commitment=Commitment(0, 0, 0), is_solvent=False)  # nothing committed yet
    assert service(uow, no_commitment).report().solvency.solvent_on_chain is None
    assert service(uow, no_commitment).report().ok

    add(uow, Alarm(kind="deep_reorg", scope=VAULT, detail="deposit 0xab:0 reorganised", raised_at=NOW))
    alarmed = service(uow, FakeVault()).report()
    assert alarmed.exit_code == EXIT_ATTENTION
    assert dump(alarmed)["problems"] == [{"kind": "alarm", "detail": f"alarm #1 deep_reorg [{VAULT}] is open"}]


def test_node_down_is_degraded_exit_3_and_the_database_side_is_still_reported(
    db: tuple[str, UnitOfWorkFactory],
) -> None:
    _, uow = db
    populate(uow)
    vault = FakeVault()
    connects: list[int] = []

    def down() -> int:
        raise ConnectionRefusedError("connection refused")

    def connect() -> FakeVault:
        connects.append(1)
        return vault

    report = service(uow, None, chain_id=down, head=down, connect=connect).report()
    assert connects == []  # the vault is not built (and no read waits) once the node did not answer
    assert report.chain is not None
    assert (report.chain.reachable, report.chain.chain_id, report.chain.head_block) == (False, None, None)
    assert report.chain.error == "connection refused"
    assert report.exit_code == EXIT_CHAIN_UNAVAILABLE
    assert [p.kind for p in report.problems] == ["chain"]
    assert report.contracts is not None
    assert report.contracts.vault is None
    assert report.solvency.reserve is None
    assert report.solvency.error is not None
    assert report.in_flight == 1
    assert report.indexers[0].lag == 1  # from the head the indexer stored (96 - 95)
    assert report.worker is not None
    assert report.worker.signers[0].bridge_role is None

    add(uow, Alarm(kind="deep_reorg", scope=VAULT, detail="x", raised_at=NOW))
    assert service(uow, None, chain_id=down, head=down).report().exit_code == EXIT_ATTENTION  # an alarm wins


def test_wrong_chain_id_is_a_chain_problem(db: tuple[str, UnitOfWorkFactory]) -> None:
    _, uow = db
    report = service(uow, FakeVault(), chain_id=lambda: 8453).report()
    assert report.exit_code == EXIT_CHAIN_UNAVAILABLE
    assert report.problems[0].detail == "the node is on chain 8453, configured chain 31337"


def test_an_expired_lease_is_not_live(db: tuple[str, UnitOfWorkFactory]) -> None:
    _, uow = db
    add(
        uow,
        Signer(
            address=SIGNER,
            next_nonce=3,
            lease_holder="host:7:dead",
            lease_expires_at=NOW - timedelta(seconds=40),
            lease_token=1,
            updated_at=NOW - timedelta(seconds=70),
        ),
    )
    report = service(uow, FakeVault()).report()
    assert report.worker is not None
    (signer,) = report.worker.signers
    assert (signer.live, signer.lease_expires_in_s, signer.heartbeat_age_s) == (False, -40.0, 70.0)
    assert not report.worker.live
    assert "no worker holds a signer lease (worker stopped or never started)" in report.warnings
    assert f"signer {SIGNER} does not hold the bridge role" in report.warnings
    assert report.ok  # a stopped worker is a warning, not a failure of `ok`


# --- the CLI -------------------------------------------------------------------------------------


def cli_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for key in list(os.environ):
        if key.startswith("TOKENBRIDGE_"):
            monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(f"TOKENBRIDGE_{key}", value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.chain
def test_status_cli_on_a_dev_deployment_and_pause_dev(
    chain_snapshot: Anvil, db: tuple[str, UnitOfWorkFactory], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    anvil = chain_snapshot
    url, _ = db
    deployments = tmp_path / "deployments"
    deploy = CliRunner().invoke(
        app,
        [
            *("deploy", "--dev", "--rpc-url", anvil.rpc_url, "--deployments-dir", str(deployments)),
            *("--admin", DEV[3], "--bridge", DEV[4], "--pauser", DEV[5]),
        ],
    )
    assert deploy.exit_code == 0, deploy.output
    record = json.loads((deployments / f"{anvil.chain_id}.json").read_text())
    cli_env(
        monkeypatch,
        DATABASE_URL=url,
        RPC_URL=anvil.rpc_url,
        CHAIN_ID=str(anvil.chain_id),
        DEPLOYMENTS_DIR=str(deployments),
        BRIDGE_PRIVATE_KEY=DEV_PRIVATE_KEYS[4],  # the worker's: `pause` must not use it
    )

    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["ok"] is True
    chain = status["chain"]
    assert (chain["reachable"], chain["chain_id"], chain["error"]) == (True, anvil.chain_id, None)
    assert chain["head_block"] >= record["deploy_block"]
    contracts = status["contracts"]
    assert (contracts["vault"], contracts["coin"]) == (record["vault"], record["coin"])
    assert (contracts["vault_paused"], contracts["coin_paused"]) == (False, False)
    assert {r["role"]: (r["address"], r["holds"]) for r in contracts["roles"]} == {
        "admin": (DEV[3], True),
        "bridge": (DEV[4], True),
        "pauser": (DEV[5], True),
    }
    assert status["solvency"]["reserve"] == 0
    assert status["worker"] == {"live": False, "signers": []}

    paused = CliRunner().invoke(app, ["pause", "--dev", "--json"])  # picks DEV[5], the pauser
    assert paused.exit_code == 0, paused.output
    assert json.loads(paused.stdout)["paused"] is True

    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output  # paused is a warning, not a failure
    status = json.loads(result.stdout)
    assert status["contracts"]["vault_paused"] is True
    assert "the vault is paused: mint, settle, payout, deposit and burn revert" in status["warnings"]
    human = CliRunner().invoke(app, ["status"])
    assert human.exit_code == 0, human.output
    assert f"chain: {anvil.chain_id} at {anvil.rpc_url}, head block" in human.stdout
    assert f"vault {record['vault']}: PAUSED" in human.stdout
    assert "status: OK" in human.stdout


def test_status_with_the_node_down_through_the_real_entry_point(db: tuple[str, UnitOfWorkFactory]) -> None:
    url, uow = db
    populate(uow)
    rpc = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBRIDGE_")}
    env.update(TOKENBRIDGE_DATABASE_URL=url, TOKENBRIDGE_RPC_URL=rpc, TOKENBRIDGE_VAULT_ADDRESS=VAULT)
    started = time.monotonic()
    out = subprocess.run(
        [TOKENBRIDGE, "status", "--json"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert out.returncode == EXIT_CHAIN_UNAVAILABLE, out.stdout + out.stderr
    assert time.monotonic() - started < 30  # no retry loops against a closed port
    status = json.loads(out.stdout)
    assert status["ok"] is False
    assert status["chain"] == {
        "rpc_url": rpc,
        "reachable": False,
        "chain_id": None,
        "expected_chain_id": 31337,
        "head_block": None,
        "error": "connection refused",
    }
    assert status["problems"] == [{"kind": "chain", "detail": f"chain unreachable at {rpc}: connection refused"}]
    assert status["in_flight"] == 1
    assert status["outbox"]["mint"]["pending"] == 1
    assert status["worker"]["signers"][0]["lease_holder"] == "host:42:abcd"
    assert status["solvency"]["reserve"] is None
    assert "Traceback" not in out.stderr

    human = subprocess.run([TOKENBRIDGE, "status"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert human.returncode == EXIT_CHAIN_UNAVAILABLE
    assert f"chain: UNREACHABLE at {rpc}: connection refused" in human.stdout
    assert "status: NOT OK (exit 3)" in human.stdout


# --- --json of the database commands ---------------------------------------------------------------


def test_alarms_list_and_clear_json(db: tuple[str, UnitOfWorkFactory], monkeypatch: pytest.MonkeyPatch) -> None:
    url, uow = db
    add(uow, Alarm(kind="deposit_unpostable", scope="ab" * 32, detail="amount too large", raised_at=NOW))
    cli_env(monkeypatch, DATABASE_URL=url, RPC_URL=f"http://127.0.0.1:{free_port()}")

    listed = CliRunner().invoke(app, ["alarms", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    parsed = json.loads(listed.stdout)
    assert parsed == {
        "ok": True,
        "alarms": [
            {
                "id": 1,
                "kind": "deposit_unpostable",
                "scope": "ab" * 32,
                "detail": "amount too large",
                "raised_at": "2026-11-26T12:00:00+00:00",
            }
        ],
    }
    status = CliRunner().invoke(app, ["status", "--json"])
    assert status.exit_code == EXIT_ATTENTION  # the alarm, even with the node down

    cleared = CliRunner().invoke(app, ["alarms", "clear", "1", "--json"])
    assert cleared.exit_code == 0, cleared.output
    done = json.loads(cleared.stdout)
    assert (done["ok"], done["id"]) == (True, 1)
    assert ISO.match(done["cleared_at"])
    assert json.loads(CliRunner().invoke(app, ["alarms", "list", "--json"]).stdout) == {"ok": True, "alarms": []}

    again = CliRunner().invoke(app, ["alarms", "clear", "1", "--json"])
    assert again.exit_code != 0
    assert json.loads(again.stdout) == {"ok": False, "error": "no open alarm #1", "id": 1}


def test_db_and_apikey_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.sqlite3'}"
    invoke: Callable[..., Any] = CliRunner().invoke

    head = migrate.head_revision(url)
    upgraded = invoke(app, ["db", "upgrade", "--url", url, "--json"])
    assert upgraded.exit_code == 0, upgraded.output
    assert json.loads(upgraded.stdout) == {"ok": True, "current": head, "head": head, "at_head": True}
    current = invoke(app, ["db", "current", "--url", url, "--json"])
    assert current.exit_code == 0, current.output
    assert json.loads(current.stdout) == {"ok": True, "current": head, "head": head, "at_head": True}

    made = invoke(app, ["apikey", "create", "--scope", "admin", "--url", url, "--json"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)
    assert set(key) == {"ok", "id", "scope", "account_id", "created_at", "revoked", "key"}
    assert (key["ok"], key["scope"], key["account_id"], key["revoked"]) == (True, "admin", None, False)
    assert key["key"].startswith("tb_")
    assert ISO.match(key["created_at"])

    listed = invoke(app, ["apikey", "list", "--url", url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert key["key"] not in listed.stdout  # shown once, at creation
    (row,) = json.loads(listed.stdout)["keys"]
    assert (row["id"], row["revoked"]) == (key["id"], False)

    revoked = invoke(app, ["apikey", "revoke", key["id"], "--url", url, "--json"])
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.stdout)["revoked"] is True

    bad = invoke(app, ["apikey", "create", "--scope", "root", "--url", url, "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout) == {"ok": False, "error": "--scope must be app or admin, got 'root'"}
    missing = invoke(app, ["apikey", "revoke", "nope", "--url", url, "--json"])
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["ok"] is False


def test_status_without_a_migrated_database_is_one_line_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenbridge.domain.errors import ConfigurationError

    cli_env(monkeypatch, DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}", RPC_URL="http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigurationError)  # `main()` prints it as one `error:` line
    assert result.exception.detail == "cannot read the database: no such table: outbox (run `tokenbridge db upgrade`)"
