"""The worker's transaction manager: write-ahead, gap-free nonces, pipelining, re-pricing.

Rules (docs/design/worker.md, "Transaction manager"):

* `submit` runs inside the caller's DB transaction: it takes the signer's nonce cursor under
  a row lock, signs, and stores the tx and its first attempt (the exact raw bytes). Nothing
  is broadcast before that transaction commits, so the caller's state change and the tx
  record are atomic, and a nonce is assigned exactly once.
* `tick` (lease holder only) sends stored bytes, never re-signs under a new nonce; a lost
  RPC reply just means the same bytes are sent again ("already known" is a success).
  A tx unmined after `reprice_after_s` gets a new attempt: same nonce, same content, both
  fee caps bumped; the attempt is stored before it is sent. Receipts of all attempts are
  checked, so whichever attempt was mined is recognised.
* The nonce cursor only moves up, to the chain's mined count, when another sender used the
  key; a nonce consumed on-chain (at the confirmed depth) by a transaction that is none of
  our attempts makes that tx `superseded`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from eth_utils.address import is_address, to_checksum_address
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.exceptions import Web3Exception, Web3RPCError
from web3.types import RPCEndpoint

from tokenbridge.adapters.chain.keystore import Signer
from tokenbridge.adapters.db.models_tx import ChainTx, ChainTxAttempt
from tokenbridge.adapters.db.models_tx import Signer as SignerRow
from tokenbridge.domain import txstate as ts
from tokenbridge.domain.errors import ChainError, ConfigurationError, Conflict, InvalidInput, NotFound
from tokenbridge.domain.txstate import Fees, TxState
from tokenbridge.services.lease import LeaderLease

log = logging.getLogger(__name__)

GWEI = 10**9
CALL, CANCEL = "call", "cancel"  # attempt kinds
MAX_GAS = 2**24  # EIP-7825 per-transaction gas cap


class TxBackpressure(Conflict):
    """`max_in_flight` transactions of this signer are unmined; submit again later."""

    code = "tx-backpressure"
    title = "Too many transactions in flight"


class LeaseNotHeld(Conflict):
    """A fenced manager may only submit while its own lease on the signer is live."""

    code = "lease-not-held"
    title = "This worker does not hold the signer's lease"


class DuplicateTx(Conflict):
    code = "duplicate-tx"
    title = "A chain transaction with this purpose and ref exists"


class _UowFactory(Protocol):
    def write(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class AttemptView:
    seq: int
    kind: str  # call | cancel
    tx_hash: str
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    broadcasts: int
    created_at: datetime
    first_broadcast_at: datetime | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class TxView:
    id: int
    signer: str
    nonce: int
    purpose: str
    ref: str
    to: str
    data: bytes
    value: int
    gas: int
    state: TxState
    mined_hash: str | None
    mined_block: int | None
    mined_block_hash: str | None
    receipt_status: int | None
    last_error: str | None
    handled: bool
    attempts: tuple[AttemptView, ...]


@dataclass(frozen=True, slots=True)
class TxOutcome:
    """A final tx (confirmed | reverted | superseded) the caller has not handled yet."""

    tx_id: int
    purpose: str
    ref: str
    state: TxState
    nonce: int
    tx_hash: str | None
    block_number: int | None
    gas_used: int | None


@dataclass(slots=True)
class TickReport:
    leader: bool = True
    sent: int = 0  # broadcasts the node accepted (first sends and rebroadcasts of stored bytes)
    repriced: int = 0
    mined: int = 0
    confirmed: int = 0
    reverted: int = 0
    superseded: int = 0
    reorged: int = 0
    cancelled: int = 0  # cancel attempts written (stored bytes refused for good, or `cancel()`)
    in_flight: int = 0
    cursor_raised_to: int | None = None
    errors: list[str] = field(default_factory=list)


def _view(row: ChainTx) -> TxView:
    return TxView(
        id=row.id,
        signer=row.signer,
        nonce=row.nonce,
        purpose=row.purpose,
        ref=row.ref,
        to=row.to_address,
        data=row.data,
        value=row.value,
        gas=row.gas,
        state=TxState(row.state),
        mined_hash=row.mined_hash,
        mined_block=row.mined_block,
        mined_block_hash=row.mined_block_hash,
        receipt_status=row.receipt_status,
        last_error=row.last_error,
        handled=row.handled_at is not None,
        attempts=tuple(
            AttemptView(
                seq=a.seq,
                kind=a.kind,
                tx_hash=a.tx_hash,
                max_fee_per_gas=a.max_fee_per_gas,
                max_priority_fee_per_gas=a.max_priority_fee_per_gas,
                broadcasts=a.broadcasts,
                created_at=a.created_at,
                first_broadcast_at=a.first_broadcast_at,
                raw=a.raw,
            )
            for a in sorted(row.attempts, key=lambda a: a.seq)
        ),
    )


# --- the chain, as the manager sees it ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Receipt:
    tx_hash: str
    block_number: int
    block_hash: str
    status: int
    gas_used: int
    effective_gas_price: int


class _Chain:
    """The few RPC calls the manager makes, returning plain values (web3 stays in here)."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3

    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def head(self) -> int:
        return int(self.w3.eth.block_number)

    def nonce_at(self, address: str, block: int | str) -> int:
        return int(self.w3.eth.get_transaction_count(cast(Any, address), cast(Any, block)))

    def base_fee(self) -> int:
        block = self.w3.eth.get_block("latest")
        return int(block.get("baseFeePerGas", 0) or 0)

    def receipt(self, tx_hash: str) -> _Receipt | None:
        """The few receipt fields the manager reads, from the raw JSON-RPC answer: a payout's
        receipt carries one log per wallet paid, and web3's result formatters spent ~0.1 s of
        CPU on a 400-item one, on every tick until it was final."""
        response = self.w3.provider.make_request(RPCEndpoint("eth_getTransactionReceipt"), [tx_hash])
        if "error" in response:
            raise Web3RPCError(str(response["error"]), rpc_response=response)
        r = response.get("result")
        if not r or r.get("blockNumber") is None:
            return None
        return _Receipt(
            tx_hash=tx_hash,
            block_number=int(r["blockNumber"], 16),
            block_hash=str(r["blockHash"]).lower(),
            status=int(r["status"], 16),
            gas_used=int(r["gasUsed"], 16),
            effective_gas_price=int(r.get("effectiveGasPrice") or "0x0", 16),
        )

    def send_raw(self, raw: bytes) -> None:
        self.w3.eth.send_raw_transaction(raw)


def _rpc_message(exc: BaseException) -> str:
    if isinstance(exc, Web3RPCError):
        response = exc.rpc_response or {}
        error = response.get("error") if isinstance(response, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        return str(exc.message)
    return f"{type(exc).__name__}: {exc}"


# --- the manager ----------------------------------------------------------------------------


class TxManager:
    def __init__(
        self,
        sessions: sessionmaker[Session] | _UowFactory,
        w3: Web3,
        signer: Signer,
        *,
        chain_id: int,
        confirmations: int = 2,
        reprice_after_s: float = 60.0,
        fee_bump_pct: int = 12,
        max_in_flight: int = 16,
        max_fee_per_gas: int = 500 * GWEI,
        priority_fee_per_gas: int = 1 * GWEI,
        lease_holder: str | None = None,
        lease_ttl_s: float = 30.0,
        clock: Callable[[], datetime] | None = None,
        fence: bool = False,
    ) -> None:
        if confirmations < 0 or max_in_flight < 1 or fee_bump_pct < 1 or reprice_after_s <= 0:
            raise InvalidInput("confirmations >= 0, max_in_flight >= 1, fee_bump_pct >= 1, reprice_after_s > 0")
        if isinstance(sessions, sessionmaker):
            self._maker: sessionmaker[Session] | None = sessions
            self._uows: _UowFactory | None = None
        else:
            self._maker, self._uows = None, sessions
        self._chain = _Chain(w3)
        self.signer = signer
        self.address = to_checksum_address(signer.address)
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.reprice_after = timedelta(seconds=reprice_after_s)
        self.fee_bump_pct = fee_bump_pct
        self.max_in_flight = max_in_flight
        self.max_fee_per_gas = max_fee_per_gas
        self.priority_fee_per_gas = priority_fee_per_gas
        # fenced: `submit` refuses unless this manager's lease is live (the worker; a paused
        # ex-leader cannot write work built from stale reads). Unfenced managers may queue work.
        self.fence = fence
        self._clock = clock or (lambda: datetime.now(UTC))
        self._last_base_fee: int | None = None
        lease_sessions = self._maker if self._maker is not None else _uow_sessionmaker(self._uows)
        self.lease = LeaderLease(lease_sessions, self.address, lease_holder, ttl_s=lease_ttl_s, clock=self._clock)

    # -- sessions ---------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Session]:
        if self._maker is not None:
            with self._maker() as s, s.begin():
                yield s
            return
        assert self._uows is not None
        with self._uows.write() as uow:
            yield uow.session
            uow.commit()

    # -- submit (inside the caller's transaction) -------------------------------------------

    def submit(
        self, session: Session, *, purpose: str, ref: str, to: str, data: bytes, gas: int, value: int = 0
    ) -> int:
        """Assign the next nonce, sign, store tx + first attempt in `session`; return the tx id.

        Nothing is sent: the next `tick` after the caller commits broadcasts the stored bytes.
        """
        if not purpose or len(purpose) > 32 or not ref or len(ref) > 200:
            raise InvalidInput("purpose (1..32 chars) and ref (1..200 chars) are required")
        if not is_address(to):
            raise InvalidInput(f"not an address: {to!r}")
        least = ts.intrinsic_gas(bytes(data))
        if not least <= gas <= MAX_GAS:
            raise InvalidInput(f"gas must be in [{least}, {MAX_GAS}] for this calldata, got {gas}")
        if value < 0:
            raise InvalidInput("value must be non-negative")
        row = session.execute(
            select(SignerRow).where(SignerRow.address == self.address).with_for_update()
        ).scalar_one_or_none()
        if self.fence and not self.lease.held_in(session):
            info = session.execute(
                select(SignerRow.lease_holder, SignerRow.lease_expires_at).where(SignerRow.address == self.address)
            ).one_or_none()
            holder, expires = (info[0], info[1]) if info is not None else (None, None)
            raise LeaseNotHeld(
                f"{purpose}/{ref} refused: the lease on signer {self.address} is not held by {self.lease.holder} "
                f"(holder {holder}, expires {expires})"
            )
        chain_nonce = self._try(lambda: self._chain.nonce_at(self.address, "latest"))
        if row is None:
            # first use of this key (normally `recover()` creates the row): insert it now, so
            # a concurrent first submit fails on the primary key instead of forking the cursor
            row = SignerRow(address=self.address, lease_token=0, updated_at=self._clock())
            session.add(row)
            session.flush()
        if row.next_nonce is None:
            pending = self._chain.nonce_at(self.address, "pending")  # first use: must know the chain
            row.next_nonce = pending
            row.chain_id = self.chain_id
        if chain_nonce is not None:
            row.next_nonce = ts.next_cursor(row.next_nonce, chain_nonce)
        if session.execute(
            select(ChainTx.id).where(ChainTx.purpose == purpose, ChainTx.ref == ref)
        ).scalar_one_or_none():
            raise DuplicateTx(f"{purpose}/{ref} was already submitted")
        in_flight = self._count_unmined(session)
        if in_flight >= self.max_in_flight:
            raise TxBackpressure(f"{in_flight} transactions in flight (max {self.max_in_flight})")
        nonce = row.next_nonce
        fees = ts.market_fees(self._base_fee_for_submit(), self.priority_fee_per_gas, self.max_fee_per_gas)
        now = self._clock()
        tx = ChainTx(
            signer=self.address,
            chain_id=self.chain_id,
            nonce=nonce,
            purpose=purpose,
            ref=ref,
            to_address=to_checksum_address(to),
            data=bytes(data),
            value=value,
            gas=gas,
            state=TxState.SIGNED.value,
            created_at=now,
            updated_at=now,
        )
        signed = self.signer.sign_transaction(self._tx_dict(tx, fees))
        tx.attempts.append(
            ChainTxAttempt(
                seq=0,
                kind=CALL,
                tx_hash=signed.tx_hash,
                raw=signed.raw,
                max_fee_per_gas=fees.max_fee_per_gas,
                max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
                created_at=now,
                broadcasts=0,
            )
        )
        session.add(tx)
        row.next_nonce = nonce + 1
        row.updated_at = now
        session.flush()
        log.info("tx %s signed: %s/%s nonce %d %s", tx.id, purpose, ref, nonce, signed.tx_hash)
        return tx.id

    def _tx_dict(self, tx: ChainTx, fees: Fees, kind: str = "call") -> dict[str, Any]:
        """The tx's own content (`call`), or a 0-value self-transfer at its nonce (`cancel`)."""
        cancel = kind == CANCEL
        return {
            "type": 2,
            "chainId": tx.chain_id,
            "nonce": tx.nonce,
            "to": tx.signer if cancel else tx.to_address,
            "value": 0 if cancel else tx.value,
            "data": b"" if cancel else bytes(tx.data),
            "gas": ts.TX_BASE_GAS if cancel else tx.gas,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        }

    def _base_fee_for_submit(self) -> int:
        base = self._try(self._chain.base_fee)
        if base is not None:
            self._last_base_fee = base
            return base
        if self._last_base_fee is None:
            raise ChainError("cannot price a transaction: the node is unreachable and no base fee is known")
        return self._last_base_fee

    def _count_unmined(self, session: Session) -> int:
        return int(
            session.execute(
                select(func.count())
                .select_from(ChainTx)
                .where(ChainTx.signer == self.address, ChainTx.state.in_([s.value for s in ts.UNMINED_STATES]))
            ).scalar_one()
        )

    @staticmethod
    def _try(call: Callable[[], int]) -> int | None:
        try:
            return call()
        except (Web3Exception, OSError) as exc:
            log.warning("rpc call failed: %s", _rpc_message(exc))
            return None

    # -- outcomes ---------------------------------------------------------------------------

    def outcomes(self, session: Session, purpose: str) -> list[TxOutcome]:
        rows = session.execute(
            select(ChainTx)
            .where(
                ChainTx.purpose == purpose,
                ChainTx.state.in_([s.value for s in ts.FINAL_STATES]),
                ChainTx.handled_at.is_(None),
            )
            .order_by(ChainTx.id)
        ).scalars()
        return [
            TxOutcome(
                tx_id=r.id,
                purpose=r.purpose,
                ref=r.ref,
                state=TxState(r.state),
                nonce=r.nonce,
                tx_hash=r.mined_hash,
                block_number=r.mined_block,
                gas_used=r.gas_used,
            )
            for r in rows
        ]

    def mark_handled(self, session: Session, tx_id: int) -> None:
        """Record, in the caller's transaction, that the outcome's effect was applied (once)."""
        result = session.execute(
            update(ChainTx)
            .where(
                ChainTx.id == tx_id,
                ChainTx.state.in_([s.value for s in ts.FINAL_STATES]),
                ChainTx.handled_at.is_(None),
            )
            .values(handled_at=self._clock())
            .execution_options(synchronize_session=False)
        )
        if cast(Any, result).rowcount == 1:
            return
        row = session.get(ChainTx, tx_id)
        if row is None:
            raise NotFound(f"chain tx {tx_id} does not exist")
        if row.handled_at is not None:
            raise Conflict(f"chain tx {tx_id} was already handled")
        raise Conflict(f"chain tx {tx_id} is {row.state}, not final")

    def revert_reason(self, session: Session, tx_id: int) -> str | None:
        """Why a reverted tx reverted: its call replayed (eth_call from the signer) on the state
        at the end of its block; the custom error's name (e.g. "CoinVaultPayoutAllowanceExceeded"),
        else the node's message; None if the tx is not reverted or the replay passes now."""
        row = session.get(ChainTx, tx_id)
        if row is None or row.state != TxState.REVERTED.value or row.mined_block is None:
            return None
        call = {
            "from": row.signer,
            "to": row.to_address,
            "data": "0x" + bytes(row.data).hex(),
            "value": row.value,
            "gas": row.gas,
        }
        try:
            self._chain.w3.eth.call(cast(Any, call), row.mined_block)
        except (Web3Exception, ValueError) as exc:
            from tokenbridge.adapters.chain.vault import to_chain_error

            error = to_chain_error(exc, f"{row.purpose}/{row.ref}")
            name = getattr(error, "revert", None)
            return str(name) if name else str(error)
        except OSError as exc:
            log.warning("tx %s: replay for its revert reason failed: %s", tx_id, exc)
        return None

    def get(self, session: Session, tx_id: int) -> TxView:
        row = session.get(ChainTx, tx_id)
        if row is None:
            raise NotFound(f"chain tx {tx_id} does not exist")
        return _view(row)

    # -- recover ----------------------------------------------------------------------------

    def recover(self) -> TickReport:
        """On start: check the chain, sync the nonce cursor, reconcile every open tx, resume.

        Stored transactions are only ever re-sent as stored (or re-priced with the same nonce
        and content); nothing is re-signed under another nonce.
        """
        actual = self._chain.chain_id()
        if actual != self.chain_id:
            raise ConfigurationError(f"node is on chain {actual}, expected {self.chain_id}")
        pending = self._chain.nonce_at(self.address, "pending")
        latest = self._chain.nonce_at(self.address, "latest")
        with self._write() as s:
            row = s.execute(
                select(SignerRow).where(SignerRow.address == self.address).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                row = SignerRow(address=self.address, lease_token=0, updated_at=self._clock())
                s.add(row)
            if row.chain_id is not None and row.chain_id != self.chain_id:
                raise ConfigurationError(f"signer {self.address} is recorded on chain {row.chain_id}")
            row.chain_id = self.chain_id
            if row.next_nonce is None:
                has_txs = s.execute(select(ChainTx.id).where(ChainTx.signer == self.address).limit(1)).first()
                if has_txs is None:
                    row.next_nonce = pending
            if row.next_nonce is not None:
                row.next_nonce = ts.next_cursor(row.next_nonce, latest)
        return self.tick()

    # -- tick -------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        report = TickReport()
        if not self.lease.acquire():
            report.leader = False
            return report
        try:
            head = self._chain.head()
            latest = self._chain.nonce_at(self.address, "latest")
            # the signer's nonce at the deepest block we trust: a nonce below it is used for good
            deep = head - self.confirmations
            settled = (
                latest if self.confirmations == 0 else (self._chain.nonce_at(self.address, deep) if deep >= 0 else 0)
            )
        except (Web3Exception, OSError) as exc:
            report.errors.append(f"node unreachable: {_rpc_message(exc)}")
            return report
        report.cursor_raised_to = self._raise_cursor(latest)
        market: Fees | None = None
        for tx in self._open_txs():
            try:
                if tx.state is TxState.MINED:
                    self._follow_mined(tx, head, report)
                    continue
                if tx.nonce < latest:
                    self._resolve_used_nonce(tx, head, settled, report)
                    continue
                attempt = tx.attempts[-1]
                now = self._clock()
                # due since its first accepted send, or since signing if no node ever took it
                # (e.g. its max fee fell below the base fee before it could be sent)
                if now - (attempt.first_broadcast_at or attempt.created_at) >= self.reprice_after:
                    if market is None:
                        market = ts.market_fees(self._chain.base_fee(), self.priority_fee_per_gas, self.max_fee_per_gas)
                    attempt = self._reprice(tx, market, report) or attempt
                self._send(tx, attempt, report)
            except (Web3Exception, OSError) as exc:
                report.errors.append(f"tx {tx.id}: {_rpc_message(exc)}")
        with self._write() as s:
            report.in_flight = self._count_unmined(s)
        return report

    def _raise_cursor(self, chain_latest: int) -> int | None:
        with self._write() as s:
            row = s.execute(
                select(SignerRow).where(SignerRow.address == self.address).with_for_update()
            ).scalar_one_or_none()
            if row is None or row.next_nonce is None or row.next_nonce >= chain_latest:
                return None
            log.warning(
                "nonce cursor of %s raised %d -> %d: key used elsewhere", self.address, row.next_nonce, chain_latest
            )
            row.next_nonce = ts.next_cursor(row.next_nonce, chain_latest)
            row.updated_at = self._clock()
            return row.next_nonce

    def _open_txs(self) -> list[TxView]:
        open_states = [TxState.SIGNED.value, TxState.BROADCAST.value, TxState.MINED.value]
        with self._write() as s:
            rows = s.execute(
                select(ChainTx)
                .where(ChainTx.signer == self.address, ChainTx.state.in_(open_states))
                .order_by(ChainTx.nonce)
            ).scalars()
            return [_view(r) for r in rows]

    def _locked(self, s: Session, tx: TxView) -> ChainTx | None:
        """The row, locked, if nobody moved it since we read it."""
        row = s.execute(select(ChainTx).where(ChainTx.id == tx.id).with_for_update()).scalar_one()
        return row if row.state == tx.state.value else None

    def _apply_receipt(self, row: ChainTx, receipt: _Receipt, head: int, report: TickReport) -> None:
        now = self._clock()
        if row.state != TxState.MINED.value:
            row.state = ts.transition(row.state, TxState.MINED)
            report.mined += 1
        row.mined_hash = receipt.tx_hash
        row.mined_block = receipt.block_number
        row.mined_block_hash = receipt.block_hash
        row.receipt_status = receipt.status
        row.gas_used = receipt.gas_used
        row.effective_gas_price = receipt.effective_gas_price
        row.updated_at = now
        settled = ts.settle_state(receipt.status, receipt.block_number, head, self.confirmations)
        if settled is not TxState.MINED:
            row.state = ts.transition(row.state, settled)
            row.final_at = now
            if settled is TxState.CONFIRMED:
                report.confirmed += 1
            else:
                report.reverted += 1
            log.info("tx %s %s in block %d (%s)", row.id, settled.value, receipt.block_number, receipt.tx_hash)

    def _own_receipt(self, tx: TxView) -> tuple[_Receipt, str] | None:
        for attempt in reversed(tx.attempts):  # the newest attempt is the likeliest
            receipt = self._chain.receipt(attempt.tx_hash)
            if receipt is not None:
                return receipt, attempt.kind
        return None

    def _follow_mined(self, tx: TxView, head: int, report: TickReport) -> None:
        assert tx.mined_hash is not None
        receipt = self._chain.receipt(tx.mined_hash)
        with self._write() as s:
            row = self._locked(s, tx)
            if row is None:
                return
            if receipt is None:  # a reorg dropped its block before it was confirmed
                row.state = ts.transition(row.state, TxState.BROADCAST)
                row.mined_hash = row.mined_block_hash = None
                row.mined_block = row.receipt_status = row.gas_used = row.effective_gas_price = None
                row.updated_at = self._clock()
                report.reorged += 1
                log.warning("tx %s: its block was reorganised away; back to broadcast", tx.id)
                return
            self._apply_receipt(row, receipt, head, report)

    def _resolve_used_nonce(self, tx: TxView, head: int, settled: int, report: TickReport) -> None:
        """Our nonce is below the chain's count: one of our calls was mined, our cancel, or a stranger's tx."""
        found = self._own_receipt(tx)
        if found is not None and found[1] == CANCEL:
            receipt, _ = found
            if not ts.is_confirmed(receipt.block_number, head, self.confirmations):
                return  # the cancel must be as deep as a confirmation before the tx is given up
            reason = f"cancelled: nonce {tx.nonce} filled by a 0-value self-transfer {receipt.tx_hash}"
        elif found is None:
            if not ts.nonce_taken_by_other(tx.nonce, settled, have_own_receipt=False):
                return  # used by a tx not (yet) deep enough to be sure; look again next tick
            reason = f"nonce {tx.nonce} was used by a transaction that is not ours"
        with self._write() as s:
            row = self._locked(s, tx)
            if row is None:
                return
            if found is not None and found[1] == CALL:
                self._apply_receipt(row, found[0], head, report)
                return
            row.state = ts.transition(row.state, TxState.SUPERSEDED)
            row.final_at = row.updated_at = self._clock()
            row.last_error = reason
            report.superseded += 1
            log.error("tx %s superseded (%s) on %s", tx.id, reason, self.address)

    def _reprice(self, tx: TxView, market: Fees, report: TickReport) -> AttemptView | None:
        last = tx.attempts[-1]
        old = Fees(last.max_fee_per_gas, last.max_priority_fee_per_gas)
        fees = ts.bump_fees(old, pct=self.fee_bump_pct, max_fee_cap=self.max_fee_per_gas, market=market)
        if fees is None:
            self._note_error(tx.id, f"cannot re-price above the max fee cap {self.max_fee_per_gas}")
            return None
        attempt = self._new_attempt(tx, last.kind, fees)  # same nonce, same content
        if attempt is not None:
            report.repriced += 1
        return attempt

    def _new_attempt(self, tx: TxView, kind: str, fees: Fees, *, need_lease: bool = True) -> AttemptView | None:
        """Store (write-ahead) a newly signed attempt with the tx's nonce; None if it lost a race."""
        last = tx.attempts[-1]
        now = self._clock()
        try:
            with self._write() as s:
                row = self._locked(s, tx)
                if row is None or max(a.seq for a in row.attempts) != last.seq:
                    return None  # moved on, or another attempt was added meanwhile
                if need_lease and not self.lease.held_in(s):
                    return None  # we lost the lease mid-tick
                signed = self.signer.sign_transaction(self._tx_dict(row, fees, kind))
                s.add(
                    ChainTxAttempt(
                        tx_id=row.id,
                        seq=last.seq + 1,
                        kind=kind,
                        tx_hash=signed.tx_hash,
                        raw=signed.raw,
                        max_fee_per_gas=fees.max_fee_per_gas,
                        max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
                        created_at=now,
                        broadcasts=0,
                    )
                )
                row.updated_at = now
        except IntegrityError:
            return None
        log.info("tx %s: attempt %d (%s) %s", tx.id, last.seq + 1, kind, fees)
        return AttemptView(
            seq=last.seq + 1,
            kind=kind,
            tx_hash=signed.tx_hash,
            max_fee_per_gas=fees.max_fee_per_gas,
            max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
            broadcasts=0,
            created_at=now,
            first_broadcast_at=None,
            raw=signed.raw,
        )

    def cancel(self, tx_id: int, reason: str = "cancelled by the operator") -> bool:
        """Replace an unmined tx with a 0-value self-transfer at the same nonce (stored, sent by
        the next tick). Once that is mined and confirmed, the tx is `superseded` and the caller
        re-submits its work. Returns False if the tx is already mined/final or already cancelled.
        """
        found = self.txs(ids=[tx_id])
        if not found:
            raise NotFound(f"chain tx {tx_id} of signer {self.address} does not exist")
        tx = found[0]
        if tx.state not in ts.UNMINED_STATES or tx.attempts[-1].kind == CANCEL:
            return False
        return self._cancel(tx, reason, need_lease=False) is not None

    def _cancel(self, tx: TxView, reason: str, *, need_lease: bool = True) -> AttemptView | None:
        last = tx.attempts[-1]
        market = ts.market_fees(self._chain.base_fee(), self.priority_fee_per_gas, self.max_fee_per_gas)
        old = Fees(last.max_fee_per_gas, last.max_priority_fee_per_gas)
        # outbid the refused/stuck attempt if the cap allows, else at least pay the market
        fees = ts.bump_fees(old, pct=self.fee_bump_pct, max_fee_cap=self.max_fee_per_gas, market=market) or market
        attempt = self._new_attempt(tx, CANCEL, fees, need_lease=need_lease)
        if attempt is not None:
            self._note_error(tx.id, f"{reason}; cancel attempt {attempt.tx_hash}")
        return attempt

    def _send(self, tx: TxView, attempt: AttemptView, report: TickReport) -> None:
        """Send the stored bytes; a success or "already known" marks the attempt broadcast."""
        try:
            self._chain.send_raw(attempt.raw)
        except Web3RPCError as exc:
            message = _rpc_message(exc)
            verdict = ts.classify_send_error(message)
            if verdict is not ts.SendVerdict.ACCEPTED:
                # NONCE_USED: resolved next tick (our receipt, or superseded); OUTBID: a re-price
                # answers; RETRY: an alarm, sent again next tick; REFUSED: no node will ever take
                # these bytes, so the nonce is filled with a cancel instead of blocking the rest
                self._note_error(tx.id, message, attempt.tx_hash)
                if verdict in (ts.SendVerdict.RETRY, ts.SendVerdict.REFUSED):
                    report.errors.append(f"tx {tx.id}: {message}")
                if verdict is ts.SendVerdict.REFUSED and attempt.kind == CALL:
                    cancel = self._cancel(tx, f"refused by the node: {message}")
                    if cancel is not None:
                        report.cancelled += 1
                        self._send(tx, cancel, report)
                return
        except (Web3Exception, OSError) as exc:
            # a lost reply: the node may or may not have the tx; the same bytes go again next tick
            self._note_error(tx.id, _rpc_message(exc), attempt.tx_hash)
            report.errors.append(f"tx {tx.id}: {_rpc_message(exc)}")
            return
        now = self._clock()
        with self._write() as s:
            a = s.execute(select(ChainTxAttempt).where(ChainTxAttempt.tx_hash == attempt.tx_hash)).scalar_one()
            a.broadcasts += 1
            a.last_error = None
            if a.first_broadcast_at is None:
                a.first_broadcast_at = now
            row = self._locked(s, tx)
            if row is not None and row.state == TxState.SIGNED.value:
                row.state = ts.transition(row.state, TxState.BROADCAST)
                row.updated_at = now
        report.sent += 1

    def _note_error(self, tx_id: int, message: str, tx_hash: str | None = None) -> None:
        log.warning("tx %s: %s", tx_id, message)
        with self._write() as s:
            s.execute(
                update(ChainTx)
                .where(ChainTx.id == tx_id)
                .values(last_error=message[:2000])
                .execution_options(synchronize_session=False)
            )
            if tx_hash is not None:
                s.execute(
                    update(ChainTxAttempt)
                    .where(ChainTxAttempt.tx_hash == tx_hash)
                    .values(last_error=message[:2000])
                    .execution_options(synchronize_session=False)
                )

    # -- inspection -------------------------------------------------------------------------

    def txs(self, *, ids: Sequence[int] | None = None) -> list[TxView]:
        """This signer's txs (or the given ids), ordered by nonce."""
        with self._write() as s:
            stmt = select(ChainTx).where(ChainTx.signer == self.address)
            if ids is not None:
                stmt = stmt.where(ChainTx.id.in_(list(ids)))
            return [_view(r) for r in s.execute(stmt.order_by(ChainTx.nonce)).scalars()]

    def cursor(self) -> int | None:
        with self._write() as s:
            row = s.get(SignerRow, self.address)
            return None if row is None else row.next_nonce


def _uow_sessionmaker(uows: _UowFactory | None) -> sessionmaker[Session]:
    """The writer sessionmaker behind a UnitOfWorkFactory (for the lease's own short transactions)."""
    maker = getattr(uows, "_writer", None)
    if not isinstance(maker, sessionmaker):
        raise ConfigurationError("TxManager needs a sessionmaker or a UnitOfWorkFactory")
    return maker
