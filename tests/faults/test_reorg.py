"""Reorganisations under the deposits indexer, played with anvil's `anvil_reorg`.

Within the confirmation depth nothing credited changes and the replacement deposit is
credited once; deeper than it, the indexer raises an alarm (row, hook for the metric),
stops crediting and `tokenbridge status` exits non-zero."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from support_bridge import WALLETS, Bed, bridge_uow, deploy_bed, deposit_service
from support_ledger import LedgerHarness
from tokenbridge.adapters.chain.devnet import Anvil, start_anvil
from tokenbridge.adapters.db.models_deposits import Alarm, Deposit
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.entrypoints.cli import app
from tokenbridge.services.deposits import ALARM_DEEP_REORG

pytestmark = pytest.mark.chain

AMOUNT = 3_000_000


@pytest.fixture(scope="module")
def reorg_anvil() -> Iterator[Anvil]:
    """A node of its own: reorganisations must not disturb the nodes other tests share."""
    with start_anvil() as node:
        yield node


@pytest.fixture
def bed(reorg_anvil: Anvil) -> Bed:
    b = deploy_bed(reorg_anvil)
    b.fund(WALLETS[1], 100 * AMOUNT)
    return b


@pytest.fixture
def uow(db_url: str) -> Iterator[UnitOfWorkFactory]:
    with bridge_uow(db_url) as factory:
        yield factory


def deposit_txs(bed: Bed, wallet: Any, key: str, amount: int) -> list[list[Any]]:
    """approve + deposit as anvil_reorg transaction requests, both in the first new block."""
    coin = bed.vault.coin
    approve = coin.encode_abi("approve", args=[bed.vault.address, amount])
    deposit = bed.vault.encode_call("deposit", bytes.fromhex(key[2:]), amount)
    common = {"from": wallet.address, "gas": hex(200_000)}
    return [
        [{**common, "to": coin.address, "data": approve}, 0],
        [{**common, "to": bed.vault.address, "data": deposit}, 0],
    ]


def deposit_rows(uow: UnitOfWorkFactory, vault: str) -> dict[str, Deposit]:
    with uow.read() as u:
        return {r.tx_hash: r for r in u.session.scalars(select(Deposit).where(Deposit.vault == vault)).all()}


def test_reorg_within_confirmations_changes_nothing_credited(
    bed: Bed, uow: UnitOfWorkFactory, ledger: LedgerHarness
) -> None:
    user = ledger.uid("reorg")
    view, _ = ledger.services.accounts.open(user, "user")
    deposits = deposit_service(uow, bed, confirmations=3)
    first = bed.deposit(WALLETS[1], view.account_key, AMOUNT)
    bed.mine(3)
    assert deposits.step().credited == 1
    credited_before = deposit_rows(uow, bed.deployment.vault)[first.tx_hash]

    doomed = bed.deposit(WALLETS[1], view.account_key, 5)  # seen, never confirmed
    bed.mine(1)
    assert deposits.step().seen == 1
    assert bed.head() - doomed.block_number < 3
    # replace the last 3 blocks (the doomed deposit's among them; the credited one is deeper)
    bed.anvil.rpc("anvil_reorg", 3, deposit_txs(bed, WALLETS[1], view.account_key, 7))

    report = deposits.step()
    assert report.orphaned == 1
    assert report.rewound_to is not None
    assert report.rewound_to < doomed.block_number
    assert report.credited == 0  # the replacement is not deep enough yet
    assert ledger.services.accounts.get(user).balances.coins == AMOUNT
    bed.mine(3)
    assert deposits.step().credited == 1
    bed.mine(2)
    assert deposits.step().credited == 0

    rows = deposit_rows(uow, bed.deployment.vault)
    assert rows[doomed.tx_hash].state == "orphaned"
    replacement = [r for h, r in rows.items() if h not in (first.tx_hash, doomed.tx_hash)]
    assert [(r.state, r.amount) for r in replacement] == [("credited", 7)]
    again = rows[first.tx_hash]
    assert (again.state, again.transfer_id, again.block_hash) == (
        "credited",
        credited_before.transfer_id,
        credited_before.block_hash,
    )
    assert ledger.services.accounts.get(user).balances.coins == AMOUNT + 7
    with uow.read() as u:
        assert not u.session.scalars(select(Alarm).where(Alarm.scope == bed.deployment.vault)).all()


def test_reorg_deeper_than_confirmations_raises_alarm_and_stops(
    bed: Bed, uow: UnitOfWorkFactory, ledger: LedgerHarness, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = ledger.uid("deep")
    view, _ = ledger.services.accounts.open(user, "user")
    hooked: list[tuple[str, str]] = []
    deposits = deposit_service(uow, bed, confirmations=1, on_alarm=lambda kind, scope, _d: hooked.append((kind, scope)))
    first = bed.deposit(WALLETS[1], view.account_key, AMOUNT)
    bed.mine(1)
    assert deposits.step().credited == 1

    bed.anvil.rpc("anvil_reorg", 3, deposit_txs(bed, WALLETS[1], view.account_key, 9))  # the credited block too
    report = deposits.step()
    assert report.halted
    assert any(first.tx_hash in a for a in report.alarms)
    assert hooked == [(ALARM_DEEP_REORG, bed.deployment.vault)]
    with uow.read() as u:
        alarms = u.session.scalars(select(Alarm).where(Alarm.scope == bed.deployment.vault)).all()
    assert [(a.kind, a.cleared_at) for a in alarms] == [(ALARM_DEEP_REORG, None)]

    # nothing is undone and nothing more is credited
    bed.deposit(WALLETS[1], view.account_key, 11)
    bed.mine(3)
    for _ in range(2):
        again = deposits.step()
        assert again.halted
        assert (again.credited, again.seen) == (0, 0)
    assert ledger.services.accounts.get(user).balances.coins == AMOUNT
    assert deposit_rows(uow, bed.deployment.vault)[first.tx_hash].state == "credited"
    assert hooked == [(ALARM_DEEP_REORG, bed.deployment.vault)]  # raised once, not every step

    monkeypatch.setenv("TOKENBRIDGE_DATABASE_URL", db_url)
    monkeypatch.setenv("TOKENBRIDGE_RPC_URL", bed.anvil.rpc_url)
    monkeypatch.setenv("TOKENBRIDGE_VAULT_ADDRESS", bed.deployment.vault)
    monkeypatch.chdir(os.path.dirname(__file__))
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 2, result.output
    status = json.loads(result.stdout)
    assert status["ok"] is False
    assert ALARM_DEEP_REORG in {a["kind"] for a in status["alarms"]}
