"""`tokenbridge status`: what the worker is doing and whether anything needs an operator.

Read-only, one snapshot of the database plus (optionally) a few chain reads: outbox depth by
kind and state, chain transactions in flight by state, per-vault indexer cursor and lag
(head - cursor), the latest epoch, open alarms, and solvency (the vault's reserve against the
ledger's liabilities and its latest liabilities commitment). `ok` is False while an alarm
is open; the CLI then exits non-zero.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, select

from tokenbridge.adapters.db.models import Account, OutboxItem
from tokenbridge.adapters.db.models_deposits import DEPOSIT_SEEN, Alarm, Deposit, IndexerState
from tokenbridge.adapters.db.models_settlement import Epoch
from tokenbridge.adapters.db.models_tx import ChainTx
from tokenbridge.adapters.db.uow import SqlUnitOfWork, UnitOfWorkFactory
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.errors import TokenbridgeError
from tokenbridge.services.deposits import suspense_balance

log = logging.getLogger(__name__)

OPEN_TX_STATES = ("signed", "broadcast", "mined")


class SolvencySource(Protocol):
    def reserve(self) -> int: ...

    def solvent(self) -> bool: ...

    def latest_liabilities(self) -> Any: ...  # has .epoch_id, .total, .committed_at


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
    lag: int | None
    safe_block: int | None
    unconfirmed_deposits: int
    unconfirmed_amount: int


@dataclass(frozen=True, slots=True)
class EpochView:
    id: int
    state: str
    gift_count: int
    gross_total: int
    settled_at: datetime | None


@dataclass(frozen=True, slots=True)
class Solvency:
    reserve: int | None
    liabilities: int
    committed_epoch: int | None
    committed_total: int | None
    solvent_on_chain: bool | None
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

    @property
    def ok(self) -> bool:
        return not self.alarms

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


class StatusService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        head: Callable[[], int] | None = None,
        chain: SolvencySource | None = None,
    ) -> None:
        self._uow = uow
        self._head = head
        self._chain = chain

    def report(self) -> StatusReport:
        notes: list[str] = []
        head: int | None = None
        if self._head is not None:
            try:
                head = self._head()
            except (TokenbridgeError, OSError, ValueError) as exc:
                notes.append(f"chain head unavailable: {exc}")
        with self._uow.read() as uow:
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
            chain_txs = {
                str(state): int(count)
                for state, count in s.execute(
                    select(ChainTx.state, func.count())
                    .where(ChainTx.state.in_(OPEN_TX_STATES))
                    .group_by(ChainTx.state)
                    .order_by(ChainTx.state)
                ).all()
            }
            pending = {
                str(vault): (int(count), int(total))
                for vault, count, total in s.execute(
                    select(Deposit.vault, func.count(), func.coalesce(func.sum(Deposit.amount), 0))
                    .where(Deposit.state == DEPOSIT_SEEN)
                    .group_by(Deposit.vault)
                ).all()
            }
            indexers = []
            for st in s.scalars(select(IndexerState).order_by(IndexerState.vault)).all():
                h = head if head is not None else st.head_block
                count, total = pending.get(st.vault, (0, 0))
                indexers.append(
                    IndexerView(
                        vault=st.vault,
                        cursor=st.cursor_block,
                        head=h,
                        lag=None
                        if h is None
                        else h - (st.cursor_block if st.cursor_block is not None else st.start_block - 1),
                        safe_block=st.safe_block,
                        unconfirmed_deposits=count,
                        unconfirmed_amount=total,
                    )
                )
            last = s.scalars(select(Epoch).order_by(Epoch.id.desc()).limit(1)).first()
            settled = s.scalars(
                select(Epoch).where(Epoch.state == "settled").order_by(Epoch.id.desc()).limit(1)
            ).first()
            alarms = [
                AlarmView(a.id, a.kind, a.scope, a.detail, a.raised_at)
                for a in s.scalars(select(Alarm).where(Alarm.cleared_at.is_(None)).order_by(Alarm.id)).all()
            ]
            liabilities = _liabilities(uow)
        return StatusReport(
            outbox=outbox,
            outbox_amounts=amounts,
            chain_txs=chain_txs,
            in_flight=sum(chain_txs.values()),
            indexers=indexers,
            last_epoch=_epoch(last),
            last_settled_epoch=_epoch(settled),
            alarms=alarms,
            solvency=self._solvency(liabilities),
            notes=notes,
        )

    def _solvency(self, liabilities: int) -> Solvency:
        if self._chain is None:
            return Solvency(None, liabilities, None, None, None, "chain not available")
        try:
            reserve = self._chain.reserve()
            commitment = self._chain.latest_liabilities()
            committed = int(commitment.committed_at) != 0
            return Solvency(
                reserve=reserve,
                liabilities=liabilities,
                committed_epoch=int(commitment.epoch_id) if committed else None,
                committed_total=int(commitment.total) if committed else None,
                solvent_on_chain=self._chain.solvent() if committed else None,
            )
        except (TokenbridgeError, OSError, ValueError) as exc:
            return Solvency(None, liabilities, None, None, None, f"chain unavailable: {exc}")


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
    return EpochView(row.id, row.state, row.gift_count, row.gross_total, row.settled_at)
