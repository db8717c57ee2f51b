"""Wallet links and withdrawals: EIP-712 checks, the hold, batched payouts, outcomes.

Request (`request`), one DB transaction under the creator's row lock (SQL in
`adapters/db/withdrawal_ledger.py`): the signature (EIP-712 `Withdrawal` from the linked wallet,
domain bound to this chain and vault), the deadline, the minimum, the daily cap, `withdrawable =
matured on-chain - paid on-chain - held`, then the hold (earnings -> held), its outbox `payout`
row, and the withdrawal row with its on-chain payout id `seq`. Replaying the same request
returns the first result; another body under the same id is a 409. The on-chain figures come
from `ChainCreditCache` (a snapshot per creator, at most 15 s old, corrected by the payouts
booked since; a refusal it causes is re-checked against the chain): no RPC per request.

Worker (`step`): outcomes of payout txs first (confirmed -> hold posted, state confirmed
with the tx hash; reverted because of the vault's payout allowance or its pause -> back to
the queue (temporary); any other revert of a single-item batch fails for good: hold voided,
funds back; a multi-item batch goes back to the queue item by item, each then paid in its
own batch so one bad item cannot fail the others; superseded -> back to the queue), then the
queue: `requested` withdrawals (oldest first, at most `max_batch`: TOKENBRIDGE_WITHDRAWAL_MAX_BATCH,
capped by `max_payout_batch()`) that fit in the vault's payout allowance *minus the payouts
submitted but not yet mined*, in one `payout` tx, state -> submitted in the same DB transaction.
An outcome is booked set-based: every hold of the tx posted or voided with one statement per
table, each creator locked once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from typing import Any, Protocol, cast

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tokenbridge.adapters.chain.txmanager import TxBackpressure, TxOutcome
from tokenbridge.adapters.db.models import Account as AccountRow
from tokenbridge.adapters.db.models import OutboxItem
from tokenbridge.adapters.db.models_settlement import SettlementCounter, WalletLink
from tokenbridge.adapters.db.models_settlement import Withdrawal as WithdrawalRow
from tokenbridge.adapters.db.models_tx import ChainTx, ChainTxAttempt
from tokenbridge.adapters.db.uow import SqlUnitOfWork, UnitOfWorkFactory
from tokenbridge.adapters.db.withdrawal_ledger import HoldFinish, NewWithdrawal, WithdrawalLedger, WithdrawalUpdate
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.accounts import validate_id
from tokenbridge.domain.epoch import EpochPolicy
from tokenbridge.domain.errors import (
    BelowMinimumWithdrawal,
    Conflict,
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
    EIP712_NAME,
    EIP712_VERSION,
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


@dataclass(frozen=True, slots=True)
class _Request:
    """A request after input validation."""

    id: str
    creator_id: str
    to: str
    amount: int
    deadline: int
    signature: str
    request_hash: str


@dataclass(slots=True)
class PayoutReport:
    submitted: int = 0
    confirmed: int = 0
    failed: int = 0
    requeued: int = 0
    waiting: str | None = None


@dataclass(frozen=True, slots=True)
class CreditSnapshot:
    """A creator's on-chain credit as read at `fetched_at` (monotonic seconds), with the creator's
    booked payout total (`creator_payout_totals.posted`) read from the database *before* the chain."""

    key: bytes
    matured: int
    paid: int
    posted: int
    fetched_at: float


class ChainCreditCache:
    """The vault's `matured` and `paidOut` per creator, so a withdrawal request makes no RPC.

    Why a snapshot stays safe to use (docs/settlement.md, "Request"):

    * `matured` only grows, with time and with new settlements (a void takes unmatured credit only);
      the one exception is the admin raising `payoutDelay`. An old value is therefore a lower bound,
      except after such a raise, which `ttl_s` bounds (and the vault itself refuses a payout above
      matured - paid, so at worst such a withdrawal fails and its hold is voided).
    * `paidOut` grows with our payouts. Each one is a hold that is either still reserved (counted in
      `held`) or was booked as posted. Booking adds to the creator's `posted` total in the database,
      read before the chain, so `paid + (posted now - posted then)` is never below the chain's
      `paidOut` now (a payout mined before the chain read and booked after the marker read is
      counted twice: lower, never higher).
    * A refusal based on a snapshot from before this request is re-checked once with a fresh read,
      so newly matured earnings are never refused because of the cache.

    Entries expire after `ttl_s`; at most `max_entries` creators are kept (the oldest go first).
    Thread-safe (the API runs requests in a thread pool).
    """

    def __init__(
        self,
        read: Callable[[bytes], tuple[int, int]],
        *,
        ttl_s: float = 15.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 0 or max_entries < 1:
            raise InvalidInput("ttl_s >= 0 and max_entries >= 1")
        self._read = read
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, CreditSnapshot] = {}
        self._lock = threading.Lock()

    def get(self, creator_id: str) -> CreditSnapshot | None:
        """The snapshot of `creator_id` if it is younger than `ttl_s`."""
        entry = self._entries.get(creator_id)
        if entry is None or self._clock() - entry.fetched_at > self.ttl_s:
            return None
        return entry

    def refresh(self, creator_id: str, key: bytes, posted: int) -> CreditSnapshot:
        """Read the chain now (the caller read `posted` from the database just before) and keep it."""
        fetched_at = self._clock()
        matured, paid = self._read(key)
        entry = CreditSnapshot(key, matured, paid, posted, fetched_at)
        with self._lock:
            self._entries.pop(creator_id, None)  # re-insert: dict order = fetch order
            self._entries[creator_id] = entry
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]
        return entry

    def invalidate(self, creator_id: str | None = None) -> None:
        with self._lock:
            if creator_id is None:
                self._entries.clear()
            else:
                self._entries.pop(creator_id, None)

    def __len__(self) -> int:
        return len(self._entries)


class _StaleCredit(Exception):
    """A request was refused on a cached snapshot: read the chain again and re-check once."""


def _chain_reader(vault: Any) -> Callable[[bytes], tuple[int, int]]:
    """One `creditOf` call when the vault client has it, else the two views."""
    both = getattr(vault, "matured_and_paid", None)
    if both is not None:
        return both  # type: ignore[no-any-return]
    return lambda key: (int(vault.matured(key)), int(vault.paid_out(key)))


# what the worker reads of queued and submitted withdrawals (plain rows, no ORM objects)
_QUEUE_COLUMNS = (
    WithdrawalRow.id,
    WithdrawalRow.seq,
    WithdrawalRow.creator_key,
    WithdrawalRow.to_address,
    WithdrawalRow.amount,
    WithdrawalRow.hold_id,
    WithdrawalRow.attempts,
    WithdrawalRow.failure_reason,
)
_OUTCOME_COLUMNS = (
    WithdrawalRow.id,
    WithdrawalRow.seq,
    WithdrawalRow.creator_id,
    WithdrawalRow.hold_id,
    WithdrawalRow.amount,
    WithdrawalRow.state,
    WithdrawalRow.attempts,
    WithdrawalRow.chain_tx_id,
    WithdrawalRow.tx_hash,
    WithdrawalRow.block,
    WithdrawalRow.failure_reason,
)


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


_DOMAIN_TYPEHASH = bytes(
    keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
)
_WITHDRAWAL_TYPEHASH = bytes(
    keccak(text="Withdrawal(string id,bytes32 creatorKey,address to,uint256 amount,uint256 deadline)")
)


@lru_cache(maxsize=16)
def _domain_separator(chain_id: int, vault: str) -> bytes:
    return bytes(
        keccak(
            _DOMAIN_TYPEHASH
            + bytes(keccak(text=EIP712_NAME))
            + bytes(keccak(text=EIP712_VERSION))
            + chain_id.to_bytes(32, "big")
            + bytes.fromhex(vault[2:]).rjust(32, b"\0")
        )
    )


def recover_withdrawal_signer(msg: WithdrawalMessage, chain_id: int, vault: str, signature: str) -> tuple[str, str]:
    """`recover_signer` for a `Withdrawal`, hashed directly (the same EIP-712 digest as
    `encode_typed_data` of `msg.typed_data(chain_id, vault)`, with the domain separator computed
    once per vault; the request path's share of CPU), recovered by eth-account as before."""
    key = bytes.fromhex(msg.creator_key[2:])
    to = bytes.fromhex(msg.to[2:])
    if len(key) != 32 or len(to) != 20 or not 0 <= msg.amount < 2**256 or not 0 <= msg.deadline < 2**256:
        raise InvalidInput("malformed withdrawal message")
    struct_hash = bytes(
        keccak(
            _WITHDRAWAL_TYPEHASH
            + bytes(keccak(text=msg.id))
            + key
            + to.rjust(32, b"\0")
            + msg.amount.to_bytes(32, "big")
            + msg.deadline.to_bytes(32, "big")
        )
    )
    message = SignableMessage(b"\x01", _domain_separator(chain_id, vault), struct_hash)
    digest = "0x" + bytes(keccak(b"\x19\x01" + message.header + message.body)).hex()
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
        credit_cache: ChainCreditCache | None = None,
    ) -> None:
        if max_attempts < 1:
            raise InvalidInput("max_attempts must be >= 1")
        if max_batch is not None and max_batch < 1:
            raise InvalidInput("max_batch must be >= 1")
        self._uow = uow
        self._txm = txm
        self._vault = vault
        self.chain_id = chain_id
        self.min_amount = validate_amount(min_amount, "minimum withdrawal")
        self.daily_cap = validate_amount(daily_cap, "daily withdrawal cap")
        self._clock = clock
        self.max_batch = min(max_batch or max_payout_batch(), max_payout_batch())
        self.max_attempts = max_attempts
        self.credits = credit_cache if credit_cache is not None else ChainCreditCache(_chain_reader(vault))
        self._vault_address = to_checksum_address(vault.address)

    @property
    def vault_address(self) -> str:
        return self._vault_address

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
        """Check and place a withdrawal (see the module doc); (view, created).

        One write transaction of three statements on PostgreSQL (lock, context, place) plus COMMIT;
        the vault's figures come from `self.credits` (no RPC unless the snapshot is missing or old,
        or a refusal must be re-checked against the chain)."""
        withdrawal_id = validate_id(cmd.id, "withdrawal id")
        creator_id = validate_id(cmd.creator_id, "creator id")
        to = to_checksum_address(validate_address(cmd.to, "to"))
        amount = validate_amount(cmd.amount)
        deadline = validate_deadline(cmd.deadline)
        signature = validate_signature(cmd.signature)
        req_hash = lg.request_hash(
            {"creator": creator_id, "to": to, "amount": amount, "deadline": deadline, "signature": signature}
        )
        w = _Request(withdrawal_id, creator_id, to, amount, deadline, signature, req_hash)
        # No chain read up front: a replay, an expired deadline, a bad signature ... answer from the
        # database even with the node down. Without a snapshot, `_request_once` raises `_StaleCredit`
        # only once it reaches the amount check, and the chain is read then.
        credit = self.credits.get(creator_id)
        fresh = False
        for _ in range(3):
            try:
                return retry_on_race(partial(self._request_once, w, credit, recheck=not fresh))
            except _StaleCredit:  # refused on an older snapshot (or none): read the chain, check again
                credit, fresh = self._refresh_credit(creator_id), True
        raise AssertionError(f"no on-chain credit snapshot for {creator_id}")  # pragma: no cover

    def _refresh_credit(self, creator_id: str) -> CreditSnapshot | None:
        """The creator's booked payout total, then the vault's figures (in that order: see
        `ChainCreditCache`); None when there is no such account (the request then says so)."""
        with self._uow.read() as uow:
            marker = WithdrawalLedger(uow.session).payout_marker(creator_id)
        if marker is None:
            return None
        key_hex, posted = marker
        return self.credits.refresh(creator_id, bytes.fromhex(key_hex[2:]), posted)

    def _request_once(
        self, w: _Request, credit: CreditSnapshot | None, *, recheck: bool
    ) -> tuple[WithdrawalView, bool]:
        now = self._clock()
        day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        with self._uow.write() as uow:
            s = uow.session
            wl = WithdrawalLedger(s)
            ctx = wl.locked_context(w.creator_id, w.id, day_start, day_start + timedelta(days=1))
            existing_hash = ctx.existing_hash if ctx is not None else self._existing_hash(s, w.id)
            if existing_hash is not None:  # a replay (or a concurrent first request won)
                lg.check_replay("withdrawal id", w.id, existing_hash, w.request_hash)
                row = s.get(WithdrawalRow, w.id)
                assert row is not None
                return _view(row), False
            check_deadline(w.deadline, int(now.timestamp()))
            if w.amount < self.min_amount:
                raise BelowMinimumWithdrawal(f"the minimum withdrawal is {self.min_amount} units, got {w.amount}")
            if ctx is None:
                raise NotFound(f"account {w.creator_id} not found")
            if ctx.kind != "creator":
                raise InvalidInput(f"account {w.creator_id} is a {ctx.kind} account; only creators withdraw")
            if ctx.wallet is None:
                raise WalletNotLinked(f"creator {w.creator_id} has no linked wallet; link one first")
            message = WithdrawalMessage(w.id, ctx.account_key, w.to, w.amount, w.deadline)
            signer, digest = recover_withdrawal_signer(message, self.chain_id, self._vault_address, w.signature)
            if signer != ctx.wallet:
                raise WrongSigner(f"the Withdrawal is signed by {signer}, not by the linked wallet {ctx.wallet}")
            if ctx.today + w.amount > self.daily_cap:
                raise WithdrawalCapExceeded(
                    f"creator {w.creator_id} withdrew {ctx.today} units today; cap {self.daily_cap}, asked {w.amount}"
                )
            if credit is None:  # the account appeared after the snapshot was attempted
                raise _StaleCredit
            earnings = ctx.earnings
            if w.amount > earnings:  # the cache is short: fold the unfolded credits into it (row locked)
                earnings += uow.ledger.fold(lg.earnings(w.creator_id))
            # paid on-chain now <= paid at the snapshot + what was booked as paid since (see ChainCreditCache)
            paid = credit.paid + max(0, ctx.posted - credit.posted)
            on_chain = withdrawable(credit.matured, paid, ctx.held)
            available = min(on_chain, earnings)
            if w.amount > available:
                if recheck and w.amount > on_chain:  # the snapshot is what refuses: read the chain again
                    raise _StaleCredit
                raise ExceedsWithdrawable(
                    f"creator {w.creator_id} can withdraw {available} units now (matured on-chain {credit.matured}, "
                    f"paid {paid}, held {ctx.held}, ledger earnings {earnings}); asked {w.amount}"
                )
            seq = wl.place(
                NewWithdrawal(
                    id=w.id,
                    creator_id=w.creator_id,
                    creator_key=ctx.account_key,
                    to=w.to,
                    amount=w.amount,
                    deadline=w.deadline,
                    signature=w.signature,
                    digest=digest,
                    signer=signer,
                    request_hash=w.request_hash,
                ),
                now,
            )
            uow.commit()
        view = WithdrawalView(
            id=w.id,
            creator_id=w.creator_id,
            to=w.to,
            amount=w.amount,
            state=WithdrawalState.REQUESTED.value,
            payout_id=seq,
            tx_hash=None,
            failure_reason=None,
            created_at=now,
            submitted_at=None,
            finished_at=None,
        )
        return view, True

    @staticmethod
    def _existing_hash(s: Session, withdrawal_id: str) -> str | None:
        return s.execute(
            select(WithdrawalRow.request_hash).where(WithdrawalRow.id == withdrawal_id)
        ).scalar_one_or_none()

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
        """Book finished payouts, then send the queue in batches. The vault's pause and payout
        allowance are read once per step (and not at all when nothing is queued): each batch
        sent in this step is then counted through `unmined_payouts`."""
        report = PayoutReport()
        self.handle_outcomes(report)
        with self._uow.read() as uow:
            if not self._queued(uow.session):
                return report
        if self._vault.paused():
            return report
        allowance = int(self._vault.payout_allowance().available)
        try:
            while self.submit_batch(report, allowance=allowance):
                pass
        except TxBackpressure as exc:
            report.waiting = str(exc)
        return report

    def submit_batch(self, report: PayoutReport | None = None, *, allowance: int | None = None) -> bool:
        """Send the oldest requested withdrawals as one payout tx; False when nothing was sent.

        `allowance`: the vault's available payout allowance as read by the caller in this step
        (None: read the vault's pause and allowance now)."""
        if allowance is None:
            if self._vault.paused():
                return False
            allowance = int(self._vault.payout_allowance().available)
        with self._uow.write() as uow:
            s = uow.session
            # the chain's allowance does not yet show payouts we signed that are not mined
            remaining = allowance - self.unmined_payouts(s)
            rows = s.execute(
                select(*_QUEUE_COLUMNS)
                .where(WithdrawalRow.state == WithdrawalState.REQUESTED.value, WithdrawalRow.amount <= remaining)
                .order_by(WithdrawalRow.seq)
                .limit(self.max_batch)
                .with_for_update()
            ).all()
            if not rows:
                if remaining < allowance or self._queued(s):
                    log.info("payout allowance: %d available, %d after unmined payouts; waiting", allowance, remaining)
                return False
            if rows[0].attempts > 0 and rows[0].failure_reason is not None:
                rows = rows[:1]  # retried after a batch revert: alone, so it cannot fail others
            else:
                rows = [r for r in rows if r.failure_reason is None] or rows[:1]
            batch: list[Any] = []
            total = 0
            for r in rows:
                if total + r.amount > remaining:
                    continue  # too large for what is left now: a later, smaller one may fit
                batch.append(r)
                total += r.amount
            if not batch:
                return False
            args = (
                [r.seq for r in batch],
                [bytes.fromhex(r.creator_key[2:]) for r in batch],
                [r.to_address for r in batch],
                [r.amount for r in batch],
            )
            encode = getattr(self._vault, "encode_payout", None)
            data = encode(*args) if encode is not None else self._vault.encode_call("payout", *args)
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
            ids = [r.id for r in batch]
            # requested -> submitted (the rows are locked and were read as requested)
            moved = s.execute(
                update(WithdrawalRow)
                .where(WithdrawalRow.id.in_(ids), WithdrawalRow.state == WithdrawalState.REQUESTED.value)
                .values(
                    state=WithdrawalState.SUBMITTED.value,
                    chain_tx_id=tx_id,
                    submitted_at=now,
                    updated_at=now,
                    attempts=WithdrawalRow.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            )
            if cast(Any, moved).rowcount != len(batch):  # pragma: no cover - the rows are locked
                raise Conflict(f"payout {ref}: {cast(Any, moved).rowcount} of {len(batch)} withdrawals still queued")
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
        """Book the outcome of every finished payout tx, each in its own transaction (set-based:
        `_on_payout`)."""
        report = report or PayoutReport()
        with self._uow.read() as uow:
            pending = self._txm.outcomes(uow.session, PURPOSE_PAYOUT)
        for outcome in pending:
            with self._uow.write() as uow:
                try:
                    # first: it locks the tx's row, so a concurrent handler waits here, then skips
                    self._txm.mark_handled(uow.session, outcome.tx_id)
                except Conflict:
                    continue  # handled meanwhile
                self._on_payout(uow, outcome, report)
                uow.commit()
        return len(pending)

    def _on_payout(self, uow: SqlUnitOfWork, o: TxOutcome, report: PayoutReport) -> None:
        """Apply one payout tx's outcome to its withdrawals, set-based: each row's new state in
        Python (the domain's state machine), then the holds posted/voided in one booking
        (`WithdrawalLedger.finish_holds`: each creator locked once) and the rows in one UPDATE."""
        s = uow.session
        rows = s.execute(
            select(*_OUTCOME_COLUMNS)
            .where(WithdrawalRow.chain_tx_id == o.tx_id, WithdrawalRow.state == WithdrawalState.SUBMITTED.value)
            .order_by(WithdrawalRow.seq)
        ).all()
        if not rows:
            return
        now = self._clock()
        reason: str | None = None
        if o.state is TxState.REVERTED:
            reason = self._revert_reason(s, o)
        temporary = reason in TEMPORARY_PAYOUT_REVERTS
        finishes: list[HoldFinish] = []
        updates: list[WithdrawalUpdate] = []
        for r in rows:
            model = WithdrawalModel(r.id, WithdrawalState(r.state))
            chain_tx_id: int | None = r.chain_tx_id
            tx_hash, block, failure = r.tx_hash, r.block, r.failure_reason
            paid = o.state is TxState.CONFIRMED or self._vault.is_paid_out(r.seq)
            if paid:
                model.confirm(o.tx_hash or "")
                if o.state is TxState.CONFIRMED:
                    tx_hash, block = o.tx_hash, o.block_number
                failure = None
                finishes.append(HoldFinish(r.hold_id, r.creator_id, r.amount, "posted"))
                report.confirmed += 1
            elif o.state is TxState.SUPERSEDED:
                model.requeue()
                chain_tx_id = None
                report.requeued += 1
            elif temporary and r.attempts < self.max_attempts:
                # the vault said "not now" (allowance used up, paused): wait in the queue
                model.requeue()
                chain_tx_id = None
                failure = f"payout {o.tx_hash} reverted ({reason}); queued again"
                log.warning("withdrawal %s: payout %s reverted (%s); queued again", r.id, o.tx_hash, reason)
                report.requeued += 1
            elif len(rows) > 1:
                model.requeue()  # find the bad item: each is retried alone
                chain_tx_id = None
                failure = f"batch payout {o.tx_hash} reverted; retrying alone"
                report.requeued += 1
            else:
                failure = f"payout transaction {o.tx_hash} reverted" + (f" ({reason})" if reason else "")
                model.fail(failure)
                tx_hash = o.tx_hash
                finishes.append(HoldFinish(r.hold_id, r.creator_id, r.amount, "voided"))
                report.failed += 1
            updates.append(
                WithdrawalUpdate(
                    id=r.id,
                    state=model.state.value,
                    chain_tx_id=chain_tx_id,
                    tx_hash=tx_hash,
                    block=block,
                    failure_reason=failure,
                    finished_at=now if model.final else None,
                )
            )
        wl = WithdrawalLedger(s)
        wl.finish_holds(finishes, now)
        wl.update_withdrawals(updates, now)

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
        max_batch=getattr(settings, "withdrawal_max_batch", None),
        max_attempts=max_attempts,
    )
    return SettlementServices(epochs, withdrawals, rate)
