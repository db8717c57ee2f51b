"""deposits indexer: deposits, indexer_state, indexed_blocks, alarms

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deposits",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("vault", sa.String(length=42), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("account_key", sa.String(length=66), nullable=False),
        sa.Column("from_address", sa.String(length=42), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=True),
        sa.Column("ledger_account", sa.String(length=160), nullable=True),
        sa.Column("transfer_id", sa.BigInteger(), nullable=True),
        sa.Column("seen_at", UTC_TIME, nullable=False),
        sa.Column("credited_at", UTC_TIME, nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposits")),
        sa.UniqueConstraint("tx_hash", "log_index", name="uq_deposits_tx_hash_log_index"),
    )
    with op.batch_alter_table("deposits", schema=None) as batch_op:
        batch_op.create_index("ix_deposits_vault_state_block", ["vault", "state", "block_number"], unique=False)

    op.create_table(
        "indexer_state",
        sa.Column("vault", sa.String(length=42), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("start_block", sa.BigInteger(), nullable=False),
        sa.Column("cursor_block", sa.BigInteger(), nullable=True),
        sa.Column("cursor_hash", sa.String(length=66), nullable=True),
        sa.Column("safe_block", sa.BigInteger(), nullable=True),
        sa.Column("head_block", sa.BigInteger(), nullable=True),
        sa.Column("range_size", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("vault", name=op.f("pk_indexer_state")),
    )
    op.create_table(
        "indexed_blocks",
        sa.Column("vault", sa.String(length=42), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=66), nullable=False),
        sa.PrimaryKeyConstraint("vault", "number", name=op.f("pk_indexed_blocks")),
    )
    op.create_table(
        "alarms",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("raised_at", UTC_TIME, nullable=False),
        sa.Column("cleared_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarms")),
    )
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.create_index("ix_alarms_cleared_at_kind", ["cleared_at", "kind"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.drop_index("ix_alarms_cleared_at_kind")
    op.drop_table("alarms")
    op.drop_table("indexed_blocks")
    op.drop_table("indexer_state")
    with op.batch_alter_table("deposits", schema=None) as batch_op:
        batch_op.drop_index("ix_deposits_vault_state_block")
    op.drop_table("deposits")
