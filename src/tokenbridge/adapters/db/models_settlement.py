"""Tables of settlement (migration 0003): epochs, withdrawals and the on-chain batches.

`epochs`: one row per epoch (state open -> closed -> submitted -> settled), with its gift
root, totals, the bps the vault recorded, the rounding adjustment, and the liabilities
commitment made after it settled. `epoch_chunks`: one settle transaction per chunk of
creators. `epoch_credits`: what each creator earned in the epoch on the ledger and on-chain
(`tokenbridge reconcile` compares them with the vault). `liability_leaves`: the accounts of
an epoch's liabilities tree, so balance proofs can be served later.
`wallet_links`: a creator's payout wallet, proven by an EIP-712 signature of that wallet.
`withdrawals`: a creator's signed request; `seq` is the on-chain payout id.
`chain_batches` (+ `chain_batch_items`): a mint or burn transaction covering outbox rows.
`settlement_counters`: gap-free on-chain id sequences, bumped under a row lock.
`creator_payout_totals`: per creator, the withdrawals booked as paid (a marker for the API's cache).
Amounts are BIGINT base units; times are UTC.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, BigIntPK, UTCDateTime, utcnow


class Epoch(Base):
    __tablename__ = "epochs"
    __table_args__ = (Index("ix_epochs_state", "state"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(16))  # open | closed | submitted | settled
    bps: Mapped[int | None] = mapped_column(Integer)
    gift_count: Mapped[int] = mapped_column(BigInteger, default=0)
    gross_total: Mapped[int] = mapped_column(BigInteger, default=0)
    creator_total: Mapped[int] = mapped_column(BigInteger, default=0)  # on-chain creator credits
    rounding_total: Mapped[int] = mapped_column(BigInteger, default=0)  # platform -> creators at close
    root: Mapped[str | None] = mapped_column(String(66))
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    chunks_confirmed: Mapped[int] = mapped_column(Integer, default=0)
    settle_tx_hash: Mapped[str | None] = mapped_column(String(66))  # the last chunk's
    settled_block: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # liabilities commitment: none | submitted | committed | skipped
    liabilities_state: Mapped[str] = mapped_column(String(16), default="none")
    liabilities_root: Mapped[str | None] = mapped_column(String(66))
    liabilities_total: Mapped[int | None] = mapped_column(BigInteger)
    liabilities_tx_id: Mapped[int | None] = mapped_column(BigInteger)
    liabilities_tx_hash: Mapped[str | None] = mapped_column(String(66))
    liabilities_committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    liabilities_attempts: Mapped[int] = mapped_column(Integer, default=0)
    liabilities_solvent: Mapped[bool | None] = mapped_column(Boolean)  # vault.solvent() once committed


class EpochChunk(Base):
    __tablename__ = "epoch_chunks"

    epoch_id: Mapped[int] = mapped_column(ForeignKey("epochs.id"), primary_key=True)
    chunk_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    creators: Mapped[int] = mapped_column(Integer)
    gross: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))  # pending | submitted | confirmed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    chain_tx_id: Mapped[int | None] = mapped_column(BigInteger)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block: Mapped[int | None] = mapped_column(BigInteger)


class EpochCredit(Base):
    __tablename__ = "epoch_credits"

    epoch_id: Mapped[int] = mapped_column(ForeignKey("epochs.id"), primary_key=True)
    creator_key: Mapped[str] = mapped_column(String(66), primary_key=True)
    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    chunk_index: Mapped[int] = mapped_column(Integer)
    gross: Mapped[int] = mapped_column(BigInteger)
    ledger_credit: Mapped[int] = mapped_column(BigInteger)  # sum of per-gift floors
    chain_credit: Mapped[int] = mapped_column(BigInteger)  # floor(gross * bps / 10000)
    adjustment: Mapped[int] = mapped_column(BigInteger)  # chain_credit - ledger_credit, >= 0


class LiabilityLeaf(Base):
    __tablename__ = "liability_leaves"

    epoch_id: Mapped[int] = mapped_column(ForeignKey("epochs.id"), primary_key=True)
    account_key: Mapped[str] = mapped_column(String(66), primary_key=True)
    label: Mapped[str] = mapped_column(String(160), index=True)  # account id or system account name
    balance: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[int] = mapped_column(Integer)


class WalletLink(Base):
    __tablename__ = "wallet_links"

    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    wallet: Mapped[str] = mapped_column(String(42), index=True)  # checksummed
    deadline: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(132))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Withdrawal(Base):
    __tablename__ = "withdrawals"
    __table_args__ = (Index("ix_withdrawals_state_seq", "state", "seq"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # the client's id (signed)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)  # on-chain payout id
    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    creator_key: Mapped[str] = mapped_column(String(66))
    to_address: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(BigInteger)
    deadline: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(132))
    digest: Mapped[str] = mapped_column(String(66), unique=True)  # EIP-712 hash: replay guard
    signer: Mapped[str] = mapped_column(String(42))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # requested | submitted | confirmed | failed
    hold_id: Mapped[str] = mapped_column(String(128))
    chain_tx_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChainBatch(Base):
    """One mintForRecharges / burnForRefunds call; `id` is the on-chain batch / burn id."""

    __tablename__ = "chain_batches"
    __table_args__ = (UniqueConstraint("kind", "onchain_id", name="uq_chain_batches_kind_onchain_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # mint | burn
    onchain_id: Mapped[int] = mapped_column(BigInteger)
    epoch_id: Mapped[int | None] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    root: Mapped[str | None] = mapped_column(String(66))
    state: Mapped[str] = mapped_column(String(16))  # submitted | confirmed | failed
    chain_tx_id: Mapped[int | None] = mapped_column(BigInteger)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChainBatchItem(Base):
    __tablename__ = "chain_batch_items"

    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("chain_batches.id"), primary_key=True, index=True)


class SettlementCounter(Base):
    __tablename__ = "settlement_counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_value: Mapped[int] = mapped_column(BigInteger)


class CreatorPayoutTotal(Base):
    """Per creator, the units of withdrawals whose payout the worker has booked as confirmed (hold
    posted); only ever grows, in the transaction that posts the holds (migration 0005). The API uses
    it as a marker: what was booked after it last read `paidOut` from the vault
    (services/withdrawals.py, `ChainCreditCache`)."""

    __tablename__ = "creator_payout_totals"

    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    posted: Mapped[int] = mapped_column(BigInteger, default=0)
