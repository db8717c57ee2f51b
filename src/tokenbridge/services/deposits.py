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
3. Read new blocks up to the head in adaptive `eth_getLogs` ranges (adapters/chain/indexer.py:
   a range shrinks when the node refuses it or when it held more than `MAX_LOGS_PER_CHUNK`
   logs, so responses stay near that size where deposits are dense), the next chunk read in
   a thread while this one is stored, storing each chunk
   (rows, checkpoints, cursor) in one transaction, `PAGE` logs per set-based statement:
   - PostgreSQL, a chunk whose logs are all new (catching up): logs already `confirmations`
     deep, in blocks whose hash the node confirms now (the check of step 4), are credited in
     the statement that records them (row `credited` at once), the others stored `seen`;
   - otherwise (SQLite; a chunk with a log read before, i.e. a re-read after a rewind, which
     rolls the first attempt back): rows `seen` with `INSERT ... ON CONFLICT DO NOTHING`, and
     a log that already had a row handled on its own (revived, or a moved credited log is a
     deep reorg).
4. Credit every `seen` row at least `confirmations` blocks deep (head >= block + confirmations,
   as for transactions), after checking its block hash is still the chain's (one batch of
   node calls per page for blocks not yet checked), in pages of `PAGE` rows in (block, log
   index) order, one transaction per page (adapters/db/deposit_ledger.py): the users locked
   once each in id order, then per deposit the posting `deposit:<tx hash>:<log index>`
   (debit `external:chain`, credit the account) and the row `credited` (only if still `seen`
   in the checked block; if any row changed since the page was read, the transaction is
   rolled back and retried with the rows locked and re-read first), all in a few set-based
   statements. A page the set-based path cannot take (a transfer already there, a balance
   that would overflow) is credited row by row as before (`_credit_one`: the row lock, the
   posting), which raises where it always did.

Memory: one eth_getLogs answer at a time plus the one read ahead (the first answer of a
catch-up covers whatever the last known range holds; a denser answer than
`MAX_LOGS_PER_CHUNK` scales the next range down), `PAGE` rows per statement, and due rows read
a page at a time, never all at once. Python's cyclic collector is paused while an answer is
decoded and while a chunk is planned and stored (`gc_pause.gc_paused`: those objects are
acyclic and freed by reference counting; the collections they triggered cost a quarter of
the worker's CPU per deposit); it runs again between chunks.

Where a deposit goes: the account whose `account_key` equals the event's key, if it is a
user account -> `user:<id>:coins` (restricted and indebted users too: the tokens are theirs
and already in the vault; debt is not netted, so the vault keeps holding exactly the
liabilities). Any other key (unknown, or a creator's key, whose on-chain earnings are tracked
separately) -> the suspense account `suspense:chain:deposits`: a liability (the platform
holds tokens it owes to whoever can prove the key) that reconcile counts, resolved by an
operator (docs/operations.md).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tokenbridge.adapters.chain.indexer import (
    AdaptiveRange,
    ChainMoved,
    Chunk,
    DepositLog,
    DepositSource,
    block_hashes,
    find_fork,
    read_ahead,
    scan,
)
from tokenbridge.adapters.db.deposit_ledger import (
    DepositCredit,
    DepositLedger,
    DueDeposit,
    LockedUser,
    NotDelimitable,
    PlannedCredit,
)
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
from tokenbridge.gc_pause import gc_paused
from tokenbridge.services._common import Clock, utc_clock

log = logging.getLogger(__name__)

SUSPENSE = "suspense:chain:deposits"
ALARM_DEEP_REORG = "deep_reorg"
ALARM_UNPOSTABLE = "deposit_unpostable"

AlarmHook = Callable[[str, str, str], None]  # (kind, scope, detail)

PAGE = 1_000  # deposits per set-based statement / crediting transaction
MAX_LOGS_PER_CHUNK = 5_000  # a denser eth_getLogs answer scales the next range down
CATCH_UP_BLOCKS = 16  # a step starting further behind the head says so in the log


class _Unbatchable(Exception):
    """A page the set-based path leaves to the row-by-row one (which raises where it should)."""


class _Stale(Exception):
    """A row of the page changed since it was read; the page's transaction is rolled back."""


@dataclass(slots=True)
class _Stored:
    """What one chunk's transaction wrote (added to the report once it committed)."""

    seen: int = 0
    credited: int = 0
    credited_amount: int = 0
    to_suspense: list[DepositLog] = field(default_factory=list)


def _credit_for(
    deposit_id: int,
    tx_hash: str,
    log_index: int,
    block_hash: str,
    account_key: str,
    amount: int,
    users: dict[str, LockedUser],
    coins: dict[str, int],
) -> DepositCredit:
    """The same posting as `_credit_one`: debit external:chain, credit the coins of the user
    whose key it is (`users`: locked, by key; `coins` accumulates their new balances) or the
    suspense account. A balance that would overflow is left to the row-by-row path."""
    account, account_id = _target(account_key, amount, users, coins)
    return DepositCredit(
        deposit_id=deposit_id,
        block_hash=block_hash,
        tx_hash=tx_hash,
        log_index=log_index,
        caller_id=f"deposit:{tx_hash}:{log_index}",
        request_hash=deposit_request_hash(tx_hash, log_index, account_key, amount),
        account=account,
        account_id=account_id,
        amount=amount,
    )


def _target(
    account_key: str, amount: int, users: dict[str, LockedUser], coins: dict[str, int]
) -> tuple[str, str | None]:
    """(credited ledger account, user id or None) of a deposit of `amount` to `account_key`,
    the user's new balance added to `coins` (see `_credit_for`)."""
    user = users.get(account_key.lower())
    if user is None:
        return SUSPENSE, None
    balance = coins.get(user.id, user.coins) + amount
    if balance >= MAX_AMOUNT_EXCLUSIVE:
        raise _Unbatchable(f"{user.account} would exceed the maximum balance")
    coins[user.id] = balance
    return user.account, user.id


def deposit_request_hash(tx_hash: str, log_index: int, account_key: str, amount: int) -> str:
    """`lg.request_hash` of the deposit's body {tx_hash, log_index, account_key, amount}.

    Built without json.dumps when the strings need no JSON escaping (0x-hex always does not);
    equal to the general form by construction (sorted keys, no whitespace), checked in tests.
    """
    if _plain(tx_hash) and _plain(account_key):
        canonical = (
            f'{{"account_key":"{account_key}","amount":{int(amount)},"log_index":{int(log_index)},'
            f'"tx_hash":"{tx_hash}"}}'
        )
        return hashlib.sha256(canonical.encode()).hexdigest()
    body: dict[str, object] = {"tx_hash": tx_hash, "log_index": log_index, "account_key": account_key, "amount": amount}
    return lg.request_hash(body)


def _short(exc: Exception) -> str:
    """One line about a fallback's cause (an IntegrityError's text carries the whole statement)."""
    cause = getattr(exc, "orig", None) or exc
    return f"{type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else ''}"


def _plain(value: str) -> bool:
    """True if JSON writes `value` as itself between quotes (ASCII letters and digits only)."""
    return value.isascii() and value.removeprefix("0x").isalnum()


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
        page_size: int = PAGE,
        max_logs_per_chunk: int | None = MAX_LOGS_PER_CHUNK,
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
        if page_size < 1:
            raise ConfigurationError("page_size must be >= 1")
        self._page = page_size
        self._max_logs = max_logs_per_chunk
        self._clock = clock
        self._on_alarm = on_alarm
        self._span: AdaptiveRange | None = None
        self._store_new: bool | None = None  # the database takes `DepositLedger.store_new`

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
        """Raise DeepReorg if a credited deposit above `floor` is no longer in its block
        (one node call per distinct block, not per deposit)."""
        with self._uow.read() as uow:
            blocks = DepositStore(uow.session).credited_blocks(self.vault, above=floor)
        for number, block_hash in blocks:
            now_hash = self._source.block_hash(number)
            if now_hash != block_hash:
                with self._uow.read() as uow:
                    first = DepositStore(uow.session).first_credited_in(self.vault, number, block_hash)
                tx_hash, log_index = first if first is not None else ("?", -1)
                raise DeepReorg(
                    f"credited deposit {tx_hash}:{log_index} of vault {self.vault} was in block {number} "
                    f"{block_hash}; the chain now has {now_hash} there (reorganisation deeper than "
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
        if head - start + 1 > CATCH_UP_BLOCKS:
            log.info("deposits: catching up on blocks %d..%d of vault %s", start, head, self.vault)
        chunks = scan(self._source, self._span, start, head, cursor, self._max_chunks, self._max_logs)
        with closing(read_ahead(chunks)) as ahead:  # the next chunk is read while this one is stored
            for chunk in ahead:
                self._store_chunk(chunk, head, report)
                report.chunks += 1
                report.cursor = chunk.to_block

    def _store_chunk(self, chunk: Chunk, head: int, report: DepositReport) -> None:
        """One transaction: the chunk's rows, its block checkpoints and the cursor.

        Rows are written set-based, `PAGE` logs per statement. On PostgreSQL, logs that are
        already `confirmations` deep (catching up) and whose block hash the node confirms
        right now (as the credit pass would check it) are credited in the same statement
        that records them (`DepositLedger.store_new`); everything else is stored `seen` and
        credited by the credit pass. If any log of the chunk already had a row (a re-read
        after a rewind), that transaction is rolled back and the chunk stored the general
        way: rows `seen`, existing ones merged one by one.
        """
        with gc_paused():  # a chunk's credits and SQL lines: see tokenbridge.gc_pause
            self._store_chunk_now(chunk, head, report)

    def _store_chunk_now(self, chunk: Chunk, head: int, report: DepositReport) -> None:
        unpostable: list[str] = []
        postable: list[DepositLog] = []
        for entry in chunk.logs:
            if 0 < entry.amount < MAX_AMOUNT_EXCLUSIVE:
                postable.append(entry)
            else:
                unpostable.append(f"{entry.tx_hash}:{entry.log_index} ({entry.amount} units)")
        counts: _Stored | None = None
        if self._set_based_store():
            due = self._due_blocks(postable, head)
            if due:
                try:
                    counts = self._write_chunk(chunk, head, postable, due)
                except (_Unbatchable, NotDelimitable, IntegrityError) as exc:
                    log.info(
                        "deposits: chunk [%d, %d] stored the general way (%s)",
                        chunk.from_block,
                        chunk.to_block,
                        _short(exc),
                    )
        if counts is None:
            counts = self._write_chunk(chunk, head, postable, set())
        report.seen += counts.seen
        report.credited += counts.credited
        report.credited_amount += counts.credited_amount
        report.to_suspense += len(counts.to_suspense)
        for entry in counts.to_suspense:
            self._log_suspense(entry.tx_hash, entry.log_index, entry.amount, entry.account_key)
        for what in unpostable:  # after the chunk's transaction: one writer at a time on SQLite
            self._alarm(
                ALARM_UNPOSTABLE,
                f"deposit {what} of vault {self.vault} is outside (0, 2**63) units and cannot be posted; "
                "left uncredited",
                report,
                scope=what.split(":")[0].removeprefix("0x"),  # the tx hash: 64 hex characters
            )

    def _set_based_store(self) -> bool:
        if self._store_new is None:
            with self._uow.read() as uow:
                self._store_new = DepositLedger(uow.session).set_based_store
        return self._store_new

    def _due_blocks(self, logs: list[DepositLog], head: int) -> set[int]:
        """Blocks of `logs` at least `confirmations` deep whose hash the node confirms now
        (one batch of calls, before any transaction is open)."""
        safe = head - self.confirmations
        hashes: dict[int, set[str]] = {}
        for entry in logs:
            if entry.block_number <= safe:
                hashes.setdefault(entry.block_number, set()).add(entry.block_hash)
        now = block_hashes(self._source, hashes)
        return {number for number, seen in hashes.items() if len(seen) == 1 and now[number] in seen}

    def _write_chunk(self, chunk: Chunk, head: int, postable: list[DepositLog], credit_blocks: set[int]) -> _Stored:
        """The chunk's transaction; with `credit_blocks`, PostgreSQL's credit-on-first-sight."""
        assert self._span is not None
        now = self._clock()
        out = _Stored()
        with self._uow.write() as uow:
            store = DepositStore(uow.session)
            rows = DepositLedger(uow.session)
            if credit_blocks:
                users = rows.lock_users(e.account_key.lower() for e in postable if e.block_number in credit_blocks)
                coins: dict[str, int] = {}

                def pages() -> Iterator[tuple[list[DepositLog], list[PlannedCredit | None], dict[str, int]]]:
                    # per log its credit's (request hash, account, user id), or None (stored `seen`):
                    # plain tuples, not a DepositCredit per log (the same posting as `_credit_for`)
                    for start in range(0, len(postable), self._page):
                        page = postable[start : start + self._page]
                        plans: list[PlannedCredit | None] = []
                        for e in page:
                            if e.block_number not in credit_blocks:
                                plans.append(None)
                                continue
                            account, account_id = _target(e.account_key, e.amount, users, coins)
                            request = deposit_request_hash(e.tx_hash, e.log_index, e.account_key, e.amount)
                            plans.append((request, account, account_id))
                            out.credited += 1
                            out.credited_amount += e.amount
                            if account_id is None:
                                out.to_suspense.append(e)
                        yield page, plans, coins

                out.seen += rows.store_new(self.vault, pages(), now)
            else:
                for start in range(0, len(postable), self._page):
                    page = postable[start : start + self._page]
                    inserted = rows.insert_seen(self.vault, page, now)
                    out.seen += len(inserted)
                    if len(inserted) < len(page):  # logs read before (a re-read after a rewind)
                        for entry in page:
                            if (entry.tx_hash, entry.log_index) not in inserted:
                                out.seen += self._merge_existing(store, entry, now)
            store.record_blocks(self.vault, chunk.block_hashes())
            store.prune_blocks_below(self.vault, chunk.to_block - self._window)
            state = store.state(self.vault, lock=True)
            assert state is not None
            state.cursor_block, state.cursor_hash = chunk.to_block, chunk.to_hash
            state.head_block, state.range_size, state.updated_at = head, self._span.size, now
            uow.commit()
        return out

    @staticmethod
    def _merge_existing(store: DepositStore, entry: DepositLog, now: datetime) -> int:
        """A log that already has a row: a credited one must not have moved (else DeepReorg);
        a `seen` one in another block, or an `orphaned` one, is revived as `seen` with it
        (returns 1 then, else 0)."""
        row = store.deposit(entry.tx_hash, entry.log_index)
        if row is None:  # pragma: no cover - the insert conflicted on this very key
            raise ChainMoved(f"deposit {entry.tx_hash}:{entry.log_index} vanished while storing it")
        if row.state == DEPOSIT_CREDITED:
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
            return 1
        return 0

    # -- crediting --------------------------------------------------------------------------

    def _credit(self, head: int, report: DepositReport) -> None:
        """Credit every due `seen` row, a page (`PAGE` rows, in block and log order) per
        transaction, after checking each row's block is still the chain's."""
        safe = head - self.confirmations
        with self._uow.read() as uow:
            state = DepositStore(uow.session).state(self.vault)
            cursor = state.cursor_block if state is not None and state.cursor_block is not None else -1
        up_to = min(safe, cursor)
        hashes: dict[int, str | None] = {}
        after: tuple[int, int] | None = None
        while up_to >= 0:
            with self._uow.read() as uow:
                page = DepositLedger(uow.session).due_page(self.vault, up_to, after, self._page)
            if not page:
                break
            after = (page[-1].block_number, page[-1].log_index)
            hashes.update(block_hashes(self._source, {r.block_number for r in page if r.block_number not in hashes}))
            moved = next((i for i, row in enumerate(page) if hashes[row.block_number] != row.block_hash), None)
            if moved is not None:
                # a block left the chain after it was read: credit what comes before it (as
                # the row-by-row order would), then treat it as the reorg it is
                self._credit_page(page[:moved], report)
                self._handle_reorg(report)
                return
            self._credit_page(page, report)
            if len(page) < self._page:
                break
        with self._uow.write() as uow:
            state_row = DepositStore(uow.session).state(self.vault, lock=True)
            if state_row is not None:
                state_row.safe_block, state_row.updated_at = max(safe, -1), self._clock()
            uow.commit()

    def _credit_page(self, page: list[DueDeposit], report: DepositReport) -> None:
        """Credit a page of due rows in one transaction (module docstring, step 4)."""
        if not page:
            return
        try:
            try:
                booked = self._book_page(page, careful=False)
            except _Stale:  # a row changed since the page was read: lock the rows first
                log.info("deposits: a page of %d changed while it was credited; locking its rows", len(page))
                booked = self._book_page(page, careful=True)
        except (_Unbatchable, NotDelimitable, IntegrityError) as exc:
            # what the row-by-row path handles (a transfer already there, a balance that
            # would overflow): credit this page one deposit at a time, exactly as before
            log.warning("deposits: crediting %d deposit(s) one by one (%s)", len(page), _short(exc))
            for row in page:
                self._credit_one(row.id, report)
            return
        for row, credit in booked:
            report.credited += 1
            report.credited_amount += credit.amount
            if credit.account_id is None:
                report.to_suspense += 1
                self._log_suspense(row.tx_hash, row.log_index, row.amount, row.account_key)

    def _book_page(self, page: list[DueDeposit], *, careful: bool) -> list[tuple[DueDeposit, DepositCredit]]:
        """One transaction. Optimistic: the rows as the page read them, each credited only if
        still `seen` in its checked block, else `_Stale` (rolled back). Careful: the rows
        locked and re-read first, so whatever is still `seen` there is credited."""
        now = self._clock()
        with self._uow.write() as uow:
            rows = DepositLedger(uow.session)
            if careful:
                checked = {(row.id, row.block_hash) for row in page}
                current = [r for r in rows.lock_seen(r.id for r in page) if (r.id, r.block_hash) in checked]
                current.sort(key=lambda r: (r.block_number, r.log_index))
            else:
                current = page
            users = rows.lock_users(r.account_key.lower() for r in current)
            credits, coins = self._plan(current, users)
            if rows.book(credits, coins, now) != len(credits):
                raise _Stale
            uow.commit()
        return list(zip(current, credits, strict=True))

    @staticmethod
    def _plan(locked: list[DueDeposit], users: dict[str, LockedUser]) -> tuple[list[DepositCredit], dict[str, int]]:
        """The credits of a page and the users' new coins."""
        coins: dict[str, int] = {}
        credits = [
            _credit_for(r.id, r.tx_hash, r.log_index, r.block_hash, r.account_key, r.amount, users, coins)
            for r in locked
        ]
        return credits, coins

    @staticmethod
    def _log_suspense(tx_hash: str, log_index: int, amount: int, account_key: str) -> None:
        log.warning(
            "deposit %s:%d of %d units for unknown key %s credited to %s",
            tx_hash,
            log_index,
            amount,
            account_key,
            SUSPENSE,
        )

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
                locked = {target: account} if account is not None else {}
                request = deposit_request_hash(row.tx_hash, row.log_index, row.account_key, row.amount)
                transfer = uow.ledger.apply(posting, caller_id, request, locked, now)
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
