"""Tables of the deposits indexer and the operator alarms (migration 0004), and their repository.

`deposits`: one row per vault `Deposited` log, unique by (tx hash, log index), so a log is
credited at most once whatever the indexer re-reads. `state`: `seen` (read, not yet
`confirmations` deep) -> `credited` (ledger transfer `transfer_id`), or `seen` -> `orphaned`
(its block left the chain before it was credited; a later re-read of the same log revives
the row as `seen` with the new block). A credited row never changes again.
`indexer_state`: one row per vault: the cursor (last scanned block and its hash), the
deepest block credited through (`safe_block`) and the adaptive `eth_getLogs` range.
`indexed_blocks`: recent (vault, block number) -> hash checkpoints, used to find where a
reorganisation forked off the chain we read.
`alarms`: conditions an operator must act on; open while `cleared_at` is NULL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from .models import Base, BigIntPK, UTCDateTime, utcnow

DEPOSIT_SEEN = "seen"
DEPOSIT_CREDITED = "credited"
DEPOSIT_ORPHANED = "orphaned"


class Deposit(Base):
    __tablename__ = "deposits"
    __table_args__ = (
        UniqueConstraint("tx_hash", "log_index", name="uq_deposits_tx_hash_log_index"),
        Index("ix_deposits_vault_state_block", "vault", "state", "block_number"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    vault: Mapped[str] = mapped_column(String(42))  # checksummed vault address (the indexer's scope)
    tx_hash: Mapped[str] = mapped_column(String(66))  # 0x lowercase
    log_index: Mapped[int] = mapped_column(Integer)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    account_key: Mapped[str] = mapped_column(String(66))  # 0x lowercase bytes32
    from_address: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[str | None] = mapped_column(String(128))  # set when credited to a known user
    ledger_account: Mapped[str | None] = mapped_column(String(160))  # the credited ledger account
    transfer_id: Mapped[int | None] = mapped_column(BigInteger)  # transfers.id of the credit
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    credited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IndexerState(Base):
    __tablename__ = "indexer_state"

    vault: Mapped[str] = mapped_column(String(42), primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    start_block: Mapped[int] = mapped_column(BigInteger)
    cursor_block: Mapped[int | None] = mapped_column(BigInteger)  # last block scanned (None: nothing yet)
    cursor_hash: Mapped[str | None] = mapped_column(String(66))
    safe_block: Mapped[int | None] = mapped_column(BigInteger)  # head - confirmations at the last credit pass
    head_block: Mapped[int | None] = mapped_column(BigInteger)  # chain head seen at the last step
    range_size: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IndexedBlock(Base):
    __tablename__ = "indexed_blocks"

    vault: Mapped[str] = mapped_column(String(42), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(66))


class Alarm(Base):
    __tablename__ = "alarms"
    __table_args__ = (Index("ix_alarms_cleared_at_kind", "cleared_at", "kind"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))  # deep_reorg | deposit_unpostable | ...
    scope: Mapped[str] = mapped_column(String(64))  # what it is about, e.g. the vault address
    detail: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DepositStore:
    """The SQL of the deposits indexer, over the caller's session (one transaction)."""

    def __init__(self, session: Session) -> None:
        self.s = session

    # -- indexer state ---------------------------------------------------------------------

    def state(self, vault: str, *, lock: bool = False) -> IndexerState | None:
        q = select(IndexerState).where(IndexerState.vault == vault)
        if lock:
            q = q.with_for_update()
        return self.s.scalars(q.execution_options(populate_existing=True)).one_or_none()

    def add_state(self, row: IndexerState) -> None:
        self.s.add(row)

    # -- blocks ----------------------------------------------------------------------------

    def record_blocks(self, vault: str, blocks: dict[int, str]) -> None:
        """Upsert (number -> hash) checkpoints: one executemany, not a lookup per block."""
        if not blocks:
            return
        dialect = self.s.get_bind().dialect.name
        upsert = pg_insert(IndexedBlock) if dialect == "postgresql" else sqlite_insert(IndexedBlock)
        stmt = upsert.on_conflict_do_update(index_elements=["vault", "number"], set_={"hash": upsert.excluded.hash})
        self.s.execute(stmt, [{"vault": vault, "number": n, "hash": h} for n, h in sorted(blocks.items())])

    def blocks_desc(self, vault: str, above: int = -1) -> list[tuple[int, str]]:
        rows = self.s.execute(
            select(IndexedBlock.number, IndexedBlock.hash)
            .where(IndexedBlock.vault == vault, IndexedBlock.number > above)
            .order_by(IndexedBlock.number.desc())
        ).all()
        return [(int(n), str(h)) for n, h in rows]

    def forget_blocks_above(self, vault: str, number: int) -> None:
        self.s.execute(delete(IndexedBlock).where(IndexedBlock.vault == vault, IndexedBlock.number > number))

    def prune_blocks_below(self, vault: str, number: int) -> None:
        self.s.execute(delete(IndexedBlock).where(IndexedBlock.vault == vault, IndexedBlock.number < number))

    # -- deposits --------------------------------------------------------------------------

    def deposit(self, tx_hash: str, log_index: int) -> Deposit | None:
        return self.s.scalars(
            select(Deposit)
            .where(Deposit.tx_hash == tx_hash, Deposit.log_index == log_index)
            .execution_options(populate_existing=True)
        ).one_or_none()

    def add_deposit(self, row: Deposit) -> None:
        self.s.add(row)

    def deposits(self, vault: str, state: str, *, above: int = -1, up_to: int | None = None) -> Sequence[Deposit]:
        q = select(Deposit).where(Deposit.vault == vault, Deposit.state == state, Deposit.block_number > above)
        if up_to is not None:
            q = q.where(Deposit.block_number <= up_to)
        return self.s.scalars(q.order_by(Deposit.block_number, Deposit.log_index)).all()

    def credited_blocks(self, vault: str, *, above: int) -> list[tuple[int, str]]:
        """Distinct (block number, block hash) of credited deposits above `above`, ascending."""
        rows = self.s.execute(
            select(Deposit.block_number, Deposit.block_hash)
            .where(Deposit.vault == vault, Deposit.state == DEPOSIT_CREDITED, Deposit.block_number > above)
            .distinct()
            .order_by(Deposit.block_number, Deposit.block_hash)
        ).all()
        return [(int(n), str(h)) for n, h in rows]

    def first_credited_in(self, vault: str, number: int, block_hash: str) -> tuple[str, int] | None:
        """(tx hash, log index) of the first credited deposit of that block."""
        row = self.s.execute(
            select(Deposit.tx_hash, Deposit.log_index)
            .where(
                Deposit.vault == vault,
                Deposit.state == DEPOSIT_CREDITED,
                Deposit.block_number == number,
                Deposit.block_hash == block_hash,
            )
            .order_by(Deposit.log_index)
            .limit(1)
        ).first()
        return (str(row[0]), int(row[1])) if row is not None else None

    def claim(self, deposit_id: int, now: datetime) -> bool:
        """`seen` -> `credited` for one row, conditionally (the row lock on PostgreSQL); True if ours."""
        result = self.s.execute(
            update(Deposit)
            .where(Deposit.id == deposit_id, Deposit.state == DEPOSIT_SEEN)
            .values(state=DEPOSIT_CREDITED, credited_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0)) == 1

    def orphan_seen_above(self, vault: str, number: int, now: datetime) -> int:
        result = self.s.execute(
            update(Deposit)
            .where(Deposit.vault == vault, Deposit.state == DEPOSIT_SEEN, Deposit.block_number > number)
            .values(state=DEPOSIT_ORPHANED, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0))

    # -- alarms ----------------------------------------------------------------------------

    def open_alarms(self, scope: str | None = None, kind: str | None = None) -> Sequence[Alarm]:
        q = select(Alarm).where(Alarm.cleared_at.is_(None))
        if scope is not None:
            q = q.where(Alarm.scope == scope)
        if kind is not None:
            q = q.where(Alarm.kind == kind)
        return self.s.scalars(q.order_by(Alarm.id)).all()

    def raise_alarm(self, kind: str, scope: str, detail: str, now: datetime) -> tuple[Alarm, bool]:
        """Open an alarm unless one of this kind and scope is open already; (alarm, created)."""
        existing = self.open_alarms(scope, kind)
        if existing:
            return existing[0], False
        alarm = Alarm(kind=kind, scope=scope, detail=detail[:4000], raised_at=now, cleared_at=None)
        self.s.add(alarm)
        self.s.flush()
        return alarm, True

    def clear_alarm(self, alarm_id: int, now: datetime) -> bool:
        result = self.s.execute(
            update(Alarm)
            .where(Alarm.id == alarm_id, Alarm.cleared_at.is_(None))
            .values(cleared_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0)) == 1
