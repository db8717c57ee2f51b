"""withdrawal batching: creator_payout_totals (booked payouts per creator), payout_id_seq

On PostgreSQL payout ids come from the sequence `payout_id_seq` from now on (started after the
`payout_id` counter and every existing id); SQLite keeps the counter row.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "creator_payout_totals",
        sa.Column("creator_id", sa.String(length=128), nullable=False),
        sa.Column("posted", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["accounts.id"], name=op.f("fk_creator_payout_totals_creator_id_accounts")
        ),
        sa.PrimaryKeyConstraint("creator_id", name=op.f("pk_creator_payout_totals")),
    )
    # what was booked before this revision (the API only uses differences, but keep the total true)
    op.execute(
        "INSERT INTO creator_payout_totals (creator_id, posted) "
        "SELECT creator_id, SUM(amount) FROM withdrawals WHERE state = 'confirmed' GROUP BY creator_id"
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE payout_id_seq")
        op.execute(
            "SELECT setval('payout_id_seq', GREATEST("
            "COALESCE((SELECT next_value FROM settlement_counters WHERE name = 'payout_id'), 1), "
            "COALESCE((SELECT MAX(seq) + 1 FROM withdrawals), 1)), false)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # hand the ids back to the counter row the older code bumps
        op.execute(
            "INSERT INTO settlement_counters (name, next_value) "
            "SELECT 'payout_id', COALESCE(MAX(seq) + 1, 1) FROM withdrawals "
            "ON CONFLICT (name) DO UPDATE "
            "SET next_value = GREATEST(settlement_counters.next_value, EXCLUDED.next_value)"
        )
        op.execute("DROP SEQUENCE payout_id_seq")
    op.drop_table("creator_payout_totals")
