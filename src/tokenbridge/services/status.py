"""`tokenbridge status`: what the bridge is doing and whether anything needs an operator.

Read-only. One snapshot of the database plus a few cheap chain reads:

- chain: the node's chain id (against the configured one), head block, reachable or not;
- contracts: vault and coin addresses, whether each is paused, and (when a deployment record
  names them) whether the recorded admin / bridge / pauser still hold their roles;
- worker: per signer key, the leader lease's holder, its expiry and the age of its last
  heartbeat (the holder rewrites the `signers` row on every round), and whether the key holds
  the bridge role;
- outbox depth by kind and state and the oldest open (pending or batched) item's age;
- chain transactions in flight by state and the oldest one's age;
- per-vault deposits indexer cursor and lag (head read after the database snapshot, so the
  lag is never negative);
- the latest and the latest settled epoch; open alarms;
- solvency: the vault's reserve against the ledger's liabilities and the vault's own
  `solvent()` for its latest liabilities commitment.

`ok` is False while a problem is listed: an open alarm, the vault reporting insolvent, or the
chain unreachable / on the wrong chain id. `exit_code` maps that to the CLI's exit status
(docs/operations.md): 0 ok, 2 an alarm is open or the vault is insolvent, 3 the chain cannot be
read (the database side is still reported). With the node down every chain field is None and
the report says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from sqlalchemy import func, select

from tokenbridge.adapters.db.models import Account, OutboxItem
from tokenbridge.adapters.db.models_deposits import DEPOSIT_SEEN, Alarm, Deposit, IndexerState
from tokenbridge.adapters.db.models_settlement import Epoch
from tokenbridge.adapters.db.models_tx import ChainTx
from tokenbridge.adapters.db.models_tx import Signer as SignerRow
from tokenbridge.adapters.db.uow import SqlUnitOfWork, UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.services.deposits import suspense_balance

log = logging.getLogger(__name__)

T = TypeVar("T")

OPEN_TX_STATES = ("signed", "broadcast", "mined")
OPEN_OUTBOX_STATES = ("pending", "batched")
ROLE_NAMES = ("admin", "bridge", "pauser")

EXIT_OK = 0
EXIT_ATTENTION = 2  # an open alarm, or the vault reports insolvent
EXIT_CHAIN_UNAVAILABLE = 3  # the chain could not be read (or is the wrong chain); database side shown

# problem kinds (StatusReport.problems[].kind)
PROBLEM_ALARM = "alarm"
PROBLEM_INSOLVENT = "insolvent"
PROBLEM_CHAIN = "chain"


class StatusChain(Protocol):
    """The vault reads status needs (a VaultClient has them all)."""

    @property
    def address(self) -> str: ...

    @property
    def coin_address(self) -> str: ...

    def paused(self) -> bool: ...

    def coin_paused(self) -> bool: ...

    def has_role(self, role: str, address: str) -> bool: ...

    def reserve(self) -> int: ...

    def solvent(self) -> bool: ...

    def latest_liabilities(self) -> Any: ...  # has .epoch_id, .total, .committed_at


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # alarm | insolvent | chain
    detail: str


@dataclass(frozen=True, slots=True)
class ChainView:
    rpc_url: str | None
    reachable: bool | None  # None: no node configured / not checked
    chain_id: int | None
    expected_chain_id: int | None
    head_block: int | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RoleView:
    role: str
    address: str  # the holder named in the deployment record
    holds: bool | None  # hasRole now (None: could not ask)


@dataclass(frozen=True, slots=True)
class ContractsView:
    vault: str | None
    coin: str | None
    vault_paused: bool | None
    coin_paused: bool | None
    roles: list[RoleView]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SignerView:
    address: str
    chain_id: int | None
    next_nonce: int | None
    lease_holder: str | None
    lease_expires_at: datetime | None
    lease_expires_in_s: float | None  # negative once expired
    heartbeat_at: datetime | None  # last write to the row by the lease holder (every worker round)
    heartbeat_age_s: float | None
    live: bool  # a holder whose lease has not expired
    bridge_role: bool | None  # hasRole(BRIDGE, address) now (None: chain not read)


@dataclass(frozen=True, slots=True)
class WorkerView:
    live: bool  # at least one signer's lease is held and unexpired
    signers: list[SignerView]


@dataclass(frozen=True, slots=True)
class OutboxOldest:
    id: int
    kind: str
    state: str
    created_at: datetime
    age_s: float


@dataclass(frozen=True, slots=True)
class TxOldest:
    id: int
    purpose: str
    state: str
    nonce: int
    created_at: datetime
    age_s: float


@dataclass(frozen=True, slots=True)
class AlarmView:
    id: int
    kind: str
    scope: str
    detail: str
    raised_at: datetime


@dataclass(frozen=True, slots=True)
class IndexerView:
    vault: str
    cursor: int | None
    head: int | None
    lag: int | None  # head - cursor, never negative
    safe_block: int | None
    unconfirmed_deposits: int
    unconfirmed_amount: int
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EpochView:
    id: int
    state: str
    gift_count: int
    gross_total: int
    created_at: datetime | None
    settled_at: datetime | None


@dataclass(frozen=True, slots=True)
class Solvency:
    reserve: int | None
    liabilities: int
    committed_epoch: int | None
    committed_total: int | None
    solvent_on_chain: bool | None  # None: no commitment yet, or the chain was not read
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StatusReport:
    outbox: dict[str, dict[str, int]]  # kind -> state -> count
    outbox_amounts: dict[str, dict[str, int]]  # kind -> state -> units
    chain_txs: dict[str, int]  # open state -> count
    in_flight: int
    indexers: list[IndexerView]
    last_epoch: EpochView | None
    last_settled_epoch: EpochView | None
    alarms: list[AlarmView]
    solvency: Solvency
    notes: list[str] = field(default_factory=list)
    generated_at: datetime | None = None
    chain: ChainView | None = None
    contracts: ContractsView | None = None
    worker: WorkerView | None = None
    outbox_oldest_open: OutboxOldest | None = None
    oldest_in_flight: TxOldest | None = None

    @property
    def problems(self) -> list[Problem]:
        """Why `ok` is False (empty when it is True)."""
        out = [Problem(PROBLEM_ALARM, f"alarm #{a.id} {a.kind} [{a.scope}] is open") for a in self.alarms]
        if self.solvency.solvent_on_chain is False:
            out.append(
                Problem(
                    PROBLEM_INSOLVENT,
                    f"the vault reports insolvent: reserve {self.solvency.reserve} below the committed "
                    f"liabilities {self.solvency.committed_total} (epoch {self.solvency.committed_epoch})",
                )
            )
        c = self.chain
        if c is not None and c.reachable is False:
            out.append(Problem(PROBLEM_CHAIN, f"chain unreachable at {c.rpc_url}: {c.error}"))
        elif (
            c is not None
            and c.chain_id is not None
            and c.expected_chain_id is not None
            and c.chain_id != c.expected_chain_id
        ):
            out.append(
                Problem(PROBLEM_CHAIN, f"the node is on chain {c.chain_id}, configured chain {c.expected_chain_id}")
            )
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        kinds = {p.kind for p in self.problems}
        if kinds & {PROBLEM_ALARM, PROBLEM_INSOLVENT}:
            return EXIT_ATTENTION
        if PROBLEM_CHAIN in kinds:
            return EXIT_CHAIN_UNAVAILABLE
        return EXIT_OK

    @property
    def warnings(self) -> list[str]:
        """Worth a look, but not a failure of `ok`."""
        out: list[str] = []
        if self.worker is not None and not self.worker.live:
            out.append("no worker holds a signer lease (worker stopped or never started)")
        for s in self.worker.signers if self.worker is not None else []:
            if s.bridge_role is False:
                out.append(f"signer {s.address} does not hold the bridge role")
        if self.contracts is not None:
            if self.contracts.vault_paused:
                out.append("the vault is paused: mint, settle, payout, deposit and burn revert")
            if self.contracts.coin_paused:
                out.append("CreatorCoin transfers are paused")
            for r in self.contracts.roles:
                if r.holds is False:
                    out.append(f"the recorded {r.role} {r.address} no longer holds the {r.role} role")
        return out

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["exit_code"] = self.exit_code
        out["problems"] = [asdict(p) for p in self.problems]
        out["warnings"] = self.warnings
        return out


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class StatusService:
    """Build a `StatusReport`.

    `chain`: the vault (or `connect`, called only once the node answered, to build it);
    `chain_id` / `head`: the node's chain id and block number; `roles`: role -> holder named in
    the deployment record; `chain_error`: why the vault could not be set up, if it could not.
    Every chain read is best-effort: a failure is reported, never raised.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        head: Callable[[], int] | None = None,
        chain: StatusChain | None = None,
        connect: Callable[[], StatusChain] | None = None,
        chain_id: Callable[[], int] | None = None,
        expected_chain_id: int | None = None,
        rpc_url: str | None = None,
        roles: Mapping[str, str] | None = None,
        chain_error: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._uow = uow
        self._head = head
        self._chain = chain
        self._connect = connect
        self._chain_id = chain_id
        self._expected_chain_id = expected_chain_id
        self._rpc_url = rpc_url
        self._roles = dict(roles or {})
        self._chain_error = chain_error
        self._clock = clock

    def report(self) -> StatusReport:
        notes: list[str] = []
        node_error: str | None = None
        node_chain_id: int | None = None
        if self._chain_id is not None:
            try:
                node_chain_id = int(self._chain_id())
            except Exception as exc:  # any failure to reach the node is reported, not raised
                node_error = _short(exc)
        reachable: bool | None = None if self._chain_id is None else node_error is None

        with self._uow.read() as uow:
            if uow.session.get_bind().dialect.name == "postgresql":
                # one snapshot for every statement below: a fold committing between the reads of
                # the liabilities' parts must be seen entirely or not at all (SQLite readers
                # already get one snapshot per transaction)
                uow.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            snap = _Snapshot.read(uow, self._clock())
        now = snap.now

        # the head is read after the snapshot: the indexer's cursor cannot be ahead of it
        head: int | None = None
        if self._head is not None and node_error is None:
            try:
                head = int(self._head())
                reachable = True
            except Exception as exc:
                node_error = _short(exc)
                reachable = False

        vault = self._chain
        contracts_error = self._chain_error
        if vault is None and self._connect is not None and node_error is None:
            try:
                vault = self._connect()
            except Exception as exc:
                contracts_error = _short(exc)
        if node_error is not None:
            vault = None  # the node did not answer: do not wait for each read to time out again
            contracts_error = contracts_error or f"chain unreachable: {node_error}"

        indexers = []
        for st in snap.indexer_rows:
            h = head if head is not None else st.head_block
            count, total = snap.pending_deposits.get(st.vault, (0, 0))
            scanned_to = st.cursor_block if st.cursor_block is not None else st.start_block - 1
            indexers.append(
                IndexerView(
                    vault=st.vault,
                    cursor=st.cursor_block,
                    head=h,
                    lag=None if h is None else max(0, h - scanned_to),
                    safe_block=st.safe_block,
                    unconfirmed_deposits=count,
                    unconfirmed_amount=total,
                    updated_at=st.updated_at,
                )
            )

        signers = []
        for row in snap.signer_rows:
            holder = row.lease_holder
            expires = row.lease_expires_at
            live = holder is not None and expires is not None and expires > now
            bridge_role = None
            if vault is not None:
                bridge_role, _ = _try(partial(vault.has_role, "bridge", row.address))
            signers.append(
                SignerView(
                    address=row.address,
                    chain_id=row.chain_id,
                    next_nonce=row.next_nonce,
                    lease_holder=holder,
                    lease_expires_at=expires,
                    lease_expires_in_s=None if expires is None else _seconds(expires - now),
                    heartbeat_at=row.updated_at if holder is not None else None,
                    heartbeat_age_s=_seconds(now - row.updated_at) if holder is not None else None,
                    live=live,
                    bridge_role=bridge_role,
                )
            )

        return StatusReport(
            outbox=snap.outbox,
            outbox_amounts=snap.amounts,
            chain_txs=snap.chain_txs,
            in_flight=sum(snap.chain_txs.values()),
            indexers=indexers,
            last_epoch=snap.last,
            last_settled_epoch=snap.settled,
            alarms=snap.alarms,
            solvency=self._solvency(vault, snap.liabilities, contracts_error),
            notes=notes,
            generated_at=now,
            chain=ChainView(
                rpc_url=self._rpc_url,
                reachable=reachable,
                chain_id=node_chain_id,
                expected_chain_id=self._expected_chain_id,
                head_block=head,
                error=node_error,
            ),
            contracts=self._contracts(vault, contracts_error),
            worker=WorkerView(live=any(s.live for s in signers), signers=signers),
            outbox_oldest_open=snap.outbox_oldest,
            oldest_in_flight=snap.tx_oldest,
        )

    def _contracts(self, vault: StatusChain | None, error: str | None) -> ContractsView:
        if vault is None:
            roles = [RoleView(name, self._roles[name], None) for name in ROLE_NAMES if name in self._roles]
            return ContractsView(None, None, None, None, roles, error or "chain not available")
        errors: list[str] = []

        def read(fn: Callable[[], T]) -> T | None:
            value, err = _try(fn)
            if err is not None:
                errors.append(err)
            return value

        vault_paused = read(vault.paused)
        coin_paused = read(vault.coin_paused)
        roles = [
            RoleView(name, self._roles[name], read(partial(vault.has_role, name, self._roles[name])))
            for name in ROLE_NAMES
            if name in self._roles
        ]
        return ContractsView(
            vault=vault.address,
            coin=vault.coin_address,
            vault_paused=vault_paused,
            coin_paused=coin_paused,
            roles=roles,
            error="; ".join(dict.fromkeys(errors)) or None,
        )

    @staticmethod
    def _solvency(vault: StatusChain | None, liabilities: int, error: str | None) -> Solvency:
        if vault is None:
            return Solvency(None, liabilities, None, None, None, error or "chain not available")
        try:
            reserve = vault.reserve()
            commitment = vault.latest_liabilities()
            committed = int(commitment.committed_at) != 0
            return Solvency(
                reserve=reserve,
                liabilities=liabilities,
                committed_epoch=int(commitment.epoch_id) if committed else None,
                committed_total=int(commitment.total) if committed else None,
                solvent_on_chain=vault.solvent() if committed else None,
            )
        except Exception as exc:
            return Solvency(None, liabilities, None, None, None, f"chain unavailable: {_short(exc)}")


@dataclass(frozen=True, slots=True)
class _IndexerRow:
    vault: str
    start_block: int
    cursor_block: int | None
    safe_block: int | None
    head_block: int | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class _SignerRow:
    address: str
    chain_id: int | None
    next_nonce: int | None
    lease_holder: str | None
    lease_expires_at: datetime | None
    updated_at: datetime


@dataclass
class _Snapshot:
    """Everything status reads from the database, in one read transaction."""

    now: datetime
    outbox: dict[str, dict[str, int]]
    amounts: dict[str, dict[str, int]]
    outbox_oldest: OutboxOldest | None
    chain_txs: dict[str, int]
    tx_oldest: TxOldest | None
    pending_deposits: dict[str, tuple[int, int]]
    indexer_rows: list[_IndexerRow]
    signer_rows: list[_SignerRow]
    last: EpochView | None
    settled: EpochView | None
    alarms: list[AlarmView]
    liabilities: int

    @classmethod
    def read(cls, uow: SqlUnitOfWork, now: datetime) -> _Snapshot:
        s = uow.session
        outbox: dict[str, dict[str, int]] = {}
        amounts: dict[str, dict[str, int]] = {}
        for kind, state, count, total in s.execute(
            select(OutboxItem.kind, OutboxItem.state, func.count(), func.coalesce(func.sum(OutboxItem.amount), 0))
            .group_by(OutboxItem.kind, OutboxItem.state)
            .order_by(OutboxItem.kind, OutboxItem.state)
        ).all():
            outbox.setdefault(kind, {})[state] = int(count)
            amounts.setdefault(kind, {})[state] = int(total)
        oldest_item = s.scalars(
            select(OutboxItem)
            .where(OutboxItem.state.in_(OPEN_OUTBOX_STATES))
            .order_by(OutboxItem.created_at, OutboxItem.id)
            .limit(1)
        ).first()
        chain_txs = {
            str(state): int(count)
            for state, count in s.execute(
                select(ChainTx.state, func.count())
                .where(ChainTx.state.in_(OPEN_TX_STATES))
                .group_by(ChainTx.state)
                .order_by(ChainTx.state)
            ).all()
        }
        oldest_tx = s.scalars(
            select(ChainTx).where(ChainTx.state.in_(OPEN_TX_STATES)).order_by(ChainTx.created_at, ChainTx.id).limit(1)
        ).first()
        pending = {
            str(vault): (int(count), int(total))
            for vault, count, total in s.execute(
                select(Deposit.vault, func.count(), func.coalesce(func.sum(Deposit.amount), 0))
                .where(Deposit.state == DEPOSIT_SEEN)
                .group_by(Deposit.vault)
            ).all()
        }
        return cls(
            now=now,
            outbox=outbox,
            amounts=amounts,
            outbox_oldest=None
            if oldest_item is None
            else OutboxOldest(
                oldest_item.id,
                oldest_item.kind,
                oldest_item.state,
                oldest_item.created_at,
                _seconds(now - oldest_item.created_at),
            ),
            chain_txs=chain_txs,
            tx_oldest=None
            if oldest_tx is None
            else TxOldest(
                oldest_tx.id,
                oldest_tx.purpose,
                oldest_tx.state,
                oldest_tx.nonce,
                oldest_tx.created_at,
                _seconds(now - oldest_tx.created_at),
            ),
            pending_deposits=pending,
            indexer_rows=[
                _IndexerRow(r.vault, r.start_block, r.cursor_block, r.safe_block, r.head_block, r.updated_at)
                for r in s.scalars(select(IndexerState).order_by(IndexerState.vault)).all()
            ],
            signer_rows=[
                _SignerRow(r.address, r.chain_id, r.next_nonce, r.lease_holder, r.lease_expires_at, r.updated_at)
                for r in s.scalars(select(SignerRow).order_by(SignerRow.address)).all()
            ],
            last=_epoch(s.scalars(select(Epoch).order_by(Epoch.id.desc()).limit(1)).first()),
            settled=_epoch(
                s.scalars(select(Epoch).where(Epoch.state == "settled").order_by(Epoch.id.desc()).limit(1)).first()
            ),
            alarms=[
                AlarmView(a.id, a.kind, a.scope, a.detail, a.raised_at)
                for a in s.scalars(select(Alarm).where(Alarm.cleared_at.is_(None)).order_by(Alarm.id)).all()
            ],
            liabilities=_liabilities(uow),
        )


def _try(fn: Callable[[], T]) -> tuple[T | None, str | None]:
    try:
        return fn(), None
    except Exception as exc:  # status reports chain failures, it never raises them
        return None, _short(exc)


def _seconds(delta: Any) -> float:
    return round(float(delta.total_seconds()), 1)


def _liabilities(uow: SqlUnitOfWork) -> int:
    """coins + earnings + held + platform revenue + suspense from the cached balances (no full
    scan of the legs: status may be polled often; reconcile recomputes everything)."""
    s = uow.session
    coins, held, earnings = s.execute(
        select(
            func.coalesce(func.sum(Account.coins), 0),
            func.coalesce(func.sum(Account.held), 0),
            func.coalesce(func.sum(Account.earnings), 0),
        )
    ).one()
    unfolded = sum(v for name, v in uow.ledger.unfolded_sums().items() if name.endswith(":earnings"))
    revenue = uow.ledger.system_balance(lg.PLATFORM_REVENUE)
    return int(coins) + int(held) + int(earnings) + unfolded + revenue + suspense_balance(s)


def _epoch(row: Epoch | None) -> EpochView | None:
    if row is None:
        return None
    return EpochView(row.id, row.state, row.gift_count, row.gross_total, row.created_at, row.settled_at)
