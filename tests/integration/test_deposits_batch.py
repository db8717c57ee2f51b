"""The set-based deposit path (adapters/db/deposit_ledger.py): chunks of many logs stored and
credited in a few statements, on SQLite and PostgreSQL, against a scripted node (no anvil),
so every case is exact: duplicates, re-reads, unknown keys, many deposits to one account,
pages, a crash between `seen` and `credited`, rows that change under the credit pass, and
a balance that would overflow. Invariant 4 (one credit per tx hash + log index) and the
ledger's own consistency (legs balance, cached coins == legs) are checked after each."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from support_bridge import bridge_uow
from support_ledger import LedgerHarness, fresh_database
from tokenbridge.adapters.chain.indexer import DepositLog
from tokenbridge.adapters.db.deposit_ledger import DepositLedger
from tokenbridge.adapters.db.models import Account, Transfer, TransferLeg
from tokenbridge.adapters.db.models_deposits import Deposit, IndexerState
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.errors import InvalidInput
from tokenbridge.domain.money import MAX_AMOUNT_EXCLUSIVE
from tokenbridge.services.deposits import SUSPENSE, DepositService, deposit_request_hash

START = 100


def block_hash(number: int, fork: str = "") -> str:
    return "0x" + hashlib.sha256(f"{fork}block{number}".encode()).hexdigest()


@dataclass
class ScriptedNode:
    """A `DepositSource` whose chain is a list of logs and a head; `forks` gives blocks another hash."""

    logs: list[DepositLog] = field(default_factory=list)
    head_block: int = START
    forks: dict[int, str] = field(default_factory=dict)
    duplicate_responses: bool = False

    def chain_id(self) -> int:
        return 31337

    def head(self) -> int:
        return self.head_block

    def block_hash(self, number: int) -> str | None:
        if number > self.head_block:
            return None
        return block_hash(number, self.forks.get(number, ""))

    def deposit_logs(self, from_block: int, to_block: int) -> list[DepositLog]:
        out = [d for d in self.logs if from_block <= d.block_number <= to_block]
        return out + out if self.duplicate_responses else out

    def deposit(self, key: str, amount: int, block: int | None = None) -> DepositLog:
        number = self.head_block if block is None else block
        index = sum(1 for d in self.logs if d.block_number == number)
        entry = DepositLog(
            tx_hash="0x" + secrets.token_hex(32),
            log_index=index,
            block_number=number,
            block_hash=block_hash(number),
            account_key=key,
            sender="0x" + "11" * 20,
            amount=amount,
        )
        self.logs.append(entry)
        return entry

    def mine(self, blocks: int = 1) -> None:
        self.head_block += blocks


@pytest.fixture
def uow(db_url: str) -> Iterator[UnitOfWorkFactory]:
    with bridge_uow(db_url) as factory:
        yield factory


def service(uow: UnitOfWorkFactory, node: ScriptedNode, vault: str, **kwargs: object) -> DepositService:
    confirmations = int(kwargs.pop("confirmations", 2))  # type: ignore[call-overload]
    return DepositService(
        uow,
        node,
        vault=vault,
        confirmations=confirmations,
        start_block=START,
        **kwargs,  # type: ignore[arg-type]
    )


def new_vault() -> str:
    return "0x" + secrets.token_hex(20)


def users(ledger: LedgerHarness, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        uid = ledger.uid("dep")
        view, _ = ledger.services.accounts.open(uid, "user")
        out.append((uid, view.account_key))
    return out


def coins(uow: UnitOfWorkFactory, account_id: str) -> int:
    with uow.read() as u:
        return int(u.session.scalar(select(Account.coins).where(Account.id == account_id)) or 0)


def rows(uow: UnitOfWorkFactory, vault: str) -> list[Deposit]:
    with uow.read() as u:
        return list(u.session.scalars(select(Deposit).where(Deposit.vault == vault).order_by(Deposit.id)).all())


def check_books(uow: UnitOfWorkFactory, vault: str, accounts: list[str]) -> None:
    """Invariant 4 and the ledger's consistency for what this vault's deposits wrote."""
    deposits = rows(uow, vault)
    keys = [(d.tx_hash, d.log_index) for d in deposits]
    assert len(keys) == len(set(keys))
    credited = [d for d in deposits if d.state == "credited"]
    callers = [f"deposit:{d.tx_hash}:{d.log_index}" for d in deposits]
    with uow.read() as u:
        transfers = u.session.execute(
            select(Transfer.id, Transfer.caller_id, Transfer.kind, Transfer.request_hash).where(
                Transfer.caller_id.in_(callers)
            )
        ).all()
        assert all(d.transfer_id is not None for d in credited)
        by_id = {int(d.transfer_id or 0): d for d in credited}
        assert sorted(t.id for t in transfers) == sorted(by_id)  # one each, no other
        for t in transfers:
            d = by_id[t.id]
            assert t.kind == "deposit"
            assert t.request_hash == lg.request_hash(
                {"tx_hash": d.tx_hash, "log_index": d.log_index, "account_key": d.account_key, "amount": d.amount}
            )
        legs = u.session.execute(
            select(
                TransferLeg.transfer_id, TransferLeg.account, TransferLeg.side, TransferLeg.amount, TransferLeg.folded
            )
            .where(TransferLeg.transfer_id.in_([t.id for t in transfers]))
            .order_by(TransferLeg.id)
        ).all()
        per: dict[int, list[tuple[str, str, int, bool]]] = {}
        for leg in legs:
            per.setdefault(leg.transfer_id, []).append((leg.account, leg.side, leg.amount, leg.folded))
        for tid, d in by_id.items():
            target = d.ledger_account
            assert target == (lg.coins(d.account_id) if d.account_id is not None else SUSPENSE)
            assert sorted(per[tid]) == sorted(
                [(lg.EXTERNAL_CHAIN, "debit", d.amount, False), (target, "credit", d.amount, d.account_id is not None)]
            )
        balances = u.ledger.balances_from_legs()
        for account_id in accounts:
            assert coins(uow, account_id) == balances.get(lg.coins(account_id), 0)


def test_request_hash_is_the_canonical_one() -> None:
    tx, key = "0x" + "ab" * 32, "0x" + "0c" * 32
    body: dict[str, object] = {"tx_hash": tx, "log_index": 7, "account_key": key, "amount": 123}
    assert deposit_request_hash(tx, 7, key, 123) == lg.request_hash(body)
    odd = 'x"\\é'
    body = {"tx_hash": odd, "log_index": 0, "account_key": key, "amount": 1}
    assert deposit_request_hash(odd, 0, key, 1) == lg.request_hash(body)


@pytest.mark.parametrize("page_size", [3, 5_000])
def test_a_chunk_of_many_deposits_mixed_accounts_and_unknown_keys(
    uow: UnitOfWorkFactory, ledger: LedgerHarness, page_size: int
) -> None:
    """Caught up: everything already deep is credited in the chunk's transaction."""
    vault, node = new_vault(), ScriptedNode()
    (a, key_a), (b, key_b) = users(ledger, 2)
    creator = ledger.creator()
    creator_key = ledger.services.accounts.get(creator).account_key
    unknown = "0x" + "cd" * 32
    expected = {a: 0, b: 0}
    to_suspense = 0
    for i in range(23):  # one account many times, across pages and blocks
        node.deposit(key_a, 1_000 + i, block=START + i // 4)
        expected[a] += 1_000 + i
    for i in range(5):
        node.deposit(key_b.upper().replace("0X", "0x"), 7 + i, block=START + i)  # keys match case-insensitively
        expected[b] += 7 + i
    node.deposit(unknown, 50, block=START + 2)
    node.deposit(creator_key, 60, block=START + 3)  # a creator's key is not a user's: suspense
    to_suspense = 2
    node.head_block = START + 12
    svc = service(uow, node, vault, page_size=page_size)

    report = svc.step()
    assert (report.seen, report.credited, report.to_suspense) == (30, 30, to_suspense)
    assert report.credited_amount == sum(expected.values()) + 110
    assert (coins(uow, a), coins(uow, b)) == (expected[a], expected[b])
    assert {d.state for d in rows(uow, vault)} == {"credited"}
    suspense = [d for d in rows(uow, vault) if d.ledger_account == SUSPENSE]
    assert sorted(d.amount for d in suspense) == [50, 60]
    assert ledger.services.accounts.get(creator).balances.coins == 0
    check_books(uow, vault, [a, b])

    again = svc.step()  # nothing new
    assert (again.seen, again.credited) == (0, 0)
    check_books(uow, vault, [a, b])


@pytest.mark.parametrize("page_size", [2, 5_000])
def test_seen_first_then_credited_in_pages(uow: UnitOfWorkFactory, ledger: LedgerHarness, page_size: int) -> None:
    """Live: read at the head (0 confirmations), credited by the credit pass when deep enough."""
    vault, node = new_vault(), ScriptedNode()
    (a, key_a), (b, key_b) = users(ledger, 2)
    for i in range(9):
        node.deposit(key_a if i % 3 else key_b, 100 + i, block=START + i // 3)
    node.deposit("0x" + "ee" * 32, 5, block=START + 2)
    node.head_block = START + 2
    svc = service(uow, node, vault, page_size=page_size, confirmations=3)
    report = svc.step()
    assert (report.seen, report.credited) == (10, 0)
    node.mine(1)  # block START is 3 deep now
    report = svc.step()
    assert (report.seen, report.credited) == (0, 3)
    node.mine(5)
    report = svc.step()
    assert (report.seen, report.credited, report.to_suspense) == (0, 7, 1)
    assert coins(uow, a) == sum(100 + i for i in range(9) if i % 3)
    assert coins(uow, b) == sum(100 + i for i in range(9) if not i % 3)
    check_books(uow, vault, [a, b])


def test_duplicate_logs_in_one_response_are_credited_once(uow: UnitOfWorkFactory, ledger: LedgerHarness) -> None:
    vault, node = new_vault(), ScriptedNode(duplicate_responses=True)
    ((a, key_a),) = users(ledger, 1)
    for i in range(4):
        node.deposit(key_a, 10 + i, block=START + i)
    node.head_block = START + 8
    report = service(uow, node, vault).step()
    assert (report.seen, report.credited) == (4, 4)
    assert coins(uow, a) == 10 + 11 + 12 + 13
    check_books(uow, vault, [a])


def test_a_reread_chunk_mixing_old_and_new_logs(uow: UnitOfWorkFactory, ledger: LedgerHarness) -> None:
    """Forget the cursor: the range is read again with new logs among credited and seen ones."""
    vault, node = new_vault(), ScriptedNode()
    ((a, key_a),) = users(ledger, 1)
    for i in range(3):
        node.deposit(key_a, 100, block=START + i)
    node.head_block = START + 4
    svc = service(uow, node, vault)
    assert svc.step().credited == 3
    node.deposit(key_a, 7, block=START + 5)  # seen only (head 6: one confirmation)
    node.head_block = START + 6
    assert (svc.step().seen, coins(uow, a)) == (1, 300)
    for i in range(2):
        node.deposit(key_a, 1_000, block=START + 7 + i)
    node.head_block = START + 20
    with uow.write() as u:
        u.session.execute(update(IndexerState).where(IndexerState.vault == vault).values(cursor_block=None))
        u.commit()
    report = service(uow, node, vault).step()
    assert (report.seen, report.credited) == (2, 3)  # the 2 new ones, then they and the old `seen` one
    assert coins(uow, a) == 300 + 7 + 2_000
    check_books(uow, vault, [a])


class Crash(Exception):
    pass


def test_crash_between_seen_and_credited_credits_once_on_rerun(
    uow: UnitOfWorkFactory, ledger: LedgerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault, node = new_vault(), ScriptedNode()
    (a, key_a), (b, key_b) = users(ledger, 2)
    for i in range(6):
        node.deposit(key_a if i % 2 else key_b, 100 + i, block=START + i)
    node.head_block = START + 5
    assert service(uow, node, vault, page_size=4).step().seen == 6  # mostly not deep enough yet
    credited_before = {d.tx_hash for d in rows(uow, vault) if d.state == "credited"}
    node.mine(10)

    real_book = DepositLedger.book

    def dying_book(self: DepositLedger, *args: object, **kwargs: object) -> int:
        real_book(self, *args, **kwargs)  # type: ignore[arg-type]
        raise Crash("the worker died before COMMIT")

    monkeypatch.setattr(DepositLedger, "book", dying_book)
    with pytest.raises(Crash):
        service(uow, node, vault, page_size=4).step()
    assert {d.tx_hash for d in rows(uow, vault) if d.state == "credited"} == credited_before  # rolled back
    monkeypatch.setattr(DepositLedger, "book", real_book)

    report = service(uow, node, vault, page_size=4).step()  # a new process
    assert report.credited == 6 - len(credited_before)
    assert {d.state for d in rows(uow, vault)} == {"credited"}
    assert coins(uow, a) == 101 + 103 + 105
    assert coins(uow, b) == 100 + 102 + 104
    assert service(uow, node, vault).step().credited == 0
    check_books(uow, vault, [a, b])


def test_crash_inside_the_chunk_transaction_leaves_nothing_half_done(
    uow: UnitOfWorkFactory, ledger: LedgerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault, node = new_vault(), ScriptedNode()
    ((a, key_a),) = users(ledger, 1)
    for i in range(7):
        node.deposit(key_a, 10, block=START + i)
    node.head_block = START + 20
    with uow.read() as u:  # the statement that writes the rows on this database
        target = "store_new" if DepositLedger(u.session).set_based_store else "insert_seen"
    real = getattr(DepositLedger, target)

    def dying(self: DepositLedger, *args: object, **kwargs: object) -> object:
        real(self, *args, **kwargs)
        raise Crash("the worker died before COMMIT")

    monkeypatch.setattr(DepositLedger, target, dying)
    with pytest.raises(Crash):
        service(uow, node, vault, page_size=3).step()
    assert rows(uow, vault) == []
    assert coins(uow, a) == 0
    monkeypatch.setattr(DepositLedger, target, real)
    report = service(uow, node, vault, page_size=3).step()
    assert (report.seen, report.credited) == (7, 7)
    assert coins(uow, a) == 70
    check_books(uow, vault, [a])


def test_rows_that_change_under_the_credit_pass_are_not_credited(
    uow: UnitOfWorkFactory, ledger: LedgerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page is read, then (another worker, a rewind) one row stops being `seen` before the
    credit: the optimistic statement notices, and the careful retry credits only the others."""
    vault, node = new_vault(), ScriptedNode()
    ((a, key_a),) = users(ledger, 1)
    for i in range(4):
        node.deposit(key_a, 1_000 * (i + 1), block=START)
    node.head_block = START
    svc = service(uow, node, vault)
    assert svc.step().seen == 4
    node.mine(2)
    victim = node.logs[2]
    real_page = DepositLedger.due_page

    def page_then_orphan(self: DepositLedger, *args: object, **kwargs: object) -> object:
        page = real_page(self, *args, **kwargs)  # type: ignore[arg-type]
        with uow.write() as u:
            u.session.execute(update(Deposit).where(Deposit.tx_hash == victim.tx_hash).values(state="orphaned"))
            u.commit()
        return page

    monkeypatch.setattr(DepositLedger, "due_page", page_then_orphan)
    report = svc.step()
    assert report.credited == 3
    assert coins(uow, a) == 1_000 + 2_000 + 4_000
    states = {d.tx_hash: d.state for d in rows(uow, vault)}
    assert states.pop(victim.tx_hash) == "orphaned"
    assert set(states.values()) == {"credited"}
    check_books(uow, vault, [a])


def test_a_block_the_node_no_longer_has_is_not_credited_at_first_sight(
    uow: UnitOfWorkFactory, ledger: LedgerHarness
) -> None:
    """Logs whose block hash the node does not confirm are stored `seen`, never credited as read."""
    vault, node = new_vault(), ScriptedNode()
    ((a, key_a),) = users(ledger, 1)
    node.deposit(key_a, 5, block=START)
    stale = node.deposit(key_a, 6, block=START + 1)
    node.head_block = START + 10
    node.forks[START + 1] = "other"  # the node's chain has another block there now
    report = service(uow, node, vault).step()
    assert report.credited == 1
    assert coins(uow, a) == 5
    states = {d.tx_hash: d.state for d in rows(uow, vault)}
    assert states[stale.tx_hash] != "credited"
    check_books(uow, vault, [a])


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_balance_that_would_overflow_stops_where_it_always_did(backend: str, tmp_path: Path) -> None:
    """The set-based path hands the page to the row-by-row one, which credits the deposits
    before the overflowing one and raises at it (a database of its own: the balance is forged)."""
    with fresh_database(backend, tmp_path, "tbdepovf") as url:
        ledger = LedgerHarness(url)
        try:
            with bridge_uow(url) as factory:
                vault, node = new_vault(), ScriptedNode()
                ((a, key_a),) = users(ledger, 1)
                with factory.write() as u:
                    u.session.execute(update(Account).where(Account.id == a).values(coins=MAX_AMOUNT_EXCLUSIVE - 10))
                    u.commit()
                first = node.deposit(key_a, 4, block=START)
                node.deposit(key_a, 100, block=START + 1)
                node.head_block = START + 5
                with pytest.raises(InvalidInput):
                    service(factory, node, vault).step()
                states = {d.tx_hash: d.state for d in rows(factory, vault)}
                assert states.pop(first.tx_hash) == "credited"
                assert set(states.values()) == {"seen"}
                assert coins(factory, a) == MAX_AMOUNT_EXCLUSIVE - 6
                with factory.read() as u:
                    n = u.session.scalar(select(func.count()).select_from(Transfer).where(Transfer.kind == "deposit"))
                assert n == 1
        finally:
            ledger.close()


def test_unpostable_amounts_are_left_out_of_the_set(uow: UnitOfWorkFactory, ledger: LedgerHarness) -> None:
    vault, node = new_vault(), ScriptedNode()
    ((a, key_a),) = users(ledger, 1)
    node.deposit(key_a, 9, block=START)
    big = node.deposit(key_a, 1, block=START)
    node.logs[-1] = big._replace(amount=2**63)
    node.head_block = START + 3
    report = service(uow, node, vault).step()
    assert (report.seen, report.credited) == (1, 1)
    assert len(report.alarms) == 1
    assert coins(uow, a) == 9
    check_books(uow, vault, [a])


def test_a_field_that_would_break_the_line_format_takes_the_general_path(
    uow: UnitOfWorkFactory, ledger: LedgerHarness
) -> None:
    """No real log has one (decode_deposit refuses non-hex hashes), but a source that hands one
    over must not corrupt the set-based statements: it is stored and credited the safe way."""
    vault, node = new_vault(), ScriptedNode()
    ((a, key_a),) = users(ledger, 1)
    node.deposit(key_a, 40, block=START)
    odd = node.deposit(key_a, 2, block=START + 1)
    node.logs[-1] = odd._replace(tx_hash=odd.tx_hash[:10] + ",\n" + odd.tx_hash[12:])
    node.head_block = START + 5
    report = service(uow, node, vault).step()
    assert (report.seen, report.credited) == (2, 2)
    assert coins(uow, a) == 42
    assert {d.tx_hash for d in rows(uow, vault)} == {node.logs[0].tx_hash, node.logs[1].tx_hash}
    check_books(uow, vault, [a])
