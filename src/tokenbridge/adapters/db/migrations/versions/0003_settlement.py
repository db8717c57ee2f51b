"""settlement: epochs (+ chunks, credits, liability leaves), wallet links, withdrawals, mint/burn batches

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "chain_batches",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("onchain_id", sa.BigInteger(), nullable=False),
        sa.Column("epoch_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(length=66), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("chain_tx_id", sa.BigInteger(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_batches")),
        sa.UniqueConstraint("kind", "onchain_id", name="uq_chain_batches_kind_onchain_id"),
    )
    op.create_table(
        "epochs",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("bps", sa.Integer(), nullable=True),
        sa.Column("gift_count", sa.BigInteger(), nullable=False),
        sa.Column("gross_total", sa.BigInteger(), nullable=False),
        sa.Column("creator_total", sa.BigInteger(), nullable=False),
        sa.Column("rounding_total", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(length=66), nullable=True),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("chunks_confirmed", sa.Integer(), nullable=False),
        sa.Column("settle_tx_hash", sa.String(length=66), nullable=True),
        sa.Column("settled_block", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("closed_at", UTC_TIME, nullable=True),
        sa.Column("settled_at", UTC_TIME, nullable=True),
        sa.Column("liabilities_state", sa.String(length=16), nullable=False),
        sa.Column("liabilities_root", sa.String(length=66), nullable=True),
        sa.Column("liabilities_total", sa.BigInteger(), nullable=True),
        sa.Column("liabilities_tx_id", sa.BigInteger(), nullable=True),
        sa.Column("liabilities_tx_hash", sa.String(length=66), nullable=True),
        sa.Column("liabilities_committed_at", UTC_TIME, nullable=True),
        sa.Column("liabilities_attempts", sa.Integer(), nullable=False),
        sa.Column("liabilities_solvent", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_epochs")),
    )
    with op.batch_alter_table("epochs", schema=None) as batch_op:
        batch_op.create_index("ix_epochs_state", ["state"], unique=False)

    op.create_table(
        "settlement_counters",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("next_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_settlement_counters")),
    )
    op.create_table(
        "chain_batch_items",
        sa.Column("outbox_id", BIGINT_PK, nullable=False),
        sa.Column("batch_id", BIGINT_PK, nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["chain_batches.id"], name=op.f("fk_chain_batch_items_batch_id_chain_batches")
        ),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], name=op.f("fk_chain_batch_items_outbox_id_outbox")),
        sa.PrimaryKeyConstraint("outbox_id", "batch_id", name=op.f("pk_chain_batch_items")),
    )
    with op.batch_alter_table("chain_batch_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chain_batch_items_batch_id"), ["batch_id"], unique=False)

    op.create_table(
        "epoch_chunks",
        sa.Column("epoch_id", sa.BigInteger(), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("creators", sa.Integer(), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("chain_tx_id", sa.BigInteger(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["epoch_id"], ["epochs.id"], name=op.f("fk_epoch_chunks_epoch_id_epochs")),
        sa.PrimaryKeyConstraint("epoch_id", "chunk_index", name=op.f("pk_epoch_chunks")),
    )
    op.create_table(
        "epoch_credits",
        sa.Column("epoch_id", sa.BigInteger(), nullable=False),
        sa.Column("creator_key", sa.String(length=66), nullable=False),
        sa.Column("creator_id", sa.String(length=128), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("ledger_credit", sa.BigInteger(), nullable=False),
        sa.Column("chain_credit", sa.BigInteger(), nullable=False),
        sa.Column("adjustment", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["creator_id"], ["accounts.id"], name=op.f("fk_epoch_credits_creator_id_accounts")),
        sa.ForeignKeyConstraint(["epoch_id"], ["epochs.id"], name=op.f("fk_epoch_credits_epoch_id_epochs")),
        sa.PrimaryKeyConstraint("epoch_id", "creator_key", name=op.f("pk_epoch_credits")),
    )
    with op.batch_alter_table("epoch_credits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_epoch_credits_creator_id"), ["creator_id"], unique=False)

    op.create_table(
        "liability_leaves",
        sa.Column("epoch_id", sa.BigInteger(), nullable=False),
        sa.Column("account_key", sa.String(length=66), nullable=False),
        sa.Column("label", sa.String(length=160), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["epoch_id"], ["epochs.id"], name=op.f("fk_liability_leaves_epoch_id_epochs")),
        sa.PrimaryKeyConstraint("epoch_id", "account_key", name=op.f("pk_liability_leaves")),
    )
    with op.batch_alter_table("liability_leaves", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_liability_leaves_label"), ["label"], unique=False)

    op.create_table(
        "wallet_links",
        sa.Column("creator_id", sa.String(length=128), nullable=False),
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.String(length=132), nullable=False),
        sa.Column("linked_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["creator_id"], ["accounts.id"], name=op.f("fk_wallet_links_creator_id_accounts")),
        sa.PrimaryKeyConstraint("creator_id", name=op.f("pk_wallet_links")),
    )
    with op.batch_alter_table("wallet_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wallet_links_wallet"), ["wallet"], unique=False)

    op.create_table(
        "withdrawals",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("creator_id", sa.String(length=128), nullable=False),
        sa.Column("creator_key", sa.String(length=66), nullable=False),
        sa.Column("to_address", sa.String(length=42), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.String(length=132), nullable=False),
        sa.Column("digest", sa.String(length=66), nullable=False),
        sa.Column("signer", sa.String(length=42), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("hold_id", sa.String(length=128), nullable=False),
        sa.Column("chain_tx_id", sa.BigInteger(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("submitted_at", UTC_TIME, nullable=True),
        sa.Column("finished_at", UTC_TIME, nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["creator_id"], ["accounts.id"], name=op.f("fk_withdrawals_creator_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_withdrawals")),
        sa.UniqueConstraint("digest", name=op.f("uq_withdrawals_digest")),
        sa.UniqueConstraint("seq", name=op.f("uq_withdrawals_seq")),
    )
    with op.batch_alter_table("withdrawals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_withdrawals_chain_tx_id"), ["chain_tx_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_withdrawals_creator_id"), ["creator_id"], unique=False)
        batch_op.create_index("ix_withdrawals_state_seq", ["state", "seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("withdrawals", schema=None) as batch_op:
        batch_op.drop_index("ix_withdrawals_state_seq")
        batch_op.drop_index(batch_op.f("ix_withdrawals_creator_id"))
        batch_op.drop_index(batch_op.f("ix_withdrawals_chain_tx_id"))

    op.drop_table("withdrawals")
    with op.batch_alter_table("wallet_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wallet_links_wallet"))

    op.drop_table("wallet_links")
    with op.batch_alter_table("liability_leaves", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_liability_leaves_label"))

    op.drop_table("liability_leaves")
    with op.batch_alter_table("epoch_credits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_epoch_credits_creator_id"))

    op.drop_table("epoch_credits")
    op.drop_table("epoch_chunks")
    with op.batch_alter_table("chain_batch_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chain_batch_items_batch_id"))

    op.drop_table("chain_batch_items")
    op.drop_table("settlement_counters")
    with op.batch_alter_table("epochs", schema=None) as batch_op:
        batch_op.drop_index("ix_epochs_state")

    op.drop_table("epochs")
    op.drop_table("chain_batches")
