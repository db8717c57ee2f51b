"""Tables of the ledger. Amounts are BIGINT base units (never float); times are UTC.

Hot-account design (docs/ledger.md): rows that must never go negative (a user's coins,
debt, a creator's held funds) carry a cached balance updated under a row lock in the
same transaction that appends the legs. Credit-only accounts on the gift/recharge path
(creator earnings, platform revenue, external:payments) are never locked there: their
legs are appended with `folded = false` and their balance is `cached + SUM(unfolded legs)`
until a fold moves the sum into the cache.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# autoincrementing 64-bit keys; SQLite only autoincrements "INTEGER PRIMARY KEY"
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both databases (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    # On PostgreSQL the table has fillfactor 25 (revision 0008): every gift updates its sender's
    # row, and the room keeps those updates on the row's own page (HOT: no index entries).
    __tablename__ = "accounts"
    # the last line of defence for invariant 2: the database itself refuses a negative balance
    __table_args__ = (
        CheckConstraint("coins >= 0", name="coins_non_negative"),
        CheckConstraint("debt >= 0", name="debt_non_negative"),
        CheckConstraint("held >= 0", name="held_non_negative"),
        CheckConstraint("earnings >= 0", name="earnings_non_negative"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    account_key: Mapped[str] = mapped_column(String(66), unique=True)
    # locked balances (cache == truth, updated under the row lock)
    coins: Mapped[int] = mapped_column(BigInteger, default=0)
    debt: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    # folded part of the credit-only earnings; truth = earnings + SUM(unfolded legs)
    earnings: Mapped[int] = mapped_column(BigInteger, default=0)
    is_minor: Mapped[bool] = mapped_column(Boolean, default=False)
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    # daily counters (UTC day), reset lazily under the row lock
    counter_day: Mapped[str] = mapped_column(String(10), default="")
    recharged_today: Mapped[int] = mapped_column(BigInteger, default=0)
    gifted_today: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SystemBalance(Base):
    """Folded balance of a system account (platform:revenue, external:payments, external:chain)."""

    __tablename__ = "system_balances"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)


class Transfer(Base):
    """One idempotent posting: a caller-chosen unique id, the request hash, its legs."""

    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    caller_id: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TransferLeg(Base):
    __tablename__ = "transfer_legs"
    __table_args__ = (Index("ix_transfer_legs_account_folded", "account", "folded"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("transfers.id"), index=True)
    account: Mapped[str] = mapped_column(String(160))
    side: Mapped[str] = mapped_column(String(6))  # debit | credit
    amount: Mapped[int] = mapped_column(BigInteger)
    folded: Mapped[bool] = mapped_column(Boolean)


# Gift ids compare bytewise on PostgreSQL (revision 0008: a `memcmp` per B-tree comparison
# instead of a locale's `strcoll`); SQLite compares bytewise anyway.
GIFT_ID = String(128).with_variant(String(128, collation="C"), "postgresql")


class Gift(Base):
    __tablename__ = "gifts"
    __table_args__ = (
        CheckConstraint(
            "gross = ledger_creator_amount + ledger_platform_amount AND ledger_creator_amount >= 0"
            " AND ledger_platform_amount >= 0",
            name="ledger_balanced",
        ),
        Index(
            "ix_gifts_creator_unfolded",
            "creator_id",
            postgresql_where=text("NOT creator_folded"),
            sqlite_where=text("creator_folded = 0"),
        ),
        Index(
            "uq_gifts_transfer_id",
            "transfer_id",
            unique=True,
            postgresql_where=text("transfer_id IS NOT NULL"),
            sqlite_where=text("transfer_id IS NOT NULL"),
        ),
        Index(
            "ix_gifts_platform_unfolded",
            "platform_folded",
            postgresql_where=text("NOT platform_folded"),
            sqlite_where=text("platform_folded = 0"),
        ),
    )

    id: Mapped[str] = mapped_column(GIFT_ID, primary_key=True)
    # Set only for gifts posted before revision 0006, whose journal is a transfer with legs.
    # No foreign key, and unique only where set (revision 0008): no gift written since 0006 sets
    # it, and every insert paid for the key's after-trigger and a NULL index entry.
    transfer_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    # No foreign keys (revision 0007): their checks cost ~11 µs per gift on PostgreSQL. The
    # write path reads both accounts in the gift's transaction and refuses a missing one, and
    # the database refuses to delete an account (trigger in 0007); the audit counts orphans
    # (`LedgerTotals.orphan_gifts`).
    sender_id: Mapped[str] = mapped_column(String(128), index=True)
    creator_id: Mapped[str] = mapped_column(String(128), index=True)
    sender_key: Mapped[str] = mapped_column(String(66))
    creator_key: Mapped[str] = mapped_column(String(66))
    gross: Mapped[int] = mapped_column(BigInteger)
    creator_amount: Mapped[int] = mapped_column(BigInteger)
    platform_amount: Mapped[int] = mapped_column(BigInteger)
    creator_bps: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="posted")
    epoch_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The gift as a journal entry (docs/ledger.md, "A gift is one row"): the sender's coins
    # are debited `gross` when the row is written; the two credits below are what the ledger
    # posted (an epoch's re-split changes `creator_amount`/`platform_amount`, never these) and
    # are folded into the creator's earnings and platform revenue later.
    ledger_creator_amount: Mapped[int] = mapped_column(BigInteger)
    ledger_platform_amount: Mapped[int] = mapped_column(BigInteger)
    creator_folded: Mapped[bool] = mapped_column(Boolean, default=False)
    platform_folded: Mapped[bool] = mapped_column(Boolean, default=False)


class Payment(Base):
    """One provider payment; credited once, reversed at most up to its amount."""

    __tablename__ = "payments"

    payment_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    reversed_amount: Mapped[int] = mapped_column(BigInteger, default=0)  # coins + debt taken back
    state: Mapped[str] = mapped_column(String(24))  # succeeded | partially_reversed | reversed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PaymentEvent(Base):
    """Every applied webhook event, inserted in the same transaction as its effect."""

    __tablename__ = "payment_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    payment_id: Mapped[str] = mapped_column(String(128), index=True)
    account_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[int] = mapped_column(BigInteger)
    credited: Mapped[int] = mapped_column(BigInteger, default=0)
    reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    debt_recorded: Mapped[int] = mapped_column(BigInteger, default=0)
    debt_repaid: Mapped[int] = mapped_column(BigInteger, default=0)
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Hold(Base):
    __tablename__ = "holds"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))  # reserved | posted | voided
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxItem(Base):
    """On-chain work the worker must do: mint (recharge), burn (reversal), payout (hold)."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("kind", "ref_id", name="uq_outbox_kind_ref_id"),
        Index("ix_outbox_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # mint | burn | payout
    amount: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[str | None] = mapped_column(String(128))
    ref_id: Mapped[str] = mapped_column(String(200))  # payment event id / hold id
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the plaintext
    scope: Mapped[str] = mapped_column(String(16))  # app | admin
    account_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
