"""`tokenbridge worker` as a real process: it takes the signer lease, credits a deposit through
its loop, exits 0 on SIGTERM and releases the lease; a second worker with the same key waits
while the first holds the lease and takes over when it is released. Also `status` on a clean
database exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from support_bridge import BRIDGE, WALLETS, Bed, deploy_bed
from support_ledger import LedgerHarness
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil, start_anvil
from tokenbridge.adapters.db import migrate
from tokenbridge.domain.errors import ChainError
from tokenbridge.entrypoints.cli import app
from tokenbridge.entrypoints.worker import Step, Worker

pytestmark = pytest.mark.chain

T = TypeVar("T")
TOKENBRIDGE = str(Path(sys.executable).with_name("tokenbridge"))


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    anvil = start_anvil()
    try:
        yield anvil
    finally:
        anvil.stop()


@pytest.fixture
def bed(node: Anvil) -> Bed:
    b = deploy_bed(node)
    b.fund(WALLETS[3], 10**8)
    return b


@pytest.fixture
def env(bed: Bed, tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'worker.sqlite3'}"
    migrate.upgrade(url)
    out = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBRIDGE_")}
    out.update(
        {
            "TOKENBRIDGE_DATABASE_URL": url,
            "TOKENBRIDGE_RPC_URL": bed.anvil.rpc_url,
            "TOKENBRIDGE_CHAIN_ID": "31337",
            "TOKENBRIDGE_VAULT_ADDRESS": bed.deployment.vault,
            "TOKENBRIDGE_DEPOSIT_START_BLOCK": str(bed.deployment.deploy_block),
            "TOKENBRIDGE_DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
            "TOKENBRIDGE_BRIDGE_PRIVATE_KEY": DEV_PRIVATE_KEYS[2],
            "TOKENBRIDGE_CONFIRMATIONS": "1",
            "TOKENBRIDGE_WORKER_POLL_SECONDS": "0.2",
            "TOKENBRIDGE_WORKER_LEASE_TTL_SECONDS": "60",  # far longer than the test: only a release hands over
        }
    )
    assert BRIDGE.key.hex().removeprefix("0x") == DEV_PRIVATE_KEYS[2].removeprefix("0x")
    return out


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen([TOKENBRIDGE, "worker"], env=env, cwd=log.parent, stdout=sink, stderr=subprocess.STDOUT)


def poll(what: str, probe: Callable[[], T | None], timeout: float = 45.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def lease_holder(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT lease_holder FROM signers WHERE address = :a"), {"a": BRIDGE.address}
            ).first()
    finally:
        engine.dispose()
    return None if row is None else row[0]


def holder_pid(url: str) -> int | None:
    holder = lease_holder(url)
    return None if holder is None else int(holder.split(":")[-2])


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_worker_runs_the_loop_and_stops_cleanly_on_sigterm(bed: Bed, env: dict[str, str], tmp_path: Path) -> None:
    url = env["TOKENBRIDGE_DATABASE_URL"]
    ledger = LedgerHarness(url)
    try:
        user = ledger.uid("w")
        view, _ = ledger.services.accounts.open(user, "user")
        worker = start(env, tmp_path / "worker.log")
        try:
            assert poll("the lease", lambda: holder_pid(url)) == worker.pid
            bed.deposit(WALLETS[3], view.account_key, 2_500_000)
            bed.mine(2)
            poll("the deposit credited by the worker", lambda: ledger.services.accounts.get(user).balances.coins)
            assert ledger.services.accounts.get(user).balances.coins == 2_500_000
            live = subprocess.run(
                [TOKENBRIDGE, "status", "--json"], env=env, capture_output=True, text=True, timeout=60, check=False
            )
            assert live.returncode == 0, live.stdout + live.stderr
            worker_view = json.loads(live.stdout)["worker"]
            assert worker_view["live"] is True
            (signer,) = worker_view["signers"]
            assert signer["address"] == BRIDGE.address
            assert int(signer["lease_holder"].split(":")[-2]) == worker.pid
            assert signer["bridge_role"] is True
            assert 0 <= signer["heartbeat_age_s"] < 60  # renewed every round (0.2 s); TTL 60 s
            assert 0 < signer["lease_expires_in_s"] <= 60
        finally:
            code = stop(worker)
        output = (tmp_path / "worker.log").read_text()
        assert code == 0, output
        assert lease_holder(url) is None
        assert "stopped" in output
        assert DEV_PRIVATE_KEYS[2].removeprefix("0x") not in output  # the key is never logged
    finally:
        ledger.close()


def test_second_worker_with_the_same_key_waits_for_the_lease(bed: Bed, env: dict[str, str], tmp_path: Path) -> None:
    url = env["TOKENBRIDGE_DATABASE_URL"]
    first = start(env, tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        assert poll("the first lease", lambda: holder_pid(url)) == first.pid
        second = start(env, tmp_path / "second.log")
        poll("the second worker to report waiting", lambda: "waiting" in (tmp_path / "second.log").read_text())
        for _ in range(5):  # several of its polls: it keeps waiting, the first keeps leading
            time.sleep(0.2)
            assert second.poll() is None
            assert holder_pid(url) == first.pid

        assert stop(first) == 0
        assert poll("the hand-over", lambda: holder_pid(url) == second.pid)
        assert stop(second) == 0
        assert lease_holder(url) is None
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_status_exits_zero_without_alarms(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        if key.startswith("TOKENBRIDGE_"):
            monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["ok"] is True
    assert (status["exit_code"], status["problems"]) == (0, [])
    assert status["alarms"] == []
    assert status["solvency"]["reserve"] == 0
    assert status["chain"]["reachable"] is True
    assert status["chain"]["chain_id"] == 31337
    assert status["contracts"]["vault"] == env["TOKENBRIDGE_VAULT_ADDRESS"]
    assert status["contracts"]["vault_paused"] is False
    assert status["worker"] == {"live": False, "signers": []}  # no worker has run against this database
    assert "no worker holds a signer lease (worker stopped or never started)" in status["warnings"]
    human = CliRunner().invoke(app, ["status"])
    assert human.exit_code == 0
    assert "alarms: none" in human.stdout
    assert "status: OK" in human.stdout


class FakeLease:
    holder = "test:1:lease"

    def __init__(self) -> None:
        self.acquired = 0
        self.released = 0

    def acquire(self) -> bool:
        self.acquired += 1
        return True

    def release(self) -> None:
        self.released += 1


def test_loop_survives_failing_steps_and_backs_off() -> None:
    lease = FakeLease()
    calls: list[str] = []

    def flaky() -> None:
        calls.append("flaky")
        if calls.count("flaky") <= 2:
            raise ChainError("node unreachable: connection refused")

    def always_broken() -> None:
        calls.append("broken")
        raise OSError("connection reset")

    worker: Worker
    now = [0.0]  # simulated time: one millisecond per round, so backoff is deterministic

    def healthy() -> None:
        calls.append("healthy")
        now[0] += 0.001
        if calls.count("healthy") >= 40:
            worker.stop()

    worker = Worker(
        lease=lease,
        steps=[Step("flaky", flaky), Step("broken", always_broken), Step("healthy", healthy)],
        recover=lambda: calls.append("recover"),
        poll_s=0.001,
        max_backoff_s=0.004,
        clock=lambda: now[0],
    )
    assert worker.run() == 0
    assert calls[0] == "recover"
    assert calls.count("healthy") == 40  # the loop kept going through every failure
    assert calls.count("flaky") >= 3  # retried after its failures, then succeeded
    assert 8 <= calls.count("broken") <= 21  # backed off (>= 1.6 ms after a failure): every 2nd-5th round
    assert lease.released == 1
    steps = worker.metrics.registry.get_sample_value
    assert steps("tokenbridge_worker_steps_total", {"step": "flaky", "result": "error"}) == 2
    assert steps("tokenbridge_worker_steps_total", {"step": "healthy", "result": "ok"}) == 40
