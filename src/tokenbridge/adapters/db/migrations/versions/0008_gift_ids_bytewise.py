"""gift ids compare bytewise on PostgreSQL (COLLATE "C")

Every gift inserts its id into the primary-key B-tree: about twenty comparisons each. Under a
database's locale collation (`en_US.UTF-8`, and `C.UTF-8` too before PostgreSQL 17) each one
is a `strcoll` call; under "C" it is a `memcmp`. The text comparisons were about a fifth of
PostgreSQL's CPU in the batch-gift benchmark (`perf`). Ids are `[A-Za-z0-9._@-]` (ASCII), so
the order does not change for any locale whose ASCII order is bytewise, and SQLite already
compares bytewise. No other column holds gift ids, so nothing joins this column with one of
another collation. The indexes on `gifts.id` are rebuilt; the table is not rewritten.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("gifts", "id", type_=sa.String(128, collation="C"), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("gifts", "id", type_=sa.String(128), existing_nullable=False)
