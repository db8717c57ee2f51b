"""`tokenbridge reconcile`: the ledger against the chain, every difference listed.

1. Reserve (DESIGN invariant 3). The vault's token balance must equal

       liabilities (user coins + creator earnings + held + platform revenue + suspense)
     - mints not yet executed on-chain     (credited in the ledger, not yet in the vault)
     + burns not yet executed on-chain     (taken from the ledger, still in the vault)
     - payouts executed whose hold is not yet posted (left the vault, still `held`)
     + deposits seen on-chain, not yet credited

   "Executed" is asked of the vault itself (`isMinted`, `isBurned`, `isPaidOut` by the
   batch / burn / payout id the settlement tables record), so a transaction mined but not yet
   confirmed is counted where its tokens are. A confirmed batch is executed without asking.
2. Per creator (every `creator` account, by its account key): `earned(key)` on-chain against
   the on-chain credits the ledger recorded for settled chunks (`epoch_credits.chain_credit`),
   and `paidOut(key)` against the holds posted plus payouts executed but not yet posted.
3. The ledger's own checks (`LedgerService.totals()`): unbalanced transfers, negative
   balances, cached balances that differ from the legs, gifts whose sender or creator has no
   account (one difference with their count).

Nothing is corrected here: a difference is for an operator (docs/operations.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from sqlalchemy import func, select

from tokenbridge.adapters.db.models import Account, Hold, OutboxItem
from tokenbridge.adapters.db.models_deposits import DEPOSIT_SEEN, Deposit
from tokenbridge.adapters.db.models_settlement import ChainBatch, ChainBatchItem, EpochChunk, EpochCredit, Withdrawal
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.services.deposits import suspense_balance
from tokenbridge.services.ledger import LedgerService

BATCH_CONFIRMED = "confirmed"
BATCH_FAILED = "failed"
CHUNK_CONFIRMED = "confirmed"


class VaultView(Protocol):
    """The vault reads reconcile needs (a VaultClient has them all)."""

    @property
    def address(self) -> str: ...

    def reserve(self) -> int: ...

    def earned(self, creator_key: bytes) -> int: ...

    def paid_out(self, creator_key: bytes) -> int: ...

    def is_minted(self, batch_id: int) -> bool: ...

    def is_burned(self, burn_id: int) -> bool: ...

    def is_paid_out(self, payout_id: int) -> bool: ...

    def epoch(self, epoch_id: int) -> Any: ...  # has .chunks_settled


@dataclass(frozen=True, slots=True)
class Difference:
    """One disagreement: `expected` is what the ledger says the chain should show."""

    check: str  # reserve | creator.earned | creator.paid | ledger.*
    subject: str  # vault address, creator id, ledger account, transfer id
    expected: int
    actual: int
    detail: str

    @property
    def delta(self) -> int:
        return self.actual - self.expected


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    vault: str
    reserve: int
    liabilities: dict[str, int]
    in_flight: dict[str, int]
    expected_reserve: int
    creators_checked: int
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        for d, src in zip(out["differences"], self.differences, strict=True):
            d["delta"] = src.delta
        return out


def _key_bytes(key: str) -> bytes:
    return bytes.fromhex(key[2:] if key.startswith("0x") else key)


class ReconcileService:
    def __init__(self, uow: UnitOfWorkFactory, vault: VaultView) -> None:
        self._uow = uow
        self._vault = vault

    def run(self) -> ReconcileReport:
        totals = LedgerService(self._uow).totals()
        differences: list[Difference] = []
        differences += [
            Difference("ledger.unbalanced_transfer", str(t), 0, 1, "transfer whose debits differ from its credits")
            for t in totals.unbalanced_transfers
        ]
        differences += [
            Difference("ledger.negative_balance", n, 0, -1, "balance below zero on an account that may not go negative")
            for n in totals.negative_accounts
        ]
        differences += [
            Difference("ledger.cache_mismatch", n, 0, 1, "cached balance differs from the sum of its legs")
            for n in totals.cache_mismatches
        ]
        if totals.orphan_gifts:
            differences.append(
                Difference(
                    "ledger.orphan_gifts",
                    "gifts",
                    0,
                    totals.orphan_gifts,
                    "gifts whose sender or creator has no account row",
                )
            )
        with self._uow.read() as uow:
            s = uow.session
            suspense = suspense_balance(s)
            mints = self._unexecuted(s, "mint", self._vault.is_minted)
            burns = self._unexecuted(s, "burn", self._vault.is_burned)
            unposted = self._executed_unposted_payouts(s)
            seen = int(
                s.scalar(
                    select(func.coalesce(func.sum(Deposit.amount), 0)).where(
                        Deposit.state == DEPOSIT_SEEN, Deposit.vault == self._vault.address
                    )
                )
                or 0
            )
            creators = self._creators(s, unposted)
        liabilities = {
            "coins": totals.coins,
            "earnings": totals.earnings,
            "held": totals.held,
            "platform_revenue": totals.platform_revenue,
            "suspense": suspense,
        }
        in_flight = {
            "mints_not_executed": mints,
            "burns_not_executed": burns,
            "payouts_executed_not_posted": sum(unposted.values()),
            "deposits_seen_not_credited": seen,
        }
        expected = sum(liabilities.values()) - mints + burns - sum(unposted.values()) + seen
        reserve = self._vault.reserve()
        if reserve != expected:
            differences.append(
                Difference(
                    "reserve",
                    self._vault.address,
                    expected,
                    reserve,
                    f"vault holds {reserve} units; liabilities {sum(liabilities.values())} adjusted for in-flight "
                    f"items give {expected} ({'surplus' if reserve > expected else 'shortfall'} of "
                    f"{abs(reserve - expected)})",
                )
            )
        for creator_id, key, expected_earned, expected_paid in creators:
            earned = self._vault.earned(_key_bytes(key))
            if earned != expected_earned:
                differences.append(
                    Difference(
                        "creator.earned",
                        creator_id,
                        expected_earned,
                        earned,
                        f"earned({key}) on-chain vs the ledger's settled credits",
                    )
                )
            paid = self._vault.paid_out(_key_bytes(key))
            if paid != expected_paid:
                differences.append(
                    Difference(
                        "creator.paid",
                        creator_id,
                        expected_paid,
                        paid,
                        f"paidOut({key}) on-chain vs holds posted + payouts executed not yet posted",
                    )
                )
        return ReconcileReport(
            vault=self._vault.address,
            reserve=reserve,
            liabilities=liabilities,
            in_flight=in_flight,
            expected_reserve=expected,
            creators_checked=len(creators),
            differences=differences,
        )

    # -- in-flight items --------------------------------------------------------------------

    @staticmethod
    def _unexecuted(s: Any, kind: str, executed_on_chain: Any) -> int:
        """Sum of outbox items of `kind` none of whose batches has executed on-chain."""
        items = {
            int(i): int(a)
            for i, a in s.execute(select(OutboxItem.id, OutboxItem.amount).where(OutboxItem.kind == kind))
        }
        if not items:
            return 0
        batches: dict[int, tuple[int, str]] = {
            int(b.id): (int(b.onchain_id), str(b.state))
            for b in s.scalars(select(ChainBatch).where(ChainBatch.kind == kind)).all()
        }
        cache: dict[int, bool] = {}

        def executed(batch_id: int) -> bool:
            onchain_id, state = batches[batch_id]
            if state == BATCH_CONFIRMED:
                return True
            if onchain_id not in cache:
                cache[onchain_id] = bool(executed_on_chain(onchain_id))
            return cache[onchain_id]

        done: set[int] = set()
        for outbox_id, batch_id in s.execute(
            select(ChainBatchItem.outbox_id, ChainBatchItem.batch_id).where(
                ChainBatchItem.batch_id.in_(list(batches) or [-1])
            )
        ).all():
            if int(outbox_id) in items and int(outbox_id) not in done and executed(int(batch_id)):
                done.add(int(outbox_id))
        return sum(amount for i, amount in items.items() if i not in done)

    def _executed_unposted_payouts(self, s: Any) -> dict[str, int]:
        """creator id -> amount of payouts executed on-chain whose hold is still reserved."""
        out: dict[str, int] = defaultdict(int)
        rows = s.execute(
            select(Withdrawal.seq, Withdrawal.creator_id, Withdrawal.amount)
            .join(Hold, Hold.id == Withdrawal.hold_id)
            .where(Hold.state == lg.HoldState.RESERVED.value)
        ).all()
        for seq, creator_id, amount in rows:
            if self._vault.is_paid_out(int(seq)):
                out[str(creator_id)] += int(amount)
        return dict(out)

    def _creators(self, s: Any, unposted: dict[str, int]) -> list[tuple[str, str, int, int]]:
        """(creator id, key, expected earned on-chain, expected paid on-chain) for every creator."""
        chunk_state = {(int(c.epoch_id), int(c.chunk_index)): str(c.state) for c in s.scalars(select(EpochChunk)).all()}
        settled_chunks: dict[int, int] = {}

        def chunk_executed(epoch_id: int, chunk_index: int) -> bool:
            if chunk_state.get((epoch_id, chunk_index)) == CHUNK_CONFIRMED:
                return True
            if epoch_id not in settled_chunks:
                settled_chunks[epoch_id] = int(self._vault.epoch(epoch_id).chunks_settled)
            return settled_chunks[epoch_id] > chunk_index

        earned: dict[str, int] = defaultdict(int)
        for credit in s.scalars(select(EpochCredit)).all():
            if chunk_executed(int(credit.epoch_id), int(credit.chunk_index)):
                earned[str(credit.creator_id)] += int(credit.chain_credit)
        posted: dict[str, int] = {
            str(c): int(a)
            for c, a in s.execute(
                select(Hold.creator_id, func.sum(Hold.amount))
                .where(Hold.state == lg.HoldState.POSTED.value)
                .group_by(Hold.creator_id)
            ).all()
        }
        creators: Iterable[tuple[str, str]] = s.execute(
            select(Account.id, Account.account_key).where(Account.kind == "creator").order_by(Account.id)
        ).all()
        return [
            (str(cid), str(key), earned.get(str(cid), 0), posted.get(str(cid), 0) + unposted.get(str(cid), 0))
            for cid, key in creators
        ]
