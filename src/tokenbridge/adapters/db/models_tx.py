"""Tables of the transaction manager (migration 0002).

`signers`: one row per hot key: the local nonce cursor (the next nonce to assign, NULL until
first synced with the chain) and the leader lease (`lease_holder` until `lease_expires_at`;
`lease_token` grows on every change of holder, a fencing token).
`chain_txs`: one row per intended call, with its nonce (unique per signer) and state.
`chain_tx_attempts`: every signed version of that call (same nonce, same content, rising
fees), with the exact raw bytes that are (re)broadcast; the hash is unique.
Fees are NUMERIC(78,0) (a uint256 fits); gas and nonces are BIGINT.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .models import Base, BigIntPK, UTCDateTime, utcnow

SQLITE_MAX_INT = 2**63 - 1


class Wei(TypeDecorator[int]):
    """A non-negative integer amount of wei as NUMERIC(78,0), read back as a Python int.

    SQLite stores a NUMERIC above 2**63 - 1 as a float, so there such values are refused
    loudly instead of silently rounded (fees and gas prices are far below it).
    """

    impl = Numeric(78, 0)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"wei amounts are non-negative ints, got {value!r}")
        if dialect.name == "sqlite" and value > SQLITE_MAX_INT:
            raise ValueError(f"{value} wei does not fit SQLite's integers")
        return Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:  # noqa: ARG002
        if value is None:
            return None
        return int(value)


class Signer(Base):
    __tablename__ = "signers"
    __table_args__ = (CheckConstraint("next_nonce IS NULL OR next_nonce >= 0", name="next_nonce_non_negative"),)

    address: Mapped[str] = mapped_column(String(42), primary_key=True)  # checksummed
    chain_id: Mapped[int | None] = mapped_column(BigInteger)
    next_nonce: Mapped[int | None] = mapped_column(BigInteger)
    lease_holder: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChainTx(Base):
    __tablename__ = "chain_txs"
    __table_args__ = (
        UniqueConstraint("signer", "nonce", name="uq_chain_txs_signer_nonce"),
        UniqueConstraint("purpose", "ref", name="uq_chain_txs_purpose_ref"),
        Index("ix_chain_txs_signer_state", "signer", "state"),
        Index("ix_chain_txs_purpose_handled", "purpose", "handled_at"),
        CheckConstraint("nonce >= 0", name="nonce_non_negative"),
        CheckConstraint("gas > 0", name="gas_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    signer: Mapped[str] = mapped_column(ForeignKey("signers.address"))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    nonce: Mapped[int] = mapped_column(BigInteger)
    purpose: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(200))
    to_address: Mapped[str] = mapped_column(String(42))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    value: Mapped[int] = mapped_column(Wei(), default=0)
    gas: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    # set once mined (cleared again by a reorg)
    mined_hash: Mapped[str | None] = mapped_column(String(66))
    mined_block: Mapped[int | None] = mapped_column(BigInteger)
    mined_block_hash: Mapped[str | None] = mapped_column(String(66))
    receipt_status: Mapped[int | None] = mapped_column(Integer)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    effective_gas_price: Mapped[int | None] = mapped_column(Wei())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    final_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    attempts: Mapped[list[ChainTxAttempt]] = relationship(
        back_populates="tx", order_by="ChainTxAttempt.seq", lazy="selectin"
    )


class ChainTxAttempt(Base):
    __tablename__ = "chain_tx_attempts"
    __table_args__ = (
        UniqueConstraint("tx_id", "seq", name="uq_chain_tx_attempts_tx_id_seq"),
        CheckConstraint("max_priority_fee_per_gas <= max_fee_per_gas", name="tip_within_max_fee"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tx_id: Mapped[int] = mapped_column(ForeignKey("chain_txs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # 0 = first signature, 1.. = fee bumps or a cancel
    # call: the tx's own content; cancel: a 0-value self-transfer filling the same nonce
    kind: Mapped[str] = mapped_column(String(8), default="call")
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    max_fee_per_gas: Mapped[int] = mapped_column(Wei())
    max_priority_fee_per_gas: Mapped[int] = mapped_column(Wei())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_broadcast_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    broadcasts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)

    tx: Mapped[ChainTx] = relationship(back_populates="attempts")
