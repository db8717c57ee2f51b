"""gifts as their own journal entries: one row per gift, no transfer or legs

A gift posted from this revision on is a single `gifts` row: the sender's coins debit
(`gross`, applied to the sender's cached balance when the row is written) and the two
credits (`ledger_creator_amount` to the creator's earnings, `ledger_platform_amount` to
platform revenue), each folded into its cache later (`creator_folded`, `platform_folded`).
Gifts written before it keep their transfer and legs (`transfer_id` set, both flags true).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_FK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("gifts", schema=None) as batch_op:
        batch_op.alter_column("transfer_id", existing_type=BIGINT_FK, nullable=True)
        batch_op.add_column(sa.Column("ledger_creator_amount", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("ledger_platform_amount", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("creator_folded", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("platform_folded", sa.Boolean(), nullable=False, server_default=sa.true()))
    # Older gifts: their legs are the journal (the columns mirror what the legs posted, which an
    # epoch's re-split of the receipt amounts never changed).
    op.execute(
        "UPDATE gifts SET"
        " ledger_creator_amount = COALESCE((SELECT SUM(l.amount) FROM transfer_legs AS l"
        "   WHERE l.transfer_id = gifts.transfer_id AND l.side = 'credit' AND l.account LIKE 'creator:%'), 0),"
        " ledger_platform_amount = COALESCE((SELECT SUM(l.amount) FROM transfer_legs AS l"
        "   WHERE l.transfer_id = gifts.transfer_id AND l.side = 'credit' AND l.account = 'platform:revenue'), 0)"
    )
    # The defaults only served the rows above: a future insert that forgot a flag must fail,
    # not have its credits silently treated as folded.
    with op.batch_alter_table("gifts", schema=None) as batch_op:
        for column in ("ledger_creator_amount", "ledger_platform_amount"):
            batch_op.alter_column(column, existing_type=sa.BigInteger(), server_default=None)
        for column in ("creator_folded", "platform_folded"):
            batch_op.alter_column(column, existing_type=sa.Boolean(), server_default=None)
    with op.batch_alter_table("gifts", schema=None) as batch_op:
        batch_op.create_check_constraint(
            "ledger_balanced",
            "gross = ledger_creator_amount + ledger_platform_amount AND ledger_creator_amount >= 0"
            " AND ledger_platform_amount >= 0",
        )
        batch_op.create_index(
            "ix_gifts_creator_unfolded",
            ["creator_id"],
            unique=False,
            postgresql_where=sa.text("NOT creator_folded"),
            sqlite_where=sa.text("creator_folded = 0"),
        )
        batch_op.create_index(
            "ix_gifts_platform_unfolded",
            ["platform_folded"],
            unique=False,
            postgresql_where=sa.text("NOT platform_folded"),
            sqlite_where=sa.text("platform_folded = 0"),
        )


def downgrade() -> None:
    # Gifts without legs cannot be represented by the older schema: refuse rather than lose them.
    bind = op.get_bind()
    n = bind.execute(sa.text("SELECT count(*) FROM gifts WHERE transfer_id IS NULL")).scalar()
    if n:
        raise RuntimeError(f"{n} gifts are journal rows without legs; downgrading below 0006 would lose them")
    with op.batch_alter_table("gifts", schema=None) as batch_op:
        batch_op.drop_index("ix_gifts_platform_unfolded")
        batch_op.drop_index("ix_gifts_creator_unfolded")
        batch_op.drop_constraint(op.f("ck_gifts_ledger_balanced"), type_="check")
        batch_op.drop_column("platform_folded")
        batch_op.drop_column("creator_folded")
        batch_op.drop_column("ledger_platform_amount")
        batch_op.drop_column("ledger_creator_amount")
        batch_op.alter_column("transfer_id", existing_type=BIGINT_FK, nullable=False)
