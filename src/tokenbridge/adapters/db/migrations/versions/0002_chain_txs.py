"""transaction manager: signers (nonce cursor + leader lease), chain_txs, chain_tx_attempts

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WEI = sa.Numeric(precision=78, scale=0)
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signers",
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=True),
        sa.Column("next_nonce", sa.BigInteger(), nullable=True),
        sa.Column("lease_holder", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", UTC_TIME, nullable=True),
        sa.Column("lease_token", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.CheckConstraint("next_nonce IS NULL OR next_nonce >= 0", name=op.f("ck_signers_next_nonce_non_negative")),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_signers")),
    )
    op.create_table(
        "chain_txs",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("signer", sa.String(length=42), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("to_address", sa.String(length=42), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("value", WEI, nullable=False),
        sa.Column("gas", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("mined_hash", sa.String(length=66), nullable=True),
        sa.Column("mined_block", sa.BigInteger(), nullable=True),
        sa.Column("mined_block_hash", sa.String(length=66), nullable=True),
        sa.Column("receipt_status", sa.Integer(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("effective_gas_price", WEI, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column("final_at", UTC_TIME, nullable=True),
        sa.Column("handled_at", UTC_TIME, nullable=True),
        sa.CheckConstraint("gas > 0", name=op.f("ck_chain_txs_gas_positive")),
        sa.CheckConstraint("nonce >= 0", name=op.f("ck_chain_txs_nonce_non_negative")),
        sa.ForeignKeyConstraint(["signer"], ["signers.address"], name=op.f("fk_chain_txs_signer_signers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_txs")),
        sa.UniqueConstraint("purpose", "ref", name="uq_chain_txs_purpose_ref"),
        sa.UniqueConstraint("signer", "nonce", name="uq_chain_txs_signer_nonce"),
    )
    with op.batch_alter_table("chain_txs", schema=None) as batch_op:
        batch_op.create_index("ix_chain_txs_purpose_handled", ["purpose", "handled_at"], unique=False)
        batch_op.create_index("ix_chain_txs_signer_state", ["signer", "state"], unique=False)

    op.create_table(
        "chain_tx_attempts",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("tx_id", BIGINT_PK, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("max_fee_per_gas", WEI, nullable=False),
        sa.Column("max_priority_fee_per_gas", WEI, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("first_broadcast_at", UTC_TIME, nullable=True),
        sa.Column("broadcasts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "max_priority_fee_per_gas <= max_fee_per_gas", name=op.f("ck_chain_tx_attempts_tip_within_max_fee")
        ),
        sa.ForeignKeyConstraint(["tx_id"], ["chain_txs.id"], name=op.f("fk_chain_tx_attempts_tx_id_chain_txs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_tx_attempts")),
        sa.UniqueConstraint("tx_hash", name=op.f("uq_chain_tx_attempts_tx_hash")),
        sa.UniqueConstraint("tx_id", "seq", name="uq_chain_tx_attempts_tx_id_seq"),
    )
    with op.batch_alter_table("chain_tx_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chain_tx_attempts_tx_id"), ["tx_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("chain_tx_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chain_tx_attempts_tx_id"))
    op.drop_table("chain_tx_attempts")
    with op.batch_alter_table("chain_txs", schema=None) as batch_op:
        batch_op.drop_index("ix_chain_txs_signer_state")
        batch_op.drop_index("ix_chain_txs_purpose_handled")
    op.drop_table("chain_txs")
    op.drop_table("signers")
