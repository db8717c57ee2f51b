"""`tokenbridge demo` end to end: the real command as a subprocess (anvil, SQLite, API and worker
in-process), its report, its exit status, and that it leaves no anvil behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.chain

CLI = str(Path(sys.executable).with_name("tokenbridge"))
SMALL = ("--users", "10", "--creators", "3")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBRIDGE_")}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "220"
    return env


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "demo", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,  # no .env of the checkout
        timeout=240,
        check=False,
    )


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("│").split("│")]


def _rows(text: str, prefix: str) -> list[list[str]]:
    return [_cells(line) for line in text.splitlines() if re.match(rf"^│ {prefix}", line)]


def _anvil_pid(tmp_path: Path) -> int:
    log = (tmp_path / "data" / "demo.log").read_text()
    found = re.search(r"anvil pid (\d+) at", log)
    assert found, "demo.log names the anvil it started"
    return int(found.group(1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


def test_demo_runs_the_whole_story_and_every_check_passes(tmp_path: Path) -> None:
    out = _demo(tmp_path, *SMALL)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-3000:]
    text = out.stdout
    assert "demo passed" in text
    assert "✗" not in text

    # every phase of the story ran
    for phase in (
        "recharges (signed webhooks)",
        "gifts (POST /v1/gifts + one batch)",
        "refund and chargeback",
        "wallet links, maturity, EIP-712 withdrawals",
        "deposit back with a permit",
        "final settlement and commitment",
        "verification from the chain",
        "reconcile ledger and chain",
    ):
        assert f"✓ {phase}" in text, phase

    # sampled receipts, each verified from the chain
    receipts = _rows(text, "gift-")
    assert len(receipts) == 8, receipts
    assert all(r[-1] == "✓" for r in receipts), receipts
    assert len({r[1] for r in receipts}) >= 2, "receipts from more than one epoch"

    # per creator: earned and paid on-chain equal the ledger, and something was paid
    creators = _rows(text, "creator-")
    assert len(creators) == 3, creators
    for _id, _gifts, _share, earned, ledger_earned, paid, ledger_paid, _wallet, mark in creators:
        assert earned == ledger_earned
        assert paid == ledger_paid
        assert mark == "✓"
        assert float(paid) >= 1.0

    # solvency: the vault holds exactly the committed liabilities, and solvent() says so
    solvency = {
        r[0]: r[1] for r in (_cells(line) for line in text.splitlines() if line.startswith("│ ")) if len(r) == 2
    }
    committed = next(v for k, v in solvency.items() if k.startswith("committed liabilities"))
    assert solvency["vault reserve (token balance)"] == committed
    assert solvency["solvent() on-chain"] == "✓"
    assert any(k.startswith("debt of user-") and float(v) > 0 for k, v in solvency.items())

    # the checks table: the reconcile, the tampered copies refused, the chargeback as debt
    for check in (
        "sampled gift receipts verify from the chain",
        "tampered receipt refused",
        "tampered balance proof refused",
        "withdrawal before maturity refused",
        "chargeback after spending becomes debt",
        "reconcile: ledger and chain agree",
        "per creator: earned and paid on-chain == the ledger",
        "reserve covers the committed liabilities (solvent)",
    ):
        row = next((line for line in text.splitlines() if check in line), None)
        assert row is not None, check
        assert "✓" in row, row

    # gas per kind of transaction, from the receipts
    for kind in ("settleGifts", "mintForRecharges", "commitLiabilities", "payout", "depositWithPermit",
                 "burnForRefunds"):  # fmt: skip
        assert re.search(rf"│ {kind} +│", text), kind

    assert not _alive(_anvil_pid(tmp_path)), "anvil still running after the demo"


def test_a_tampered_receipt_makes_the_demo_fail(tmp_path: Path) -> None:
    out = _demo(tmp_path, "--users", "4", "--creators", "2", "--sample-receipts", "3", "--tamper-receipt")
    assert out.returncode == 1, out.stdout[-5000:] + out.stderr[-3000:]
    receipts = _rows(out.stdout, "gift-")
    tampered = [r for r in receipts if "(tampered)" in r[0]]
    assert len(tampered) == 1, receipts
    assert tampered[0][-1].startswith("✗"), tampered
    assert "split" in tampered[0][-1], tampered
    assert all(r[-1] == "✓" for r in receipts if r not in tampered)
    assert "demo FAILED" in out.stdout
    assert "sampled gift receipts verify from the chain" in out.stdout.split("demo FAILED")[1]
    assert (tmp_path / "data" / "demo.log").exists()  # kept for the post-mortem
    assert not _alive(_anvil_pid(tmp_path)), "anvil still running after a failed demo"
