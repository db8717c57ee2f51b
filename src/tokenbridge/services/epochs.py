"""Epochs: close, settle on-chain, mint/burn the outbox, commit liabilities; and the public views.

One worker (the tx manager's lease holder) calls `EpochService.step()` after each
`TxManager.tick()`. Every on-chain effect is submitted through the tx manager inside the
DB transaction that records the state change (write-ahead), and every outcome is applied in
the DB transaction that marks it handled, so a crash anywhere repeats nothing and loses
nothing. Flow (docs/settlement.md):

1. `close()`: the open epoch takes every posted gift not yet in an epoch; gifts split at a
   rate other than the vault's are re-split; per creator, one ledger transfer makes the
   ledger credit equal the vault's `floor(G * bps / 10000)`; credits, chunks and the gift
   root are stored; a new open epoch starts.
2. `submit_closed()`: the chunks' `settleGifts` go to the tx manager in order, as many as
   it has room for (the rest stay `pending` for the next step); epoch -> submitted.
3. outcomes: a confirmed chunk is recorded; a reverted chunk that the vault shows settled
   (a duplicate send) counts as done, otherwise it is re-submitted; a superseded one is
   re-submitted. All chunks confirmed -> the epoch is settled and its gifts `settled`.
4. `commit_liabilities()`: after a settlement, in ONE database snapshot: the pending mint
   and burn outbox rows are batched (mintForRecharges / burnForRefunds) and the Merkle-sum
   tree of all in-app balances is built and submitted (commitLiabilities). The tx manager's
   nonce order puts the batches before the commitment, so when it executes the vault holds
   what the tree says (in-flight payouts and mints not batched are excluded, see docs). A
   total above the projected reserve is never committed: an alarm is raised and the
   commitment waits.
5. A settle chunk, mint/burn row or commitment whose tx failed `max_attempts` times is
   marked `stuck` with an alarm (`tokenbridge status`); clearing the alarm
   (`tokenbridge alarms clear`) sends it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from eth_utils.address import to_checksum_address
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from tokenbridge.adapters.chain.txmanager import TxBackpressure, TxOutcome
from tokenbridge.adapters.db.models import Account, Gift, OutboxItem, PaymentEvent, SystemBalance, Transfer, TransferLeg
from tokenbridge.adapters.db.models_deposits import DepositStore
from tokenbridge.adapters.db.models_settlement import (
    ChainBatch,
    ChainBatchItem,
    Epoch,
    EpochChunk,
    EpochCredit,
    LiabilityLeaf,
    Withdrawal,
)
from tokenbridge.adapters.db.models_tx import ChainTx
from tokenbridge.adapters.db.uow import SqlUnitOfWork, UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.epoch import (
    BURN_GAS,
    COMMIT_GAS,
    MINT_GAS,
    CreatorCredit,
    EpochGift,
    EpochPolicy,
    EpochState,
    SettlementPlan,
    plan_settlement,
    settle_gas,
    transition,
)
from tokenbridge.domain.errors import ChainError, InsufficientFunds, InvalidInput, NotFound
from tokenbridge.domain.keys import account_key
from tokenbridge.domain.merkle import GiftLeaf, RechargeLeaf, StandardMerkleTree, gift_tree, recharge_tree
from tokenbridge.domain.merkle_sum import MerkleSumTree
from tokenbridge.domain.split import Split
from tokenbridge.domain.txstate import TxState
from tokenbridge.services._common import Clock, utc_clock, validate_limit
from tokenbridge.services.chain_rate import ChainRate, SplitInfo
from tokenbridge.services.deposits import SUSPENSE, suspense_balance

log = logging.getLogger(__name__)

# The platform's revenue is one leaf of the liabilities tree under this public key
# (a fixed, all-zero salt: the platform has nothing to hide about being the platform).
PLATFORM_ACCOUNT_ID = "platform:revenue"
PLATFORM_KEY = account_key(PLATFORM_ACCOUNT_ID, bytes(32))
# deposits to keys no user holds wait in suspense (services/deposits.py): still owed, so a leaf
SUSPENSE_KEY = account_key(SUSPENSE, bytes(32))
MAX_OUTBOX_BATCH = 5_000

PURPOSE_SETTLE = "settle"
PURPOSE_MINT = "mint"
PURPOSE_BURN = "burn"
PURPOSE_LIABILITIES = "liabilities"
DEFAULT_MAX_ATTEMPTS = 5
STUCK = "stuck"
# alarms (the `alarms` table, shown by `tokenbridge status`); kind -> scope
ALARM_SETTLE_STUCK = "settle_stuck"  # scope epoch:<id>
ALARM_LIABILITIES_STUCK = "liabilities_stuck"  # scope epoch:<id>
ALARM_LIABILITIES_UNBACKED = "liabilities_unbacked"  # scope liabilities
ALARM_OUTBOX_STUCK = "{kind}_stuck"  # mint_stuck / burn_stuck, scope outbox:<kind>
_UNMINED = (TxState.SIGNED.value, TxState.BROADCAST.value)


def unmined_spend(s: Session, window: str) -> int:
    """Units signed or sent but not yet mined that will consume a vault allowance window: the
    chain's `available` does not show them yet. `mint`: mint batches; `payout`: payouts and
    burns (burnForRefunds draws on the payout window too)."""
    kinds = ["mint"] if window == "mint" else ["burn"]
    total = int(
        s.execute(
            select(func.coalesce(func.sum(ChainBatch.amount), 0))
            .join(ChainTx, ChainTx.id == ChainBatch.chain_tx_id)
            .where(ChainBatch.kind.in_(kinds), ChainBatch.state == "submitted", ChainTx.state.in_(_UNMINED))
        ).scalar_one()
    )
    if window == "payout":
        total += int(
            s.execute(
                select(func.coalesce(func.sum(Withdrawal.amount), 0))
                .join(ChainTx, ChainTx.id == Withdrawal.chain_tx_id)
                .where(Withdrawal.state == "submitted", ChainTx.state.in_(_UNMINED))
            ).scalar_one()
        )
    return total


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _b32(h: str) -> bytes:
    return bytes.fromhex(h[2:] if h.startswith("0x") else h)


class TxSubmitter(Protocol):
    """The part of TxManager the settlement services use."""

    def submit(self, session: Session, *, purpose: str, ref: str, to: str, data: bytes, gas: int) -> int: ...

    def outcomes(self, session: Session, purpose: str) -> list[TxOutcome]: ...

    def mark_handled(self, session: Session, tx_id: int) -> None: ...


class VaultView(Protocol):
    """The vault reads and call encoding the settlement services need (VaultClient implements it)."""

    address: str

    def encode_call(self, fn: str, *args: Any) -> str: ...

    def epoch(self, epoch_id: int) -> Any: ...

    def is_minted(self, batch_id: int) -> bool: ...

    def is_burned(self, burn_id: int) -> bool: ...

    def liabilities(self, epoch_id: int) -> Any: ...

    def latest_liabilities(self) -> Any: ...

    def reserve(self) -> int: ...

    def solvent(self, block: int | str = "latest") -> bool: ...

    def paused(self) -> bool: ...

    def mint_allowance(self) -> Any: ...

    def payout_allowance(self) -> Any: ...


# --- views --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkView:
    index: int
    creators: int
    gross: int
    state: str
    tx_hash: str | None
    block: int | None


@dataclass(frozen=True, slots=True)
class EpochView:
    id: int
    state: str
    bps: int | None
    gift_count: int
    gross_total: int
    creator_total: int
    rounding_total: int
    root: str | None
    chunk_count: int
    settle_tx_hash: str | None
    settled_block: int | None
    created_at: datetime
    closed_at: datetime | None
    settled_at: datetime | None
    liabilities_state: str
    liabilities_root: str | None
    liabilities_total: int | None
    liabilities_tx_hash: str | None
    chunks: tuple[ChunkView, ...] = ()


@dataclass(frozen=True, slots=True)
class EpochPage:
    items: list[EpochView]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ReserveView:
    reserve: int
    liabilities_epoch: int | None
    liabilities_root: str | None
    liabilities_total: int | None
    committed_at: int | None
    solvent: bool


@dataclass(slots=True)
class StepReport:
    closed: int | None = None
    submitted_epochs: int = 0
    settled: list[int] | None = None
    minted: int = 0
    burned: int = 0
    committed: int | None = None
    handled: int = 0
    waiting: str | None = None


def _epoch_view(row: Epoch, chunks: Sequence[EpochChunk] = ()) -> EpochView:
    return EpochView(
        id=row.id,
        state=row.state,
        bps=row.bps,
        gift_count=row.gift_count,
        gross_total=row.gross_total,
        creator_total=row.creator_total,
        rounding_total=row.rounding_total,
        root=row.root,
        chunk_count=row.chunk_count,
        settle_tx_hash=row.settle_tx_hash,
        settled_block=row.settled_block,
        created_at=row.created_at,
        closed_at=row.closed_at,
        settled_at=row.settled_at,
        liabilities_state=row.liabilities_state,
        liabilities_root=row.liabilities_root,
        liabilities_total=row.liabilities_total,
        liabilities_tx_hash=row.liabilities_tx_hash,
        chunks=tuple(ChunkView(c.chunk_index, c.creators, c.gross, c.state, c.tx_hash, c.block) for c in chunks),
    )


# --- ledger postings the settlement makes ------------------------------------------------------


def post_adjustment(
    uow: SqlUnitOfWork, epoch_id: int, creator_id: str, amount: int, now: datetime, *, step: str = "adjust"
) -> None:
    """Move `amount` (> 0: platform -> creator, < 0: creator -> platform) so the ledger credit of
    `creator_id` for `epoch_id` equals the vault's. Idempotent by its transfer id
    `epoch:<id>:<step>:<creator>` (`adjust` at close, `correct` after settlement)."""
    if amount == 0:
        return
    caller_id = f"epoch:{epoch_id}:{step}:{creator_id}"
    if uow.ledger.find_transfer(caller_id) is not None:
        return
    req_hash = lg.request_hash({"epoch": epoch_id, "step": step, "creator": creator_id, "amount": amount})
    if amount < 0:
        creator = uow.accounts.lock(creator_id)
        if creator is None:
            raise NotFound(f"account {creator_id} not found")
        uow.ledger.fold(lg.earnings(creator_id))
        creator = uow.accounts.lock(creator_id)
        assert creator is not None
        posting = lg.Posting.of(
            "epoch.adjust", lg.debit(lg.earnings(creator_id), -amount), lg.credit(lg.PLATFORM_REVENUE, -amount)
        )
        uow.ledger.apply(posting, caller_id, req_hash, {lg.earnings(creator_id): creator}, now)
        return
    # platform -> creator. `Ledger.apply` only debits locked *account rows*; platform:revenue is a
    # system balance, so this posting is written here with the same rules: lock + fold the
    # balance, check it stays >= 0, update the cache and append the folded debit leg; the
    # creator's credit leg is appended unfolded like every gift credit.
    posting = lg.Posting.of(
        "epoch.adjust", lg.debit(lg.PLATFORM_REVENUE, amount), lg.credit(lg.earnings(creator_id), amount)
    )
    s = uow.session
    uow.ledger.fold(lg.PLATFORM_REVENUE)
    row = s.execute(
        select(SystemBalance).where(SystemBalance.name == lg.PLATFORM_REVENUE).with_for_update()
    ).scalar_one()
    s.refresh(row)
    if row.balance < amount:
        raise InsufficientFunds(f"platform:revenue holds {row.balance}, the epoch {epoch_id} adjustment needs {amount}")
    transfer = Transfer(caller_id=caller_id, kind=posting.kind, request_hash=req_hash, created_at=now)
    s.add(transfer)
    s.flush()
    s.execute(
        update(SystemBalance)
        .where(SystemBalance.name == lg.PLATFORM_REVENUE)
        .values(balance=SystemBalance.balance - amount)
        .execution_options(synchronize_session=False)
    )
    for leg in posting.legs:
        s.add(
            TransferLeg(
                transfer_id=transfer.id,
                account=leg.account,
                side=leg.side,
                amount=leg.amount,
                folded=leg.account == lg.PLATFORM_REVENUE,
            )
        )


def lock_adjusted_accounts(uow: SqlUnitOfWork, credits: Sequence[CreatorCredit]) -> None:
    """Lock the rows `post_adjustment` will lock, before the close writes any gift row.

    Lock order everywhere is "account rows, then gift rows": a fold (a withdrawal request's,
    the worker's) holds a creator's row and then updates that creator's gift rows. A close
    that wrote its gift rows (re-split, epoch id) first and locked an adjusted creator's row
    afterwards would deadlock with it. So: the adjusted creators' rows in id order, then
    platform revenue's row when a platform -> creator adjustment will debit it."""
    adjusted = sorted({c.creator_id for c in credits if c.adjustment})
    if not adjusted:
        return
    s = uow.session
    s.execute(
        select(Account.id).where(Account.id.in_(adjusted)).order_by(Account.id).with_for_update(key_share=True)
    ).all()
    if any(c.adjustment > 0 for c in credits):
        s.execute(select(SystemBalance.name).where(SystemBalance.name == lg.PLATFORM_REVENUE).with_for_update()).all()


# --- the service --------------------------------------------------------------------------------


class EpochService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        txm: TxSubmitter,
        vault: VaultView,
        rate: ChainRate,
        *,
        chain_id: int,
        policy: EpochPolicy | None = None,
        chunk_size: int | None = None,
        clock: Clock = utc_clock,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        if max_attempts < 1:
            raise InvalidInput("max_attempts must be >= 1")
        self._uow = uow
        self._txm = txm
        self._vault = vault
        self._rate = rate
        self.chain_id = chain_id
        self.policy = policy or EpochPolicy()
        self._chunk_size = chunk_size
        self._clock = clock
        self.max_attempts = max_attempts
        # trees of settled epochs / committed liabilities never change: keep the last few built
        self._gift_trees: dict[int, StandardMerkleTree] = {}
        self._liability_trees: dict[int, MerkleSumTree] = {}

    @property
    def vault_address(self) -> str:
        return to_checksum_address(self._vault.address)

    # -- the worker step -------------------------------------------------------------------------

    def step(self) -> StepReport:
        """One round: apply outcomes, close if due, submit, flush the outbox, commit liabilities."""
        report = StepReport()
        self.resume_cleared()
        report.handled += self.handle_outcomes()
        report.settled = self.settled_since_last()
        report.closed = self.maybe_close()
        try:
            report.submitted_epochs = self.submit_closed()
            if self._due_liabilities() is not None:
                report.committed = self.commit_liabilities()
            elif self._outbox_due():
                report.minted, report.burned = self.flush_outbox()
        except TxBackpressure as exc:
            report.waiting = str(exc)
        return report

    # -- stuck work and alarms ---------------------------------------------------------------

    def _alarm(self, s: Session, kind: str, scope: str, detail: str) -> None:
        """Open an alarm (once per kind and scope) in the caller's transaction; log at ERROR when it
        opens (at WARNING while it stays open, e.g. a commitment retried every step)."""
        _, created = DepositStore(s).raise_alarm(kind, scope, detail, self._clock())
        log.log(logging.ERROR if created else logging.WARNING, "ALARM %s [%s]: %s", kind, scope, detail)

    def _gives_up(self, attempts: int) -> bool:
        """After every `max_attempts` failed sends the item stops until its alarm is cleared."""
        return attempts > 0 and attempts % self.max_attempts == 0

    def stuck(self) -> dict[str, list[str]]:
        """What is stopped and waits for an operator: settle chunks, commitments, outbox rows."""
        with self._uow.read() as uow:
            s = uow.session
            chunks = s.execute(
                select(EpochChunk.epoch_id, EpochChunk.chunk_index).where(EpochChunk.state == STUCK)
            ).all()
            commits = s.scalars(select(Epoch.id).where(Epoch.liabilities_state == STUCK)).all()
            rows = s.execute(
                select(OutboxItem.kind, OutboxItem.id).where(OutboxItem.state == STUCK).order_by(OutboxItem.id)
            ).all()
        return {
            "settle": [f"epoch:{e}:chunk:{i}" for e, i in chunks],
            "liabilities": [f"epoch:{e}" for e in commits],
            "outbox": [f"{k}:{i}" for k, i in rows],
        }

    def resume_cleared(self) -> int:
        """Send stuck work again once the operator cleared its alarm; the number of items resumed."""
        found = self.stuck()
        if not any(found.values()):
            return 0
        n = 0
        with self._uow.write() as uow:
            s = uow.session
            open_alarms = {(a.kind, a.scope) for a in DepositStore(s).open_alarms()}
            for chunk in s.scalars(select(EpochChunk).where(EpochChunk.state == STUCK).with_for_update()).all():
                if (ALARM_SETTLE_STUCK, f"epoch:{chunk.epoch_id}") not in open_alarms:
                    chunk.state, chunk.chain_tx_id = "pending", None
                    n += 1
            for epoch in s.scalars(select(Epoch).where(Epoch.liabilities_state == STUCK).with_for_update()).all():
                if (ALARM_LIABILITIES_STUCK, f"epoch:{epoch.id}") not in open_alarms:
                    epoch.liabilities_state, epoch.liabilities_tx_id = "none", None
                    n += 1
            for kind in ("mint", "burn"):
                if (ALARM_OUTBOX_STUCK.format(kind=kind), f"outbox:{kind}") in open_alarms:
                    continue
                result = s.execute(
                    update(OutboxItem)
                    .where(OutboxItem.kind == kind, OutboxItem.state == STUCK)
                    .values(state="pending", updated_at=self._clock())
                    .execution_options(synchronize_session=False)
                )
                n += int(getattr(result, "rowcount", 0) or 0)
            uow.commit()
        if n:
            log.warning("%d stuck settlement item(s) resumed after their alarm was cleared", n)
        return n

    def settled_since_last(self) -> list[int]:
        with self._uow.read() as uow:
            return list(
                uow.session.scalars(
                    select(Epoch.id).where(Epoch.state == EpochState.SETTLED.value, Epoch.liabilities_state == "none")
                ).all()
            )

    # -- open / close ------------------------------------------------------------------------------

    def _open_epoch(self, s: Session, now: datetime) -> Epoch:
        row = s.scalars(
            select(Epoch).where(Epoch.state == EpochState.OPEN.value).order_by(Epoch.id).with_for_update()
        ).first()
        if row is not None:
            return row
        last = s.execute(select(func.max(Epoch.id))).scalar()
        row = Epoch(id=int(last or 0) + 1, state=EpochState.OPEN.value, created_at=now)
        s.add(row)
        s.flush()
        return row

    def open_epoch(self) -> EpochView:
        with self._uow.write() as uow:
            row = self._open_epoch(uow.session, self._clock())
            view = _epoch_view(row)
            uow.commit()
            return view

    def reason_to_close(self) -> str | None:
        now = self._clock()
        with self._uow.read() as uow:
            s = uow.session
            count, first_at = s.execute(
                select(func.count(), func.min(Gift.created_at)).where(Gift.epoch_id.is_(None))
            ).one()
            rates = [int(r) for r in s.scalars(select(Gift.creator_bps).where(Gift.epoch_id.is_(None)).distinct())]
        if not count or first_at is None:
            return None
        info = self._rate.split()
        return self.policy.reason_to_close(
            opened_at=first_at,  # the oldest waiting gift: no gift waits longer than max_age_s
            now=now,
            gift_count=int(count),
            gift_rates=rates,
            chain_bps=self._rate.creator_bps(fresh=True) if rates else info.creator_bps,
            pending_effective_at=info.pending.effective_at if info.pending is not None else None,
        )

    def maybe_close(self) -> int | None:
        reason = self.reason_to_close()
        if reason is None:
            return None
        log.info("closing epoch: %s", reason)
        return self.close()

    def close(self) -> int | None:
        """Close the open epoch over every gift not yet in an epoch; None when there is none."""
        bps = self._rate.creator_bps(fresh=True)  # the rate the vault will record at chunk 0
        with self._uow.write() as uow:
            s = uow.session
            now = self._clock()
            epoch = self._open_epoch(s, now)
            gifts = list(
                s.scalars(
                    select(Gift)
                    .where(Gift.epoch_id.is_(None))
                    .order_by(Gift.created_at, Gift.id)
                    .limit(self.policy.max_gifts)
                ).all()
            )
            if not gifts:
                return None
            plan = plan_settlement(
                [EpochGift(g.id, g.creator_id, g.creator_key, g.gross, g.creator_amount, g.creator_bps) for g in gifts],
                bps,
                self._chunk_size,
            )
            self._apply_plan(uow, epoch, gifts, plan, now)
            epoch.state = transition(epoch.state, EpochState.CLOSED)
            epoch.closed_at = now
            s.add(Epoch(id=epoch.id + 1, state=EpochState.OPEN.value, created_at=now))
            epoch_id = epoch.id
            uow.commit()
        log.info(
            "epoch %d closed: %d gifts, gross %d, %d creators in %d chunks, bps %d, adjustment %d",
            epoch_id,
            plan.gift_count,
            plan.gross_total,
            len(plan.credits),
            len(plan.chunks),
            plan.bps,
            plan.rounding_total,
        )
        return epoch_id

    def _apply_plan(
        self, uow: SqlUnitOfWork, epoch: Epoch, gifts: list[Gift], plan: SettlementPlan, now: datetime
    ) -> None:
        s = uow.session
        lock_adjusted_accounts(uow, plan.credits)
        resplit: dict[str, Split] = dict(plan.resplit)
        for g in gifts:
            new = resplit.get(g.id)
            if new is not None:
                g.creator_amount, g.platform_amount, g.creator_bps = new.creator_amount, new.platform_amount, plan.bps
            g.epoch_id = epoch.id
        # platform -> creator adjustments first would need the revenue; creator -> platform first frees it
        for credit in sorted(plan.credits, key=lambda c: c.adjustment):
            post_adjustment(uow, epoch.id, credit.creator_id, credit.adjustment, now)
        for index, chunk in enumerate(plan.chunks):
            s.add(
                EpochChunk(
                    epoch_id=epoch.id,
                    chunk_index=index,
                    creators=len(chunk),
                    gross=sum(c.gross for c in chunk),
                    state="pending",
                    attempts=0,
                )
            )
            for c in chunk:
                s.add(
                    EpochCredit(
                        epoch_id=epoch.id,
                        creator_key=c.creator_key,
                        creator_id=c.creator_id,
                        chunk_index=index,
                        gross=c.gross,
                        ledger_credit=c.ledger_credit,
                        chain_credit=c.chain_credit,
                        adjustment=c.adjustment,
                    )
                )
        tree = gift_tree(self._leaf(g) for g in gifts)
        epoch.root = tree.hex_root
        epoch.bps = plan.bps
        epoch.gift_count = plan.gift_count
        epoch.gross_total = plan.gross_total
        epoch.creator_total = plan.creator_total
        epoch.rounding_total = plan.rounding_total
        epoch.chunk_count = len(plan.chunks)

    @staticmethod
    def _leaf(g: Gift) -> GiftLeaf:
        return GiftLeaf.of(
            g.id,
            _b32(g.sender_key),
            _b32(g.creator_key),
            Split(g.gross, g.creator_amount, g.platform_amount, g.creator_bps),
        )

    # -- settle -----------------------------------------------------------------------------------

    def submit_closed(self) -> int:
        """Submit the settle chunks of closed epochs, in chunk order, and re-submit chunks sent
        back to `pending` by a revert or a superseded tx; the number of epochs sent to. When the
        tx manager has no room (`TxBackpressure`), the chunks submitted so far are committed,
        the rest stay `pending` for the next step, and the backpressure is raised to the caller.
        An epoch with a `stuck` chunk waits for its alarm to be cleared. Nothing is sent while
        the vault is paused."""
        done = 0
        if self._vault.paused():
            return 0
        while True:
            with self._uow.write() as uow:
                s = uow.session
                epoch = s.scalars(
                    select(Epoch)
                    .where(
                        Epoch.state.in_([EpochState.CLOSED.value, EpochState.SUBMITTED.value]),
                        Epoch.id.in_(select(EpochChunk.epoch_id).where(EpochChunk.state == "pending")),
                        Epoch.id.not_in(select(EpochChunk.epoch_id).where(EpochChunk.state == STUCK)),
                    )
                    .order_by(Epoch.id)
                    .with_for_update()
                ).first()
                if epoch is None:
                    return done
                sent, blocked = self._submit_chunks(uow, epoch)
                if sent and epoch.state == EpochState.CLOSED.value:
                    epoch.state = transition(epoch.state, EpochState.SUBMITTED)
                uow.commit()
            if sent:
                done += 1
            if blocked is not None:
                log.info("epoch %d: %d chunk(s) submitted, the rest wait: %s", epoch.id, sent, blocked)
                raise blocked

    def _submit_chunks(self, uow: SqlUnitOfWork, epoch: Epoch) -> tuple[int, TxBackpressure | None]:
        """Submit the epoch's pending chunks in order until the tx manager is full; (sent, backpressure)."""
        s = uow.session
        assert epoch.root is not None
        chunks = s.scalars(
            select(EpochChunk)
            .where(EpochChunk.epoch_id == epoch.id, EpochChunk.state == "pending")
            .order_by(EpochChunk.chunk_index)
        ).all()
        sent = 0
        for chunk in chunks:
            credits = s.scalars(
                select(EpochCredit)
                .where(EpochCredit.epoch_id == epoch.id, EpochCredit.chunk_index == chunk.chunk_index)
                .order_by(EpochCredit.creator_key)
            ).all()
            data = self._vault.encode_call(
                "settleGifts",
                epoch.id,
                chunk.chunk_index,
                _b32(epoch.root),
                epoch.gift_count,
                epoch.gross_total,
                [_b32(c.creator_key) for c in credits],
                [c.gross for c in credits],
            )
            try:
                tx_id = self._txm.submit(
                    s,
                    purpose=PURPOSE_SETTLE,
                    ref=f"epoch:{epoch.id}:chunk:{chunk.chunk_index}:{chunk.attempts + 1}",
                    to=self.vault_address,
                    data=_b32(data),
                    gas=settle_gas(len(credits)),
                )
            except TxBackpressure as exc:
                return sent, exc  # later chunks wait: their nonces must follow this one's
            chunk.attempts += 1
            chunk.chain_tx_id = tx_id
            chunk.state = "submitted"
            sent += 1
        return sent, None

    # -- outcomes ---------------------------------------------------------------------------------

    def handle_outcomes(self) -> int:
        n = 0
        for purpose, handler in (
            (PURPOSE_SETTLE, self._on_settle),
            (PURPOSE_MINT, self._on_batch),
            (PURPOSE_BURN, self._on_batch),
            (PURPOSE_LIABILITIES, self._on_liabilities),
        ):
            with self._uow.read() as uow:
                pending = [o.tx_id for o in self._txm.outcomes(uow.session, purpose)]
            for tx_id in pending:
                with self._uow.write() as uow:
                    outcome = next((o for o in self._txm.outcomes(uow.session, purpose) if o.tx_id == tx_id), None)
                    if outcome is None:
                        continue
                    handler(uow, outcome)
                    self._txm.mark_handled(uow.session, tx_id)
                    uow.commit()
                    n += 1
        return n

    def _on_settle(self, uow: SqlUnitOfWork, o: TxOutcome) -> None:
        s = uow.session
        _, epoch_id_s, _, index_s, _ = o.ref.split(":")
        epoch_id, index = int(epoch_id_s), int(index_s)
        epoch = s.scalars(select(Epoch).where(Epoch.id == epoch_id).with_for_update()).one()
        chunk = s.get(EpochChunk, (epoch_id, index))
        assert chunk is not None
        if chunk.chain_tx_id != o.tx_id or chunk.state != "submitted":
            return  # an outcome of an older attempt
        if o.state is TxState.CONFIRMED:
            chunk.state, chunk.tx_hash, chunk.block = "confirmed", o.tx_hash, o.block_number
        else:
            onchain = self._vault.epoch(epoch_id)
            if onchain.settled and onchain.chunks_settled > index and _hex(onchain.gift_root) == epoch.root:
                # e.g. CoinVaultChunkAlreadySettled: an earlier send of this chunk is on-chain
                chunk.state = "confirmed"
                chunk.tx_hash = chunk.tx_hash or o.tx_hash
                chunk.block = chunk.block or o.block_number
                log.warning("epoch %d chunk %d: %s but the vault has it; counted as settled", epoch_id, index, o.state)
            elif self._gives_up(chunk.attempts):
                chunk.state = STUCK
                self._alarm(
                    s,
                    ALARM_SETTLE_STUCK,
                    f"epoch:{epoch_id}",
                    f"settle chunk {index} of epoch {epoch_id} failed {chunk.attempts} times "
                    f"(last: {o.state.value} {o.tx_hash or ''} {self._reason(s, o)}); stopped until this alarm "
                    "is cleared",
                )
                return
            else:
                log.warning("epoch %d chunk %d: %s; it will be sent again", epoch_id, index, o.state.value)
                chunk.state = "pending"
                chunk.chain_tx_id = None
                return
        s.flush()
        open_chunks = s.execute(
            select(func.count())
            .select_from(EpochChunk)
            .where(EpochChunk.epoch_id == epoch_id, EpochChunk.state != "confirmed")
        ).scalar_one()
        if open_chunks == 0 and epoch.state == EpochState.SUBMITTED.value:
            self._settled(uow, epoch)

    def _settled(self, uow: SqlUnitOfWork, epoch: Epoch) -> None:
        s = uow.session
        now = self._clock()
        onchain = self._vault.epoch(epoch.id)
        if onchain.bps != epoch.bps:
            # the rate was applied between close and the first chunk: the vault credited at its
            # rate, so the ledger follows it (receipts of this epoch cannot verify; alarm)
            self._alarm(
                s,
                "epoch_rate_race",
                f"epoch:{epoch.id}",
                f"epoch {epoch.id}: the vault recorded {onchain.bps} bps, the epoch closed at {epoch.bps} bps (a rate "
                "applied between close and chunk 0); the ledger is corrected to the vault, but this epoch's gift "
                "receipts do not verify",
            )
            for c in s.scalars(select(EpochCredit).where(EpochCredit.epoch_id == epoch.id)).all():
                actual = c.gross * onchain.bps // 10_000
                delta = actual - c.chain_credit
                if delta:
                    post_adjustment(uow, epoch.id, c.creator_id, delta, now, step="correct")
                    c.chain_credit, c.adjustment = actual, c.adjustment + delta
        last = s.scalars(
            select(EpochChunk).where(EpochChunk.epoch_id == epoch.id).order_by(EpochChunk.chunk_index.desc())
        ).first()
        epoch.state = transition(epoch.state, EpochState.SETTLED)
        epoch.settled_at = now
        if last is not None:
            epoch.settle_tx_hash, epoch.settled_block = last.tx_hash, last.block
        s.execute(
            update(Gift)
            .where(Gift.epoch_id == epoch.id)
            .values(status="settled")
            .execution_options(synchronize_session=False)
        )
        log.info("epoch %d settled in block %s", epoch.id, epoch.settled_block)

    # -- outbox: mint and burn batches -------------------------------------------------------------

    def _outbox_due(self) -> bool:
        with self._uow.read() as uow:
            oldest = uow.session.execute(
                select(func.min(OutboxItem.created_at)).where(
                    OutboxItem.kind.in_(["mint", "burn"]), OutboxItem.state == "pending"
                )
            ).scalar()
        if oldest is None:
            return False
        return (self._clock() - oldest).total_seconds() >= self.policy.max_age_s

    def flush_outbox(self) -> tuple[int, int]:
        """Batch every pending mint and burn row now (outside a liabilities commitment). On
        `TxBackpressure` the batches made so far are kept and the backpressure is raised."""
        with self._uow.write() as uow:
            try:
                minted = self._batch_all(uow, "mint")
                burned = self._batch_all(uow, "burn")
            except TxBackpressure:
                uow.commit()
                raise
            uow.commit()
        return minted, burned

    def _batch_all(self, uow: SqlUnitOfWork, kind: str) -> int:
        """Batch pending `kind` rows (≤ MAX_OUTBOX_BATCH per tx) until none fits; the amount."""
        total = 0
        while True:
            amount = self._batch(uow, kind)
            if not amount:
                return total
            total += amount

    def _batch(self, uow: SqlUnitOfWork, kind: str) -> int:
        """Put pending `kind` outbox rows (oldest first, ≤ MAX_OUTBOX_BATCH, as many as the vault's
        allowance takes after unmined batches) into one batch tx; the amount (0: nothing sent)."""
        s = uow.session
        if self._vault.paused():
            log.warning("vault paused: %s rows wait", kind)
            return 0
        window = self._vault.mint_allowance() if kind == "mint" else self._vault.payout_allowance()
        available = int(window.available) - unmined_spend(s, "mint" if kind == "mint" else "payout")
        candidates = list(
            s.scalars(
                select(OutboxItem)
                .where(OutboxItem.kind == kind, OutboxItem.state == "pending")
                .order_by(OutboxItem.id)
                .limit(MAX_OUTBOX_BATCH)
                .with_for_update(skip_locked=True)  # a second worker never batches the same rows
            ).all()
        )
        now = self._clock()
        rows: list[OutboxItem] = []
        amount = 0
        for r in candidates:
            if r.amount <= 0:  # nothing to move on-chain
                r.state, r.updated_at = "done", now
                continue
            if amount + r.amount > available:
                break  # in order: a later row never overtakes an earlier one
            rows.append(r)
            amount += r.amount
        if not rows:
            waiting = [r for r in candidates if r.amount > 0]
            if waiting:
                log.error(
                    "%s: the next row (%d units) exceeds the vault's allowance (%d available after unmined "
                    "batches); %d rows wait for the window to refill",
                    kind,
                    waiting[0].amount,
                    available,
                    len(waiting),
                )
            return 0
        root: str | None = None
        if kind == "mint":
            root = self._recharge_tree(s, rows).hex_root
        batch = ChainBatch(
            kind=kind,
            onchain_id=0,
            amount=amount,
            count=len(rows),
            root=root,
            state="submitted",
            created_at=now,
            updated_at=now,
        )
        s.add(batch)
        s.flush()
        batch.onchain_id = batch.id
        for r in rows:
            s.add(ChainBatchItem(outbox_id=r.id, batch_id=batch.id))
            r.state, r.updated_at = "batched", now
        if kind == "mint":
            assert root is not None
            data = self._vault.encode_call("mintForRecharges", batch.onchain_id, amount, _b32(root), len(rows))
            gas = MINT_GAS
        else:
            data = self._vault.encode_call("burnForRefunds", batch.onchain_id, amount)
            gas = BURN_GAS
        batch.chain_tx_id = self._txm.submit(
            s, purpose=kind, ref=f"{kind}:{batch.id}", to=self.vault_address, data=_b32(data), gas=gas
        )
        log.info("%s batch %d: %d rows, %d units", kind, batch.id, len(rows), amount)
        return amount

    @staticmethod
    def _recharge_tree(s: Session, rows: Sequence[OutboxItem]) -> StandardMerkleTree:
        """Leaves (paymentId, accountKey, amount): the payment id of each recharge event."""
        events = {
            e.event_id: e
            for e in s.scalars(select(PaymentEvent).where(PaymentEvent.event_id.in_([r.ref_id for r in rows]))).all()
        }
        keys = {
            a.id: a.account_key
            for a in s.scalars(select(Account).where(Account.id.in_({r.account_id for r in rows if r.account_id})))
        }
        leaves = []
        for r in rows:
            event = events.get(r.ref_id)
            payment_id = event.payment_id if event is not None else r.ref_id
            key = keys.get(r.account_id or "", _hex(bytes(32)))
            leaves.append(RechargeLeaf.of(payment_id, _b32(key), r.amount))
        return recharge_tree(leaves)

    def _on_batch(self, uow: SqlUnitOfWork, o: TxOutcome) -> None:
        s = uow.session
        batch = s.scalars(select(ChainBatch).where(ChainBatch.chain_tx_id == o.tx_id).with_for_update()).one_or_none()
        if batch is None or batch.state != "submitted":
            return
        now = self._clock()
        done = o.state is TxState.CONFIRMED
        if not done:
            done = (
                self._vault.is_minted(batch.onchain_id)
                if batch.kind == "mint"
                else self._vault.is_burned(batch.onchain_id)
            )
        items = select(ChainBatchItem.outbox_id).where(ChainBatchItem.batch_id == batch.id)
        if done:
            batch.state, batch.tx_hash = "confirmed", o.tx_hash
            s.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(items))
                .values(state="done", updated_at=now)
                .execution_options(synchronize_session=False)
            )
        else:
            log.error("%s batch %d %s; its rows go back to the queue", batch.kind, batch.id, o.state.value)
            batch.state = "failed"
            s.flush()
            failures = dict(
                s.execute(
                    select(ChainBatchItem.outbox_id, func.count())
                    .join(ChainBatch, ChainBatch.id == ChainBatchItem.batch_id)
                    .where(ChainBatchItem.outbox_id.in_(items), ChainBatch.state == "failed")
                    .group_by(ChainBatchItem.outbox_id)
                ).all()
            )
            stuck = [oid for oid, n in failures.items() if self._gives_up(int(n))]
            s.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(items))
                .values(state="pending", updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if stuck:
                s.execute(
                    update(OutboxItem)
                    .where(OutboxItem.id.in_(stuck))
                    .values(state=STUCK, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                self._alarm(
                    s,
                    ALARM_OUTBOX_STUCK.format(kind=batch.kind),
                    f"outbox:{batch.kind}",
                    f"{len(stuck)} {batch.kind} outbox row(s) failed {self.max_attempts} batches (last: batch "
                    f"{batch.id} {o.state.value} {o.tx_hash or ''} {self._reason(s, o)}); stopped until this alarm "
                    "is cleared",
                )
        batch.updated_at = now

    def _reason(self, s: Session, o: TxOutcome) -> str:
        """The revert reason of a reverted tx, for the log and alarms ("" when unknown)."""
        replay = getattr(self._txm, "revert_reason", None)
        if replay is None or o.state is not TxState.REVERTED:
            return ""
        try:
            return str(replay(s, o.tx_id) or "")
        except Exception as exc:  # a diagnosis only
            return f"(revert reason unavailable: {type(exc).__name__})"

    # -- liabilities ------------------------------------------------------------------------------

    def _due_liabilities(self) -> int | None:
        with self._uow.read() as uow:
            s = uow.session
            busy = s.execute(
                select(func.count()).select_from(Epoch).where(Epoch.liabilities_state == "submitted")
            ).scalar_one()
            if busy:
                return None
            latest = s.execute(
                select(func.max(Epoch.id)).where(
                    Epoch.state == EpochState.SETTLED.value, Epoch.liabilities_state == "none"
                )
            ).scalar()
        return int(latest) if latest is not None else None

    def commit_liabilities(self) -> int | None:
        """In one snapshot: batch the outbox, build the Merkle-sum tree of all balances, submit it.

        Mint rows still not batched (vault paused, allowance short, tx manager full) are left out
        of their accounts' leaves, as in-flight payouts are. A total above the projected reserve
        is never committed: the commitment waits (alarm `liabilities_unbacked`) and is retried
        by a later step."""
        epoch_id = self._due_liabilities()
        if epoch_id is None:
            return None
        with self._snapshot() as uow:
            s = uow.session
            epoch = s.scalars(select(Epoch).where(Epoch.id == epoch_id).with_for_update()).one()
            if epoch.liabilities_state != "none":
                return None
            newest = s.execute(
                select(func.max(Epoch.id)).where(Epoch.liabilities_state.in_(["submitted", "committed"]))
            ).scalar()
            if newest is not None and epoch_id <= newest:  # the vault only accepts increasing ids
                epoch.liabilities_state = "skipped"
                uow.commit()
                return None
            try:
                self._batch_all(uow, "mint")
                self._batch_all(uow, "burn")
            except TxBackpressure:
                uow.commit()  # keep the batches made; the commitment follows in a later step
                raise
            balances = self.balances(uow, exclude_unminted=True)
            tree = MerkleSumTree.of({_b32(k): v for k, (_, v) in balances.items()})
            projected = self._projected_reserve(s)
            if tree.total > projected:
                self._alarm(
                    s,
                    ALARM_LIABILITIES_UNBACKED,
                    "liabilities",
                    f"liabilities {tree.total} exceed the projected reserve {projected} at epoch {epoch_id}: "
                    "not committed (a mint reverted or waits, or tokens left the vault outside the ledger); "
                    "retried every step",
                )
                uow.commit()
                return None
            data = self._vault.encode_call("commitLiabilities", epoch_id, tree.root, tree.total)
            try:
                tx_id = self._txm.submit(
                    s,
                    purpose=PURPOSE_LIABILITIES,
                    ref=f"liabilities:{epoch_id}:{epoch.liabilities_attempts + 1}",
                    to=self.vault_address,
                    data=_b32(data),
                    gas=COMMIT_GAS,
                )
            except TxBackpressure:
                uow.commit()  # the batches stay; nothing of the commitment was written
                raise
            s.execute(delete(LiabilityLeaf).where(LiabilityLeaf.epoch_id == epoch_id))
            for key, (label, balance) in balances.items():
                s.add(
                    LiabilityLeaf(
                        epoch_id=epoch_id,
                        account_key=key,
                        label=label,
                        balance=balance,
                        position=tree.index_of(_b32(key)),
                    )
                )
            epoch.liabilities_attempts += 1
            epoch.liabilities_root, epoch.liabilities_total = _hex(tree.root), tree.total
            epoch.liabilities_state = "submitted"
            epoch.liabilities_tx_id = tx_id
            # older settled epochs without a commitment are covered by this one (ids only increase)
            s.execute(
                update(Epoch)
                .where(
                    Epoch.id < epoch_id,
                    Epoch.state == EpochState.SETTLED.value,
                    Epoch.liabilities_state == "none",
                )
                .values(liabilities_state="skipped")
                .execution_options(synchronize_session=False)
            )
            store = DepositStore(s)
            for alarm in store.open_alarms("liabilities", ALARM_LIABILITIES_UNBACKED):
                store.clear_alarm(alarm.id, self._clock())  # the condition is gone
                log.warning("liabilities are backed again at epoch %d: alarm %d cleared", epoch_id, alarm.id)
            uow.commit()
        log.info("liabilities of epoch %d submitted: %d accounts, total %d", epoch_id, len(balances), tree.total)
        return epoch_id

    @contextmanager
    def _snapshot(self) -> Iterator[SqlUnitOfWork]:
        """A write unit of work whose reads all see one snapshot (REPEATABLE READ on PostgreSQL;
        SQLite's writer already holds the database lock)."""
        with self._uow.write() as uow:
            s = uow.session
            if s.get_bind().dialect.name == "postgresql":
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield uow

    @staticmethod
    def balances(uow: SqlUnitOfWork, *, exclude_unminted: bool = False) -> dict[str, tuple[str, int]]:
        """account key -> (label, in-app balance): coins + earnings + held - held in submitted payouts,
        the platform's revenue, and deposits waiting in suspense. Deliberately excluded: debt (a
        receivable, not a liability). With `exclude_unminted` (the commitment), an account's
        recharges whose mint is not batched yet are left out too (at most down to 0: coins already
        spent stay in the tree, and the reserve check decides)."""
        s = uow.session
        unminted: dict[str, int] = {}
        if exclude_unminted:
            unminted = {
                str(aid): int(total)
                for aid, total in s.execute(
                    select(OutboxItem.account_id, func.sum(OutboxItem.amount))
                    .where(
                        OutboxItem.kind == "mint",
                        OutboxItem.state.in_(["pending", STUCK]),
                        OutboxItem.account_id.is_not(None),
                    )
                    .group_by(OutboxItem.account_id)
                ).all()
            }
        unfolded = uow.ledger.unfolded_sums()
        in_flight: dict[str, int] = {
            cid: int(total)
            for cid, total in s.execute(
                select(Withdrawal.creator_id, func.sum(Withdrawal.amount))
                .where(Withdrawal.state == "submitted")
                .group_by(Withdrawal.creator_id)
            ).all()
        }
        out: dict[str, tuple[str, int]] = {}
        for a in s.scalars(select(Account)).all():
            earnings = a.earnings + unfolded.get(lg.earnings(a.id), 0)
            balance = a.coins + earnings + a.held - in_flight.get(a.id, 0)
            balance -= min(max(balance, 0), unminted.get(a.id, 0))
            out[a.account_key.lower()] = (a.id, balance)
        out[_hex(PLATFORM_KEY)] = (PLATFORM_ACCOUNT_ID, uow.ledger.system_balance(lg.PLATFORM_REVENUE))
        suspense = suspense_balance(s)
        if suspense:
            out[_hex(SUSPENSE_KEY)] = (SUSPENSE, suspense)
        return out

    def _projected_reserve(self, s: Session) -> int:
        """The vault's balance once every unmined mint, burn and payout tx has executed."""
        reserve = self._vault.reserve()
        unmined = [TxState.SIGNED.value, TxState.BROADCAST.value]
        for kind, sign in (("mint", 1), ("burn", -1)):
            total = s.execute(
                select(func.coalesce(func.sum(ChainBatch.amount), 0))
                .join(ChainTx, ChainTx.id == ChainBatch.chain_tx_id)
                .where(ChainBatch.kind == kind, ChainBatch.state == "submitted", ChainTx.state.in_(unmined))
            ).scalar_one()
            reserve += sign * int(total)
        paying = s.execute(
            select(func.coalesce(func.sum(Withdrawal.amount), 0))
            .join(ChainTx, ChainTx.id == Withdrawal.chain_tx_id)
            .where(Withdrawal.state == "submitted", ChainTx.state.in_(unmined))
        ).scalar_one()
        return reserve - int(paying)

    def _on_liabilities(self, uow: SqlUnitOfWork, o: TxOutcome) -> None:
        s = uow.session
        epoch = s.scalars(select(Epoch).where(Epoch.liabilities_tx_id == o.tx_id).with_for_update()).one_or_none()
        if epoch is None or epoch.liabilities_state != "submitted":
            return
        committed = self._vault.liabilities(epoch.id)
        if o.state is TxState.CONFIRMED or (
            committed.committed_at != 0 and _hex(committed.root) == epoch.liabilities_root
        ):
            epoch.liabilities_state = "committed"
            epoch.liabilities_tx_hash = o.tx_hash if o.state is TxState.CONFIRMED else epoch.liabilities_tx_hash
            epoch.liabilities_committed_at = self._clock()
            try:
                # at the commitment's own block: later burns and payouts are covered by later commitments
                at = o.block_number if o.state is TxState.CONFIRMED and o.block_number is not None else "latest"
                epoch.liabilities_solvent = self._vault.solvent(at)
            except ChainError:
                epoch.liabilities_solvent = None
            if epoch.liabilities_solvent is False:
                log.error("vault reports NOT solvent after the liabilities of epoch %d", epoch.id)
            return
        latest = self._vault.latest_liabilities()
        if latest.committed_at != 0 and latest.epoch_id >= epoch.id:
            log.warning("liabilities of epoch %d: %s; a later commitment exists, skipped", epoch.id, o.state.value)
            epoch.liabilities_state = "skipped"
            return
        if self._gives_up(epoch.liabilities_attempts):
            epoch.liabilities_state = STUCK
            self._alarm(
                s,
                ALARM_LIABILITIES_STUCK,
                f"epoch:{epoch.id}",
                f"liabilities commitment of epoch {epoch.id} failed {epoch.liabilities_attempts} times (last: "
                f"{o.state.value} {o.tx_hash or ''} {self._reason(s, o)}); stopped until this alarm is cleared "
                "(a newer settled epoch is committed meanwhile)",
            )
            return
        log.warning("liabilities of epoch %d: %s; will be rebuilt and sent again", epoch.id, o.state.value)
        epoch.liabilities_state = "none"
        epoch.liabilities_tx_id = None

    # -- reads for the API ------------------------------------------------------------------------

    def get(self, epoch_id: int) -> EpochView:
        with self._uow.read() as uow:
            row = uow.session.get(Epoch, epoch_id)
            if row is None:
                raise NotFound(f"epoch {epoch_id} not found")
            chunks = uow.session.scalars(
                select(EpochChunk).where(EpochChunk.epoch_id == epoch_id).order_by(EpochChunk.chunk_index)
            ).all()
            return _epoch_view(row, chunks)

    def list(self, *, limit: int = 50, cursor: str | None = None) -> EpochPage:
        """Newest first; `cursor` is the last id of the previous page."""
        limit = validate_limit(limit)
        q = select(Epoch).where(Epoch.state != EpochState.OPEN.value).order_by(Epoch.id.desc()).limit(limit)
        if cursor is not None:
            if not cursor.isdigit():
                raise InvalidInput("cursor must be the next_cursor of a previous page")
            q = q.where(Epoch.id < int(cursor))
        with self._uow.read() as uow:
            items = [_epoch_view(r) for r in uow.session.scalars(q).all()]
        return EpochPage(items, str(items[-1].id) if len(items) == limit else None)

    def split(self) -> SplitInfo:
        return self._rate.split()

    def gift_proof(self, gift_id: str, *, with_sender: bool = False) -> dict[str, Any]:
        """The `tokenbridge-gift-receipt/v1` document of a gift of a settled epoch."""
        from tokenbridge.services.verify import build_gift_receipt

        with self._uow.read() as uow:
            s = uow.session
            gift = s.get(Gift, gift_id)
            if gift is None:
                raise NotFound(f"gift {gift_id} not found")
            if gift.epoch_id is None or gift.status != "settled":
                raise NotFound(f"gift {gift_id} is not settled yet")
            epoch = s.get(Epoch, gift.epoch_id)
            assert epoch is not None
            assert epoch.bps is not None
            tree = self._gift_trees.get(epoch.id)
            if tree is None:
                gifts = s.scalars(select(Gift).where(Gift.epoch_id == gift.epoch_id)).all()
                tree = gift_tree(self._leaf(g) for g in gifts)
                if tree.hex_root != epoch.root:
                    raise ChainError(f"epoch {epoch.id}: rebuilt gift root differs from the stored root")
                _remember(self._gift_trees, epoch.id, tree)
            sender: tuple[str, bytes] | None = None
            if with_sender:
                account = s.get(Account, gift.sender_id)
                assert account is not None
                sender = (account.id, account.salt)
            return build_gift_receipt(
                tree,
                self._leaf(gift),
                gift_id=gift.id,
                epoch_id=epoch.id,
                creator_bps=epoch.bps,
                chain_id=self.chain_id,
                vault=self.vault_address,
                sender=sender,
            )

    def balance_proof(self, account_id: str) -> dict[str, Any]:
        """The `tokenbridge-balance-proof/v1` document of an account in the latest committed liabilities."""
        from tokenbridge.services.verify import build_balance_proof

        with self._uow.read() as uow:
            s = uow.session
            account = s.get(Account, account_id)
            if account is None:
                raise NotFound(f"account {account_id} not found")
            epoch = s.scalars(
                select(Epoch).where(Epoch.liabilities_state == "committed").order_by(Epoch.id.desc())
            ).first()
            if epoch is None:
                raise NotFound("no liabilities commitment yet")
            own = s.get(LiabilityLeaf, (epoch.id, account.account_key.lower()))
            if own is None or own.label != account_id:
                raise NotFound(f"account {account_id} is not in the liabilities of epoch {epoch.id} (opened later)")
            tree = self._liability_trees.get(epoch.id)
            if tree is None:
                leaves = s.scalars(select(LiabilityLeaf).where(LiabilityLeaf.epoch_id == epoch.id)).all()
                tree = MerkleSumTree.of({_b32(leaf.account_key): leaf.balance for leaf in leaves})
                if _hex(tree.root) != epoch.liabilities_root:
                    raise ChainError(f"epoch {epoch.id}: rebuilt liabilities root differs from the stored root")
                _remember(self._liability_trees, epoch.id, tree)
            return build_balance_proof(
                tree,
                account_id=account.id,
                salt=account.salt,
                epoch_id=epoch.id,
                chain_id=self.chain_id,
                vault=self.vault_address,
            )

    def reserve(self) -> ReserveView:
        """The vault's balance against its latest liabilities commitment (read from the chain)."""
        latest = self._vault.latest_liabilities()
        committed = latest.committed_at != 0
        return ReserveView(
            reserve=self._vault.reserve(),
            liabilities_epoch=latest.epoch_id if committed else None,
            liabilities_root=_hex(latest.root) if committed else None,
            liabilities_total=latest.total if committed else None,
            committed_at=latest.committed_at if committed else None,
            solvent=self._vault.solvent(),
        )


_CACHED_TREES = 8


def _remember(cache: dict[int, Any], key: int, value: Any) -> None:
    if len(cache) >= _CACHED_TREES:
        cache.pop(next(iter(cache)))
    cache[key] = value
