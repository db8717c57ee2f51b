"""Wallet links and withdrawals: EIP-712 checks, the hold, batched payouts, outcomes.

Request (`request`), one DB transaction under the creator's row lock: the signature
(EIP-712 `Withdrawal` from the linked wallet, domain bound to this chain and vault), the
deadline, the minimum, the daily cap, `withdrawable = matured on-chain - paid on-chain -
held`, then the hold (earnings -> held), its outbox `payout` row, and the withdrawal row
with its on-chain payout id `seq`. Replaying the same request returns the first result;
another body under the same id is a 409.

Worker (`step`): outcomes of payout txs first (confirmed -> hold posted, state confirmed
with the tx hash; reverted because of the vault's payout allowance or its pause -> back to
the queue (temporary); any other revert of a single-item batch fails for good: hold voided,
funds back; a multi-item batch goes back to the queue item by item, each then paid in its
own batch so one bad item cannot fail the others; superseded -> back to the queue), then the
queue: `requested` withdrawals (oldest first, at most `max_payout_batch()`) that fit in the
vault's payout allowance *minus the payouts submitted but not yet mined*, in one `payout`
tx, state -> submitted in the same DB transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tokenbridge.adapters.chain.txmanager import TxBackpressure, TxOutcome
from tokenbridge.adapters.db.models import Account as AccountRow
from tokenbridge.adapters.db.models import Hold, OutboxItem
from tokenbridge.adapters.db.models_settlement import SettlementCounter, WalletLink
from tokenbridge.adapters.db.models_settlement import Withdrawal as WithdrawalRow
from tokenbridge.adapters.db.models_tx import ChainTx, ChainTxAttempt
from tokenbridge.adapters.db.uow import SqlUnitOfWork, UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.accounts import validate_id
from tokenbridge.domain.epoch import EpochPolicy
from tokenbridge.domain.errors import (
    BelowMinimumWithdrawal,
    ExceedsWithdrawable,
    InvalidInput,
    NotFound,
    WalletNotLinked,
    WithdrawalCapExceeded,
    WrongSigner,
)
from tokenbridge.domain.money import validate_amount
from tokenbridge.domain.txstate import TxState
from tokenbridge.domain.withdrawal import (
    WalletLinkMessage,
    WithdrawalMessage,
    WithdrawalState,
    check_deadline,
    max_payout_batch,
    payout_gas,
    validate_address,
    validate_deadline,
    validate_signature,
    withdrawable,
)
from tokenbridge.domain.withdrawal import Withdrawal as WithdrawalModel
from tokenbridge.services._common import Clock, retry_on_race, utc_clock
from tokenbridge.services.chain_rate import ChainRate
from tokenbridge.services.epochs import EpochService, TxSubmitter, unmined_spend

log = logging.getLogger(__name__)

PURPOSE_PAYOUT = "payout"
# reverts that say "not now" rather than "never": the item goes back to the queue
TEMPORARY_PAYOUT_REVERTS = frozenset({"CoinVaultPayoutAllowanceExceeded", "EnforcedPause"})
DEFAULT_MAX_ATTEMPTS = 5


class PayoutVault(Protocol):
    """The vault reads and call encoding withdrawals need (VaultClient implements it)."""

    address: str

    def encode_call(self, fn: str, *args: Any) -> str: ...

    def matured(self, creator_key: bytes) -> int: ...

    def paid_out(self, creator_key: bytes) -> int: ...

    def is_paid_out(self, payout_id: int) -> bool: ...

    def paused(self) -> bool: ...

    def payout_allowance(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class WalletLinkView:
    creator_id: str
    wallet: str
    linked_at: datetime


@dataclass(frozen=True, slots=True)
class WithdrawalView:
    id: str
    creator_id: str
    to: str
    amount: int
    state: str  # requested | submitted | confirmed | failed
    payout_id: int
    tx_hash: str | None
    failure_reason: str | None
    created_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class RequestWithdrawal:
    id: str
    creator_id: str
    to: str
    amount: int
    deadline: int
    signature: str


@dataclass(slots=True)
class PayoutReport:
    submitted: int = 0
    confirmed: int = 0
    failed: int = 0
    requeued: int = 0
    waiting: str | None = None


def _view(row: WithdrawalRow) -> WithdrawalView:
    return WithdrawalView(
        id=row.id,
        creator_id=row.creator_id,
        to=row.to_address,
        amount=row.amount,
        state=row.state,
        payout_id=row.seq,
        tx_hash=row.tx_hash,
        failure_reason=row.failure_reason,
        created_at=row.created_at,
        submitted_at=row.submitted_at,
        finished_at=row.finished_at,
    )


def _current_tx_hash(s: Session, chain_tx_id: int) -> str | None:
    tx = s.get(ChainTx, chain_tx_id)
    if tx is None:
        return None
    if tx.mined_hash:
        return tx.mined_hash
    return s.execute(
        select(ChainTxAttempt.tx_hash)
        .where(ChainTxAttempt.tx_id == chain_tx_id, ChainTxAttempt.kind == "call")
        .order_by(ChainTxAttempt.seq.desc())
        .limit(1)
    ).scalar_one_or_none()


def recover_signer(typed: dict[str, Any], signature: str) -> tuple[str, str]:
    """(checksummed signer address, 0x EIP-712 digest) of an EIP-712 signature; InvalidInput if malformed."""
    message = encode_typed_data(
        domain_data=typed["domain"], message_types=typed["types"], message_data=typed["message"]
    )
    digest = "0x" + bytes(keccak(b"\x19" + bytes(message.version) + message.header + message.body)).hex()
    try:
        signer = Account.recover_message(message, signature=signature)
    except Exception as exc:  # eth-keys raises several types for a bad (r, s, v)
        raise InvalidInput(f"signature cannot be recovered: {type(exc).__name__}") from None
    return to_checksum_address(signer), digest


def next_counter(s: Session, name: str) -> int:
    """The next value of a gap-free counter (row-locked; the first value is 1)."""
    row = s.execute(
        select(SettlementCounter).where(SettlementCounter.name == name).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        row = SettlementCounter(name=name, next_value=1)
        s.add(row)
        s.flush()
    value = row.next_value
    row.next_value = value + 1
    return value


class WithdrawalService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        txm: TxSubmitter,
        vault: PayoutVault,
        *,
        chain_id: int,
        min_amount: int,
        daily_cap: int,
        clock: Clock = utc_clock,
        max_batch: int | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        if max_attempts < 1:
            raise InvalidInput("max_attempts must be >= 1")
        self._uow = uow
        self._txm = txm
        self._vault = vault
        self.chain_id = chain_id
        self.min_amount = validate_amount(min_amount, "minimum withdrawal")
        self.daily_cap = validate_amount(daily_cap, "daily withdrawal cap")
        self._clock = clock
        self.max_batch = min(max_batch or max_payout_batch(), max_payout_batch())
        self.max_attempts = max_attempts

    @property
    def vault_address(self) -> str:
        return to_checksum_address(self._vault.address)

    # -- wallet links -----------------------------------------------------------------------------

    def link_wallet(self, creator_id: str, wallet: str, deadline: int, signature: str) -> tuple[WalletLinkView, bool]:
        """Link `wallet` to a creator with an EIP-712 WalletLink signed by that wallet.

        The same link again -> (view, False); a newer signature may move the link to another wallet.
        """
        creator_id = validate_id(creator_id, "creator id")
        wallet = to_checksum_address(validate_address(wallet, "wallet"))
        deadline = validate_deadline(deadline)
        signature = validate_signature(signature)
        now = self._clock()

        def attempt() -> tuple[WalletLinkView, bool]:
            with self._uow.write() as uow:
                s = uow.session
                creator = self._creator(uow, creator_id, lock=True)
                existing = s.get(WalletLink, creator_id)
                if existing is not None and existing.wallet == wallet and existing.signature == signature:
                    return WalletLinkView(existing.creator_id, existing.wallet, existing.linked_at), False
                check_deadline(deadline, int(now.timestamp()))
                typed = WalletLinkMessage(creator_id, creator.account_key, wallet, deadline).typed_data(
                    self.chain_id, self.vault_address
                )
                signer, _ = recover_signer(typed, signature)
                if signer != wallet:
                    raise WrongSigner(f"the WalletLink is signed by {signer}, not by the wallet {wallet}")
                if existing is None:
                    existing = WalletLink(creator_id=creator_id, wallet=wallet, deadline=deadline, signature=signature)
                    s.add(existing)
                existing.wallet, existing.deadline, existing.signature, existing.linked_at = (
                    wallet,
                    deadline,
                    signature,
                    now,
                )
                view = WalletLinkView(creator_id, wallet, now)
                uow.commit()
                return view, True

        return retry_on_race(attempt)

    def wallet_of(self, creator_id: str) -> WalletLinkView:
        with self._uow.read() as uow:
            link = uow.session.get(WalletLink, creator_id)
            if link is None:
                raise WalletNotLinked(f"creator {creator_id} has no linked wallet")
            return WalletLinkView(link.creator_id, link.wallet, link.linked_at)

    # -- requests ---------------------------------------------------------------------------------

    def withdrawable(self, creator_id: str) -> int:
        with self._uow.read() as uow:
            creator = self._creator(uow, creator_id)
            key = bytes.fromhex(creator.account_key[2:])
            held = creator.held
        return withdrawable(self._vault.matured(key), self._vault.paid_out(key), held)

    def request(self, cmd: RequestWithdrawal) -> tuple[WithdrawalView, bool]:
        """Check and place a withdrawal (see the module doc); (view, created)."""
        withdrawal_id = validate_id(cmd.id, "withdrawal id")
        creator_id = validate_id(cmd.creator_id, "creator id")
        to = to_checksum_address(validate_address(cmd.to, "to"))
        amount = validate_amount(cmd.amount)
        deadline = validate_deadline(cmd.deadline)
        signature = validate_signature(cmd.signature)
        req_hash = lg.request_hash(
            {"creator": creator_id, "to": to, "amount": amount, "deadline": deadline, "signature": signature}
        )
        replay = self._replay(withdrawal_id, req_hash)
        if replay is not None:
            return replay, False
        now = self._clock()
        check_deadline(deadline, int(now.timestamp()))
        if amount < self.min_amount:
            raise BelowMinimumWithdrawal(f"the minimum withdrawal is {self.min_amount} units, got {amount}")
        with self._uow.read() as uow:
            creator = self._creator(uow, creator_id)
            key_hex = creator.account_key
            link = uow.session.get(WalletLink, creator_id)
            if link is None:
                raise WalletNotLinked(f"creator {creator_id} has no linked wallet; link one first")
            wallet = link.wallet
        typed = WithdrawalMessage(withdrawal_id, key_hex, to, amount, deadline).typed_data(
            self.chain_id, self.vault_address
        )
        signer, digest = recover_signer(typed, signature)
        if signer != wallet:
            raise WrongSigner(f"the Withdrawal is signed by {signer}, not by the linked wallet {wallet}")
        key = bytes.fromhex(key_hex[2:])
        matured, paid = self._vault.matured(key), self._vault.paid_out(key)  # before the lock: no RPC under it

        def attempt() -> tuple[WithdrawalView, bool]:
            with self._uow.write() as uow:
                s = uow.session
                creator = self._creator(uow, creator_id, lock=True)
                existing = s.get(WithdrawalRow, withdrawal_id)
                if existing is not None:  # a concurrent first request won
                    lg.check_replay("withdrawal id", withdrawal_id, existing.request_hash, req_hash)
                    return _view(existing), False
                day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
                today = int(
                    s.execute(
                        select(func.coalesce(func.sum(WithdrawalRow.amount), 0)).where(
                            WithdrawalRow.creator_id == creator_id,
                            WithdrawalRow.created_at >= day_start,
                            WithdrawalRow.created_at < day_start + timedelta(days=1),
                            WithdrawalRow.state != WithdrawalState.FAILED.value,
                        )
                    ).scalar_one()
                )
                if today + amount > self.daily_cap:
                    raise WithdrawalCapExceeded(
                        f"creator {creator_id} withdrew {today} units today; cap {self.daily_cap}, asked {amount}"
                    )
                uow.ledger.fold(lg.earnings(creator_id))
                creator = self._creator(uow, creator_id, lock=True)
                available = min(withdrawable(matured, paid, creator.held), creator.earnings)
                if amount > available:
                    raise ExceedsWithdrawable(
                        f"creator {creator_id} can withdraw {available} units now (matured on-chain {matured}, "
                        f"paid {paid}, held {creator.held}, ledger earnings {creator.earnings}); asked {amount}"
                    )
                seq = next_counter(s, "payout_id")
                hold_id = f"withdrawal:{seq}"  # the payout id: short, unique, fits holds.id
                hold = lg.Hold(hold_id, creator_id, amount)
                uow.ledger.apply(
                    hold.reserve_posting(),
                    f"hold:{hold_id}:reserve",
                    lg.request_hash({"creator": creator_id, "amount": amount}),
                    {lg.earnings(creator_id): creator, lg.held(creator_id): creator},
                    now,
                )
                s.add(
                    Hold(
                        id=hold_id,
                        creator_id=creator_id,
                        amount=amount,
                        state=hold.state.value,
                        created_at=now,
                        updated_at=now,
                    )
                )
                uow.outbox.add("payout", amount, creator_id, hold_id, now)
                row = WithdrawalRow(
                    id=withdrawal_id,
                    seq=seq,
                    creator_id=creator_id,
                    creator_key=key_hex,
                    to_address=to,
                    amount=amount,
                    deadline=deadline,
                    signature=signature,
                    digest=digest,
                    signer=signer,
                    request_hash=req_hash,
                    state=WithdrawalState.REQUESTED.value,
                    hold_id=hold_id,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
                s.flush()
                view = _view(row)
                uow.commit()
                return view, True

        return retry_on_race(attempt)

    def _replay(self, withdrawal_id: str, req_hash: str) -> WithdrawalView | None:
        with self._uow.read() as uow:
            existing = uow.session.get(WithdrawalRow, withdrawal_id)
            if existing is None:
                return None
            lg.check_replay("withdrawal id", withdrawal_id, existing.request_hash, req_hash)
            return _view(existing)

    def get(self, withdrawal_id: str) -> WithdrawalView:
        """The withdrawal; while `submitted`, `tx_hash` is the payout tx's current attempt (the
        mined one once mined; a re-priced tx changes hash until then)."""
        with self._uow.read() as uow:
            s = uow.session
            row = s.get(WithdrawalRow, withdrawal_id)
            if row is None:
                raise NotFound(f"withdrawal {withdrawal_id} not found")
            view = _view(row)
            if row.state == WithdrawalState.SUBMITTED.value and row.chain_tx_id is not None and row.tx_hash is None:
                view = replace(view, tx_hash=_current_tx_hash(s, row.chain_tx_id))
            return view

    @staticmethod
    def _creator(uow: SqlUnitOfWork, creator_id: str, *, lock: bool = False) -> AccountRow:
        row = uow.accounts.lock(creator_id) if lock else uow.accounts.get(creator_id)
        if row is None:
            raise NotFound(f"account {creator_id} not found")
        if row.kind != "creator":
            raise InvalidInput(f"account {creator_id} is a {row.kind} account; only creators withdraw")
        return row

    # -- the worker step --------------------------------------------------------------------------

    def step(self) -> PayoutReport:
        report = PayoutReport()
        self.handle_outcomes(report)
        try:
            while self.submit_batch(report):
                pass
        except TxBackpressure as exc:
            report.waiting = str(exc)
        return report

    def submit_batch(self, report: PayoutReport | None = None) -> bool:
        """Send the oldest requested withdrawals as one payout tx; False when nothing was sent."""
        if self._vault.paused():
            return False
        allowance = int(self._vault.payout_allowance().available)
        with self._uow.write() as uow:
            s = uow.session
            # the chain's allowance does not yet show payouts we signed that are not mined
            remaining = allowance - self.unmined_payouts(s)
            rows = list(
                s.scalars(
                    select(WithdrawalRow)
                    .where(WithdrawalRow.state == WithdrawalState.REQUESTED.value, WithdrawalRow.amount <= remaining)
                    .order_by(WithdrawalRow.seq)
                    .limit(self.max_batch)
                    .with_for_update()
                ).all()
            )
            if not rows:
                if remaining < allowance or self._queued(s):
                    log.info("payout allowance: %d available, %d after unmined payouts; waiting", allowance, remaining)
                return False
            if rows[0].attempts > 0 and rows[0].failure_reason is not None:
                rows = rows[:1]  # retried after a batch revert: alone, so it cannot fail others
            else:
                rows = [r for r in rows if r.failure_reason is None] or rows[:1]
            batch: list[WithdrawalRow] = []
            total = 0
            for r in rows:
                if total + r.amount > remaining:
                    continue  # too large for what is left now: a later, smaller one may fit
                batch.append(r)
                total += r.amount
            if not batch:
                return False
            data = self._vault.encode_call(
                "payout",
                [r.seq for r in batch],
                [bytes.fromhex(r.creator_key[2:]) for r in batch],
                [r.to_address for r in batch],
                [r.amount for r in batch],
            )
            ref = f"payouts:{next_counter(s, 'payout_batch')}"
            tx_id = self._txm.submit(
                s,
                purpose=PURPOSE_PAYOUT,
                ref=ref,
                to=self.vault_address,
                data=bytes.fromhex(data[2:]),
                gas=payout_gas(len(batch)),
            )
            now = self._clock()
            for r in batch:
                model = WithdrawalModel(r.id, WithdrawalState(r.state))
                model.submit(tx_id)
                r.state, r.chain_tx_id, r.submitted_at, r.updated_at = model.state.value, tx_id, now, now
                r.attempts += 1
            s.execute(
                update(OutboxItem)
                .where(OutboxItem.kind == "payout", OutboxItem.ref_id.in_([r.hold_id for r in batch]))
                .values(state="submitted", updated_at=now)
                .execution_options(synchronize_session=False)
            )
            uow.commit()
        log.info("payout %s: %d withdrawals, %d units", ref, len(batch), total)
        if report is not None:
            report.submitted += len(batch)
        return True

    @staticmethod
    def unmined_payouts(s: Session) -> int:
        """Units of payouts (and burns: same vault window) signed or sent but not yet mined: the
        chain's `payoutAllowance().available` does not count them yet."""
        return unmined_spend(s, "payout")

    @staticmethod
    def _queued(s: Session) -> bool:
        return (
            s.execute(
                select(WithdrawalRow.id).where(WithdrawalRow.state == WithdrawalState.REQUESTED.value).limit(1)
            ).first()
            is not None
        )

    def handle_outcomes(self, report: PayoutReport | None = None) -> int:
        report = report or PayoutReport()
        with self._uow.read() as uow:
            pending = [o.tx_id for o in self._txm.outcomes(uow.session, PURPOSE_PAYOUT)]
        for tx_id in pending:
            with self._uow.write() as uow:
                outcome = next((o for o in self._txm.outcomes(uow.session, PURPOSE_PAYOUT) if o.tx_id == tx_id), None)
                if outcome is None:
                    continue
                self._on_payout(uow, outcome, report)
                self._txm.mark_handled(uow.session, tx_id)
                uow.commit()
        return len(pending)

    def _on_payout(self, uow: SqlUnitOfWork, o: TxOutcome, report: PayoutReport) -> None:
        s = uow.session
        rows = list(
            s.scalars(
                select(WithdrawalRow)
                .where(WithdrawalRow.chain_tx_id == o.tx_id, WithdrawalRow.state == WithdrawalState.SUBMITTED.value)
                .order_by(WithdrawalRow.seq)
            ).all()
        )
        now = self._clock()
        reason: str | None = None
        if o.state is TxState.REVERTED and rows:
            reason = self._revert_reason(s, o)
        temporary = reason in TEMPORARY_PAYOUT_REVERTS
        for r in rows:
            model = WithdrawalModel(r.id, WithdrawalState(r.state))
            paid = o.state is TxState.CONFIRMED or self._vault.is_paid_out(r.seq)
            if paid:
                model.confirm(o.tx_hash or "")
                r.tx_hash = o.tx_hash if o.state is TxState.CONFIRMED else r.tx_hash
                r.block = o.block_number if o.state is TxState.CONFIRMED else r.block
                r.failure_reason = None
                self._finish_hold(uow, r, lg.HoldState.POSTED, now)
                report.confirmed += 1
            elif o.state is TxState.SUPERSEDED:
                model.requeue()
                r.chain_tx_id = None
                report.requeued += 1
            elif temporary and r.attempts < self.max_attempts:
                # the vault said "not now" (allowance used up, paused): wait in the queue
                model.requeue()
                r.chain_tx_id = None
                r.failure_reason = f"payout {o.tx_hash} reverted ({reason}); queued again"
                log.warning("withdrawal %s: payout %s reverted (%s); queued again", r.id, o.tx_hash, reason)
                report.requeued += 1
            elif len(rows) > 1:
                model.requeue()  # find the bad item: each is retried alone
                r.chain_tx_id = None
                r.failure_reason = f"batch payout {o.tx_hash} reverted; retrying alone"
                report.requeued += 1
            else:
                why = f"payout transaction {o.tx_hash} reverted" + (f" ({reason})" if reason else "")
                model.fail(why)
                r.failure_reason = why
                r.tx_hash = o.tx_hash
                self._finish_hold(uow, r, lg.HoldState.VOIDED, now)
                report.failed += 1
            r.state, r.updated_at = model.state.value, now
            if model.final:
                r.finished_at = now

    def _revert_reason(self, s: Session, o: TxOutcome) -> str | None:
        """The custom error of a reverted payout (replayed at its block); "EnforcedPause" when the
        vault is paused now and the replay cannot tell."""
        reason: str | None = None
        replay = getattr(self._txm, "revert_reason", None)
        if replay is not None:
            try:
                reason = replay(s, o.tx_id)
            except Exception as exc:  # the replay is a diagnosis only; the node may be down
                log.warning("payout tx %s: revert reason unavailable (%s: %s)", o.tx_id, type(exc).__name__, exc)
        if reason is None and self._vault.paused():
            reason = "EnforcedPause"
        if reason == "EnforcedPause" and not self._vault.paused():
            # the coin's own pause reverts with the same error; only the vault's pause is ours to wait out
            reason = "EnforcedPause (CreatorCoin)"
        return reason

    @staticmethod
    def _finish_hold(uow: SqlUnitOfWork, r: WithdrawalRow, to: lg.HoldState, now: datetime) -> None:
        """Post (payout confirmed) or void (failed for good) the withdrawal's hold, in this transaction."""
        creator = uow.accounts.lock(r.creator_id)
        hold_row = uow.holds.lock(r.hold_id)
        assert creator is not None
        assert hold_row is not None
        if hold_row.state == to.value:
            return
        hold = lg.Hold(hold_row.id, hold_row.creator_id, hold_row.amount, lg.HoldState(hold_row.state))
        posting = hold.post() if to is lg.HoldState.POSTED else hold.void()
        uow.ledger.apply(
            posting,
            f"hold:{hold_row.id}:{to.value}",
            lg.request_hash({"hold": hold_row.id, "to": to.value}),
            {lg.held(creator.id): creator, lg.earnings(creator.id): creator},
            now,
        )
        hold_row.state, hold_row.updated_at = hold.state.value, now
        # flush now: the next withdrawal of the same creator in this transaction re-reads the
        # account with `Accounts.lock` (populate_existing), which would drop an unflushed change
        uow.session.flush()
        uow.session.execute(
            update(OutboxItem)
            .where(OutboxItem.kind == "payout", OutboxItem.ref_id == hold_row.id)
            .values(state="done" if to is lg.HoldState.POSTED else "voided", updated_at=now)
            .execution_options(synchronize_session=False)
        )


# --- wiring -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettlementServices:
    """What the worker steps and the API's settlement routes use (`app.state.settlement`)."""

    epochs: EpochService
    withdrawals: WithdrawalService
    rate: ChainRate


def build_settlement(settings: Any, uow: UnitOfWorkFactory, txm: TxSubmitter, vault: Any) -> SettlementServices:
    """EpochService + WithdrawalService + ChainRate from `Settings` (see docs/settlement.md, "Wiring")."""
    rate = ChainRate(vault, ttl_s=settings.chain_rate_cache_seconds)
    policy = EpochPolicy(
        max_age_s=settings.epoch_max_age_seconds,
        max_gifts=settings.epoch_max_gifts,
        rate_lead_s=settings.epoch_rate_lead_seconds,
    )
    max_attempts = int(getattr(settings, "settlement_max_attempts", DEFAULT_MAX_ATTEMPTS))
    epochs = EpochService(uow, txm, vault, rate, chain_id=settings.chain_id, policy=policy, max_attempts=max_attempts)
    withdrawals = WithdrawalService(
        uow,
        txm,
        vault,
        chain_id=settings.chain_id,
        min_amount=settings.withdrawal_min_amount,
        daily_cap=settings.withdrawal_daily_cap,
        max_attempts=max_attempts,
    )
    return SettlementServices(epochs, withdrawals, rate)
