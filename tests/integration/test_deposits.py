"""Deposits: vault `Deposited` logs are credited to the ledger after `confirmations` blocks,
once per (tx hash, log index), with eth_getLogs ranges that adapt to the provider's limits.
Real anvil, real database (SQLite; PostgreSQL when TOKENBRIDGE_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, update
from web3 import Web3
from web3.types import RPCEndpoint, RPCResponse

from support_bridge import WALLETS, Bed, bridge_uow, deploy_bed, deposit_service
from support_ledger import LedgerHarness
from tokenbridge.adapters.chain.devnet import Anvil, start_anvil
from tokenbridge.adapters.chain.indexer import AdaptiveRange, DepositLog, Web3DepositSource
from tokenbridge.adapters.db.models import Transfer
from tokenbridge.adapters.db.models_deposits import Deposit, DepositStore, IndexedBlock, IndexerState
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.domain.errors import LogRangeTooLarge
from tokenbridge.services.deposits import ALARM_UNPOSTABLE, SUSPENSE

pytestmark = pytest.mark.chain

AMOUNT = 7_000_000


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    with start_anvil() as anvil:
        yield anvil


@pytest.fixture
def bed(node: Anvil) -> Bed:
    b = deploy_bed(node)
    b.fund(WALLETS[0], 100 * AMOUNT)
    return b


@pytest.fixture
def uow(db_url: str) -> Iterator[UnitOfWorkFactory]:
    with bridge_uow(db_url) as factory:
        yield factory


def coins(ledger: LedgerHarness, account_id: str) -> int:
    return ledger.services.accounts.get(account_id).balances.coins


def rows(uow: UnitOfWorkFactory, vault: str) -> list[Deposit]:
    with uow.read() as u:
        return list(u.session.scalars(select(Deposit).where(Deposit.vault == vault).order_by(Deposit.id)).all())


def test_deposit_is_credited_once_after_confirmations(bed: Bed, uow: UnitOfWorkFactory, ledger: LedgerHarness) -> None:
    user = ledger.uid("dep")
    view, _ = ledger.services.accounts.open(user, "user")
    deposits = deposit_service(uow, bed, confirmations=2)
    result = bed.deposit(WALLETS[0], view.account_key, AMOUNT)

    report = deposits.step()  # head == deposit block: seen, 0 confirmations
    assert (report.seen, report.credited) == (1, 0)
    assert coins(ledger, user) == 0
    bed.mine(1)
    assert deposits.step().credited == 0  # one block on top: still not enough
    assert coins(ledger, user) == 0
    bed.mine(1)
    report = deposits.step()
    assert (report.credited, report.credited_amount, report.to_suspense) == (1, AMOUNT, 0)
    assert coins(ledger, user) == AMOUNT

    bed.mine(3)
    for _ in range(3):
        assert deposits.step().credited == 0
    assert coins(ledger, user) == AMOUNT
    (row,) = rows(uow, bed.deployment.vault)
    assert (row.state, row.account_id, row.amount) == ("credited", user, AMOUNT)
    assert (row.tx_hash, row.block_number) == (result.tx_hash, result.block_number)
    with uow.read() as u:
        transfer = u.ledger.find_transfer(f"deposit:{result.tx_hash}:{row.log_index}")
        assert transfer is not None
        assert transfer.id == row.transfer_id
        balances = u.ledger.balances_from_legs()
    assert balances[f"user:{user}:coins"] == AMOUNT


def test_rereading_the_same_range_credits_nothing_new(bed: Bed, uow: UnitOfWorkFactory, ledger: LedgerHarness) -> None:
    user = ledger.uid("dep")
    view, _ = ledger.services.accounts.open(user, "user")
    deposits = deposit_service(uow, bed, confirmations=1)
    for i in range(3):
        bed.deposit(WALLETS[0], view.account_key, AMOUNT + i)
    bed.mine(1)
    assert deposits.step().credited == 3
    total = 3 * AMOUNT + 3
    assert coins(ledger, user) == total
    with uow.read() as u:
        transfers_before = u.session.scalar(select(func.count()).select_from(Transfer))

    # forget where the indexer was: it reads the whole range again from the deploy block
    vault = bed.deployment.vault
    with uow.write() as u:
        u.session.execute(update(IndexerState).where(IndexerState.vault == vault).values(cursor_block=None))
        u.session.execute(IndexedBlock.__table__.delete().where(IndexedBlock.vault == vault))
        u.commit()
    fresh = deposit_service(uow, bed, confirmations=1)  # and a new process, too
    report = fresh.step()
    assert report.chunks >= 1
    assert report.cursor == bed.head()
    assert (report.seen, report.credited) == (0, 0)
    assert coins(ledger, user) == total
    assert [r.state for r in rows(uow, vault)] == ["credited"] * 3
    with uow.read() as u:
        assert u.session.scalar(select(func.count()).select_from(Transfer)) == transfers_before


class LimitedProvider(Web3.HTTPProvider):
    """An HTTP provider that, like hosted nodes, refuses eth_getLogs spans above `limit` blocks."""

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(url)
        self.limit = limit
        self.accepted: list[int] = []
        self.refused: list[int] = []

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        if method == "eth_getLogs":
            spec = params[0]
            span = int(str(spec["toBlock"]), 16) - int(str(spec["fromBlock"]), 16) + 1
            if span > self.limit:
                self.refused.append(span)
                error = {"code": -32005, "message": f"query exceeds max block range {self.limit}"}
                return {"jsonrpc": "2.0", "id": 1, "error": error}  # type: ignore[typeddict-item]
            self.accepted.append(span)
        return super().make_request(method, params)


def test_range_halves_on_refusal_and_every_deposit_is_still_read(
    bed: Bed, uow: UnitOfWorkFactory, ledger: LedgerHarness
) -> None:
    user = ledger.uid("dep")
    view, _ = ledger.services.accounts.open(user, "user")
    for i in range(4):
        bed.deposit(WALLETS[0], view.account_key, AMOUNT + i)
        bed.mine(5)  # spread the deposits over ~30 blocks
    provider = LimitedProvider(bed.anvil.rpc_url, limit=3)
    source = Web3DepositSource(Web3(provider), bed.deployment.vault)
    deposits = deposit_service(uow, bed, confirmations=1, source=source, max_range=64, max_chunks_per_step=1000)

    report = deposits.step()
    assert report.cursor == bed.head()
    assert report.credited == 4
    assert coins(ledger, user) == 4 * AMOUNT + 6
    assert provider.refused, "the provider never refused a range"
    assert max(provider.accepted) <= 3
    assert provider.refused[0] > 3  # it started wide (the whole span, up to 64)
    assert provider.accepted.count(2) + provider.accepted.count(3) > 1  # grew back after successes


def test_a_node_refusing_even_one_block_is_an_error_not_a_skip(bed: Bed, uow: UnitOfWorkFactory) -> None:
    source = Web3DepositSource(Web3(LimitedProvider(bed.anvil.rpc_url, limit=0)), bed.deployment.vault)
    deposits = deposit_service(uow, bed, confirmations=1, source=source, max_range=8)
    with pytest.raises(LogRangeTooLarge):
        deposits.step()
    with uow.read() as u:
        state = u.session.get(IndexerState, bed.deployment.vault)
    assert state is not None
    assert state.cursor_block is None  # nothing skipped


def test_adaptive_range_bounds() -> None:
    span = AdaptiveRange(10)
    assert span.size == 10
    assert span.shrink()
    assert span.size == 5
    assert span.shrink()
    assert span.shrink()
    assert span.size == 1
    assert not span.shrink()
    span.grow()
    span.grow()
    assert span.size == 4
    for _ in range(10):
        span.grow()
    assert span.size == 10


def test_unknown_key_and_creator_key_go_to_suspense(bed: Bed, uow: UnitOfWorkFactory, ledger: LedgerHarness) -> None:
    creator = ledger.uid("cre")
    creator_view, _ = ledger.services.accounts.open(creator, "creator")
    deposits = deposit_service(uow, bed, confirmations=0)
    with uow.read() as u:
        before = u.ledger.balances_from_legs().get(SUSPENSE, 0)
    unknown = "0x" + "ab" * 32
    bed.deposit(WALLETS[0], unknown, AMOUNT)
    bed.deposit(WALLETS[0], creator_view.account_key, 11)
    report = deposits.step()
    assert (report.credited, report.to_suspense) == (2, 2)
    assert ledger.services.ledger is not None
    ledger.services.ledger.fold()  # the worker folds periodically: suspense legs must survive it
    with uow.read() as u:
        assert u.ledger.balances_from_legs()[SUSPENSE] == before + AMOUNT + 11
        assert u.ledger.unbalanced_transfers() == []
    totals = ledger.services.ledger.totals()
    assert (totals.unbalanced_transfers, totals.cache_mismatches) == ((), ())
    states = {(r.account_key, r.state, r.ledger_account, r.account_id) for r in rows(uow, bed.deployment.vault)}
    assert states == {
        (unknown, "credited", SUSPENSE, None),
        (creator_view.account_key, "credited", SUSPENSE, None),
    }
    assert ledger.services.accounts.get(creator).balances.coins == 0


class InflatingSource(Web3DepositSource):
    """The real node, except that a log of `marker` units reads as 2**63 units: no vault lets a
    wallet hold that much (settlements are capped far below), yet the indexer must not trust it."""

    def __init__(self, w3: Web3, vault: str, marker: int) -> None:
        super().__init__(w3, vault)
        self.marker = marker

    def deposit_logs(self, from_block: int, to_block: int) -> list[DepositLog]:
        return [
            d._replace(amount=2**63) if d.amount == self.marker else d
            for d in super().deposit_logs(from_block, to_block)
        ]


def test_deposit_too_large_for_the_ledger_raises_an_alarm_and_is_not_posted(
    bed: Bed, uow: UnitOfWorkFactory, ledger: LedgerHarness
) -> None:
    user = ledger.uid("dep")
    view, _ = ledger.services.accounts.open(user, "user")
    hooked: list[str] = []
    source = InflatingSource(bed.w3, bed.deployment.vault, marker=13)
    deposits = deposit_service(
        uow, bed, confirmations=0, source=source, on_alarm=lambda kind, _s, _d: hooked.append(kind)
    )
    too_big = bed.deposit(WALLETS[0], view.account_key, 13)
    bed.deposit(WALLETS[0], view.account_key, AMOUNT)
    report = deposits.step()
    assert (report.seen, report.credited) == (1, 1)  # the postable one still goes through
    assert coins(ledger, user) == AMOUNT
    assert hooked == [ALARM_UNPOSTABLE]
    with uow.read() as u:
        alarms = DepositStore(u.session).open_alarms(too_big.tx_hash.removeprefix("0x"), ALARM_UNPOSTABLE)
    assert len(alarms) == 1
    assert str(2**63) in alarms[0].detail
    assert [r.amount for r in rows(uow, bed.deployment.vault)] == [AMOUNT]
    with uow.write() as u:  # read the range again (as after a rewind): still one alarm, nothing posted
        u.session.execute(
            update(IndexerState).where(IndexerState.vault == bed.deployment.vault).values(cursor_block=None)
        )
        u.commit()
    assert deposits.step().cursor == bed.head()
    assert hooked == [ALARM_UNPOSTABLE]
    assert coins(ledger, user) == AMOUNT
