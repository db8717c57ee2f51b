"""Deposits: vault `Deposited` logs -> ledger credits, once per (tx hash, log index), after
`confirmations` blocks, and never silently undone.

One `step()` (run by the worker):

1. If a `deep_reorg` alarm is open for this vault, do nothing (crediting stays stopped until
   an operator resolves it; docs/operations.md).
2. Reorg check: the stored cursor hash against the chain. On a mismatch, find the highest
   stored checkpoint still on the chain (the fork). A credited deposit above the fork whose
   block hash changed means a reorganisation deeper than `confirmations`: raise the alarm
   (log line, metric via the callback, `alarms` row) and stop. Otherwise only unconfirmed
   rows are affected: they become `orphaned`, the cursor moves back to the fork and the
   blocks are read again (a log still on the chain revives its row as `seen`).
3. Read new blocks up to the head in adaptive `eth_getLogs` ranges (adapters/chain/indexer.py),
   storing each chunk (rows `seen`, checkpoints, cursor) in one transaction.
4. Credit every `seen` row at least `confirmations` blocks deep (head >= block + confirmations,
   as for transactions), after checking its block hash is still the chain's, each in one
   transaction: the row lock, then the posting `deposit:<tx hash>:<log index>`
   (debit `external:chain`, credit the account).

Where a deposit goes: the account whose `account_key` equals the event's key, if it is a
user account -> `user:<id>:coins` (restricted and indebted users too: the tokens are theirs
and already in the vault; debt is not netted, so the vault keeps holding exactly the
liabilities). Any other key (unknown, or a creator's key, whose on-chain earnings are tracked
separately) -> the suspense account `suspense:chain:deposits`: a liability (the platform
holds tokens it owes to whoever can prove the key) that reconcile counts, resolved by an
operator (docs/operations.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from tokenbridge.adapters.chain.indexer import AdaptiveRange, ChainMoved, Chunk, DepositSource, find_fork, scan
from tokenbridge.adapters.db.models import Account, TransferLeg
from tokenbridge.adapters.db.models_deposits import (
    DEPOSIT_CREDITED,
    DEPOSIT_ORPHANED,
    DEPOSIT_SEEN,
    Deposit,
    DepositStore,
    IndexerState,
)
from tokenbridge.adapters.db.uow import SqlUnitOfWork, UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.errors import ConfigurationError, DeepReorg
from tokenbridge.domain.money import MAX_AMOUNT_EXCLUSIVE
from tokenbridge.services._common import Clock, utc_clock

log = logging.getLogger(__name__)

SUSPENSE = "suspense:chain:deposits"
ALARM_DEEP_REORG = "deep_reorg"
ALARM_UNPOSTABLE = "deposit_unpostable"

AlarmHook = Callable[[str, str, str], None]  # (kind, scope, detail)


@dataclass(slots=True)
class DepositReport:
    head: int | None = None
    cursor: int | None = None
    chunks: int = 0
    seen: int = 0
    credited: int = 0
    credited_amount: int = 0
    to_suspense: int = 0
    orphaned: int = 0
    rewound_to: int | None = None
    halted: bool = False
    alarms: list[str] = field(default_factory=list)


class DepositService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        source: DepositSource,
        *,
        vault: str,
        confirmations: int,
        start_block: int,
        max_range: int = 2_000,
        window: int = 1_024,
        max_chunks_per_step: int = 50,
        clock: Clock = utc_clock,
        on_alarm: AlarmHook | None = None,
    ) -> None:
        if confirmations < 0 or start_block < 0:
            raise ConfigurationError("confirmations and start_block must be non-negative")
        self._uow = uow
        self._source = source
        self.vault = vault
        self.confirmations = confirmations
        self.start_block = start_block
        self._max_range = max_range
        self._window = window
        self._max_chunks = max_chunks_per_step
        self._clock = clock
        self._on_alarm = on_alarm
        self._span: AdaptiveRange | None = None

    # -- public -----------------------------------------------------------------------------

    def halted(self) -> bool:
        with self._uow.read() as uow:
            return bool(DepositStore(uow.session).open_alarms(self.vault, ALARM_DEEP_REORG))

    def step(self) -> DepositReport:
        report = DepositReport()
        if self.halted():
            report.halted = True
            return report
        head = self._source.head()
        report.head = head
        state = self._load_state()
        if self._span is None:
            self._span = AdaptiveRange(self._max_range, state.range_size)
        try:
            if state.cursor_block is not None and self._source.block_hash(state.cursor_block) != state.cursor_hash:
                state = self._handle_reorg(report)
            self._read(state, head, report)
            self._credit(head, report)
        except DeepReorg as exc:
            self._alarm(ALARM_DEEP_REORG, exc.detail, report)
            report.halted = True
        except ChainMoved as exc:
            log.info("deposits: %s; reading again next step", exc)
        return report

    # -- state ------------------------------------------------------------------------------

    def _load_state(self) -> IndexerState:
        chain_id = self._source.chain_id()
        with self._uow.write() as uow:
            store = DepositStore(uow.session)
            state = store.state(self.vault)
            if state is None:
                state = IndexerState(
                    vault=self.vault,
                    chain_id=chain_id,
                    start_block=self.start_block,
                    cursor_block=None,
                    cursor_hash=None,
                    safe_block=None,
                    head_block=None,
                    range_size=self._max_range,
                    updated_at=self._clock(),
                )
                store.add_state(state)
                uow.commit()
            elif state.chain_id != chain_id:
                raise ConfigurationError(
                    f"indexer state of vault {self.vault} is for chain {state.chain_id}, the node is on {chain_id}"
                )
            return state

    # -- reorgs -----------------------------------------------------------------------------

    def _handle_reorg(self, report: DepositReport) -> IndexerState:
        """The cursor block left the chain: find the fork, check credited rows, rewind."""
        with self._uow.read() as uow:
            store = DepositStore(uow.session)
            stored = store.blocks_desc(self.vault)
        fork = find_fork(self._source, stored)
        floor = fork if fork is not None else self.start_block - 1
        self._check_credited_above(floor)
        now = self._clock()
        with self._uow.write() as uow:
            store = DepositStore(uow.session)
            state = store.state(self.vault, lock=True)
            assert state is not None
            orphaned = store.orphan_seen_above(self.vault, floor, now)
            store.forget_blocks_above(self.vault, floor)
            state.cursor_block = fork
            state.cursor_hash = dict(stored).get(fork) if fork is not None else None
            state.updated_at = now
            uow.commit()
        report.orphaned += orphaned
        report.rewound_to = floor
        log.warning(
            "deposits: reorganisation below the cursor of vault %s; rewound to block %d, %d unconfirmed deposit(s) "
            "set aside for re-reading",
            self.vault,
            floor,
            orphaned,
        )
        return state

    def _check_credited_above(self, floor: int) -> None:
        """Raise DeepReorg if a credited deposit above `floor` is no longer in its block."""
        with self._uow.read() as uow:
            credited = [
                (d.tx_hash, d.log_index, d.block_number, d.block_hash)
                for d in DepositStore(uow.session).deposits(self.vault, DEPOSIT_CREDITED, above=floor)
            ]
        hashes: dict[int, str | None] = {}
        for tx_hash, log_index, number, block_hash in credited:
            if number not in hashes:
                hashes[number] = self._source.block_hash(number)
            if hashes[number] != block_hash:
                raise DeepReorg(
                    f"credited deposit {tx_hash}:{log_index} of vault {self.vault} was in block {number} "
                    f"{block_hash}; the chain now has {hashes[number]} there (reorganisation deeper than "
                    f"{self.confirmations} confirmations). Crediting stopped."
                )

    # -- reading ----------------------------------------------------------------------------

    def _read(self, state: IndexerState, head: int, report: DepositReport) -> None:
        assert self._span is not None
        start = (state.cursor_block + 1) if state.cursor_block is not None else state.start_block
        cursor = (
            (state.cursor_block, state.cursor_hash)
            if state.cursor_block is not None and state.cursor_hash is not None
            else None
        )
        for chunk in scan(self._source, self._span, start, head, cursor, self._max_chunks):
            self._store_chunk(chunk, head, report)
            report.chunks += 1
            report.cursor = chunk.to_block

    def _store_chunk(self, chunk: Chunk, head: int, report: DepositReport) -> None:
        assert self._span is not None
        now = self._clock()
        unpostable: list[str] = []
        with self._uow.write() as uow:
            store = DepositStore(uow.session)
            for entry in chunk.logs:
                if not 0 < entry.amount < MAX_AMOUNT_EXCLUSIVE:
                    unpostable.append(f"{entry.tx_hash}:{entry.log_index} ({entry.amount} units)")
                    continue
                row = store.deposit(entry.tx_hash, entry.log_index)
                if row is None:
                    store.add_deposit(
                        Deposit(
                            vault=self.vault,
                            tx_hash=entry.tx_hash,
                            log_index=entry.log_index,
                            block_number=entry.block_number,
                            block_hash=entry.block_hash,
                            account_key=entry.account_key,
                            from_address=entry.sender,
                            amount=entry.amount,
                            state=DEPOSIT_SEEN,
                            seen_at=now,
                            updated_at=now,
                        )
                    )
                    report.seen += 1
                elif row.state == DEPOSIT_CREDITED:
                    if row.block_hash != entry.block_hash:
                        raise DeepReorg(
                            f"credited deposit {entry.tx_hash}:{entry.log_index} moved from block "
                            f"{row.block_number} {row.block_hash} to {entry.block_number} {entry.block_hash}. "
                            "Crediting stopped."
                        )
                elif row.block_hash != entry.block_hash or row.state == DEPOSIT_ORPHANED:
                    row.block_number, row.block_hash = entry.block_number, entry.block_hash
                    row.account_key, row.from_address, row.amount = entry.account_key, entry.sender, entry.amount
                    row.state, row.updated_at = DEPOSIT_SEEN, now
                    report.seen += 1
            store.record_blocks(self.vault, chunk.block_hashes())
            store.prune_blocks_below(self.vault, chunk.to_block - self._window)
            state = store.state(self.vault, lock=True)
            assert state is not None
            state.cursor_block, state.cursor_hash = chunk.to_block, chunk.to_hash
            state.head_block, state.range_size, state.updated_at = head, self._span.size, now
            uow.commit()
        for what in unpostable:  # after the chunk's transaction: one writer at a time on SQLite
            self._alarm(
                ALARM_UNPOSTABLE,
                f"deposit {what} of vault {self.vault} is outside (0, 2**63) units and cannot be posted; "
                "left uncredited",
                report,
                scope=what.split(":")[0].removeprefix("0x"),  # the tx hash: 64 hex characters
            )

    # -- crediting --------------------------------------------------------------------------

    def _credit(self, head: int, report: DepositReport) -> None:
        safe = head - self.confirmations
        with self._uow.read() as uow:
            store = DepositStore(uow.session)
            state = store.state(self.vault)
            cursor = state.cursor_block if state is not None and state.cursor_block is not None else -1
            due = [(d.id, d.block_number, d.block_hash) for d in store.deposits(self.vault, DEPOSIT_SEEN, up_to=safe)]
        hashes: dict[int, str | None] = {}
        for deposit_id, number, block_hash in due:
            if number > cursor:
                continue
            if number not in hashes:
                hashes[number] = self._source.block_hash(number)
            if hashes[number] != block_hash:
                # its block left the chain after it was read: treat it as the reorg it is
                self._handle_reorg(report)
                return
            self._credit_one(deposit_id, report)
        with self._uow.write() as uow:
            state_row = DepositStore(uow.session).state(self.vault, lock=True)
            if state_row is not None:
                state_row.safe_block, state_row.updated_at = max(safe, -1), self._clock()
            uow.commit()

    def _credit_one(self, deposit_id: int, report: DepositReport) -> None:
        now = self._clock()
        with self._uow.write() as uow:
            row = uow.session.scalars(
                select(Deposit)
                .where(Deposit.id == deposit_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).one_or_none()
            if row is None or row.state != DEPOSIT_SEEN:
                return  # credited by someone else meanwhile, or orphaned
            caller_id = f"deposit:{row.tx_hash}:{row.log_index}"
            existing = uow.ledger.find_transfer(caller_id)
            account = self._user_for_key(uow, row.account_key)
            if existing is not None:  # pragma: no cover - the row and the transfer commit together
                transfer_id, target = existing.id, row.ledger_account
            else:
                target = lg.coins(account.id) if account is not None else SUSPENSE
                posting = lg.Posting.of(
                    "deposit", lg.debit(lg.EXTERNAL_CHAIN, row.amount), lg.credit(target, row.amount)
                )
                body: dict[str, object] = {
                    "tx_hash": row.tx_hash,
                    "log_index": row.log_index,
                    "account_key": row.account_key,
                    "amount": row.amount,
                }
                locked = {target: account} if account is not None else {}
                transfer = uow.ledger.apply(posting, caller_id, lg.request_hash(body), locked, now)
                transfer_id = transfer.id
            row.state, row.credited_at, row.updated_at = DEPOSIT_CREDITED, now, now
            row.account_id = account.id if account is not None else None
            row.ledger_account, row.transfer_id = target, transfer_id
            uow.commit()
        report.credited += 1
        report.credited_amount += row.amount
        if account is None:
            report.to_suspense += 1
            log.warning(
                "deposit %s:%d of %d units for unknown key %s credited to %s",
                row.tx_hash,
                row.log_index,
                row.amount,
                row.account_key,
                SUSPENSE,
            )

    @staticmethod
    def _user_for_key(uow: SqlUnitOfWork, account_key: str) -> Account | None:
        found = uow.session.scalars(select(Account.id).where(Account.account_key == account_key.lower())).first()
        if found is None:
            return None
        account = uow.accounts.lock(found)
        if account is None or account.kind != "user":
            return None
        return account

    # -- alarms -----------------------------------------------------------------------------

    def _alarm(self, kind: str, detail: str, report: DepositReport, scope: str | None = None) -> None:
        scope = scope or self.vault
        with self._uow.write() as uow:
            _alarm, created = DepositStore(uow.session).raise_alarm(kind, scope, detail, self._clock())
            uow.commit()
        report.alarms.append(f"{kind}: {detail}")
        if created:
            log.error("ALARM %s [%s]: %s", kind, scope, detail)
            if self._on_alarm is not None:
                self._on_alarm(kind, scope, detail)


def suspense_balance(session: Session) -> int:
    """Balance of the suspense account (credits - debits of its legs; one indexed sum)."""
    signed = case((TransferLeg.side == "credit", TransferLeg.amount), else_=-TransferLeg.amount)
    total = session.scalar(select(func.coalesce(func.sum(signed), 0)).where(TransferLeg.account == SUSPENSE))
    return int(total or 0)
