"""cheaper gift inserts: ids compare bytewise on PostgreSQL (COLLATE "C"); the legacy
`transfer_id` loses its foreign key and is unique only where set; accounts keep room for
their balance updates (fillfactor 25)

Every gift inserts its id into the primary-key B-tree: about twenty comparisons each. Under a
database's locale collation (`en_US.UTF-8`, and `C.UTF-8` too before PostgreSQL 17) each one
is a `strcoll` call; under "C" it is a `memcmp`. The text comparisons were about a fifth of
PostgreSQL's CPU in the batch-gift benchmark (`perf`). Ids are `[A-Za-z0-9._@-]` (ASCII):
the order of gift ids becomes bytewise, as SQLite's already is. Under `C.UTF-8` that is no
change; under a locale such as `en_US.UTF-8` it is (`a` sorted before `B`, now after): `GET
/v1/gifts` lists in the new order, and a page cursor issued before the upgrade may skip or repeat
gifts once (docs/operations.md). No other column holds gift ids, so nothing joins this column with one of
another collation. The indexes on `gifts.id` are rebuilt; the table is not rewritten.

`gifts.transfer_id` is set only on gifts posted before 0006 (a transfer with legs); no insert
since sets it, yet each paid for its foreign key's after-trigger and a NULL entry in its unique
index (about 5% of PostgreSQL's CPU per gift together). The key goes (the ledger never deletes
a transfer) and the unique index becomes partial (`WHERE transfer_id IS NOT NULL`), which keeps
what it guaranteed: one gift per transfer. On SQLite the table is copied (batch mode).

`accounts` rows are small and every gift updates its sender's. When the sender's page has no
room, the new row version goes to another page and every index of `accounts` gets an entry, and
the primary key's uniqueness check then visits the row's dead versions: with ten 1,000-gift
batches in flight on the same senders that cost PostgreSQL 34 µs per gift instead of 15
(`perf`: B-tree inserts, bottom-up deletion and unique checks inside the UPDATE). With pages
filled to 25 % by inserts, an update finds room on its own page (a HOT update: no index
entries). The table grows to about 4 times its packed size. The setting applies to pages
written from now on; `VACUUM FULL accounts` (an exclusive lock) applies it to existing rows.
PostgreSQL only: SQLite has no fillfactor.

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


SET = sa.text("transfer_id IS NOT NULL")


ACCOUNTS_FILLFACTOR = 25


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("gifts", "id", type_=sa.String(128, collation="C"), existing_nullable=False)
        op.execute(f"ALTER TABLE accounts SET (fillfactor = {ACCOUNTS_FILLFACTOR})")
    with op.batch_alter_table("gifts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_gifts_transfer_id_transfers"), type_="foreignkey")
        batch_op.drop_constraint(op.f("uq_gifts_transfer_id"), type_="unique")
        batch_op.create_index(
            "uq_gifts_transfer_id", ["transfer_id"], unique=True, postgresql_where=SET, sqlite_where=SET
        )


def downgrade() -> None:
    with op.batch_alter_table("gifts", schema=None) as batch_op:
        batch_op.drop_index("uq_gifts_transfer_id")
        batch_op.create_unique_constraint(op.f("uq_gifts_transfer_id"), ["transfer_id"])
        batch_op.create_foreign_key(op.f("fk_gifts_transfer_id_transfers"), "transfers", ["transfer_id"], ["id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE accounts RESET (fillfactor)")
        op.alter_column("gifts", "id", type_=sa.String(128), existing_nullable=False)
