"""gifts without account foreign keys; the database refuses to delete an account

The two foreign keys `gifts.sender_id -> accounts.id` and `gifts.creator_id -> accounts.id`
cost ~11 µs of PostgreSQL backend CPU per inserted gift (26 -> 15 µs without them). What they
guaranteed is kept another way: the gift write path reads both accounts in the gift's own
transaction (the sender's row locked and debited) and refuses a gift whose sender or creator
is not found before writing anything; no code path deletes an account, and from this revision
on the database refuses to (a BEFORE DELETE trigger on `accounts`, both dialects). The audit
(`LedgerService.totals().orphan_gifts`, `tokenbridge reconcile`) counts gifts whose sender or
creator has no row. The plain indexes on `sender_id` and `creator_id` stay.

SQLite drops a table's triggers with the table: a later batch migration that recreates
`accounts` must create the trigger again (the statements below).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GIFT_ACCOUNT_FKS = ("sender_id", "creator_id")
MESSAGE = "accounts are never deleted: gifts and the ledger refer to them"

GUARD = {
    "postgresql": [
        f"""
        CREATE FUNCTION tb_refuse_account_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{MESSAGE} (account %)', OLD.id USING ERRCODE = 'restrict_violation';
        END
        $$
        """,
        "CREATE TRIGGER tb_accounts_never_deleted BEFORE DELETE ON accounts"
        " FOR EACH ROW EXECUTE FUNCTION tb_refuse_account_delete()",
    ],
    "sqlite": [
        "CREATE TRIGGER tb_accounts_never_deleted BEFORE DELETE ON accounts"
        f" BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    ],
}
UNGUARD = {
    "postgresql": [
        "DROP TRIGGER tb_accounts_never_deleted ON accounts",
        "DROP FUNCTION tb_refuse_account_delete()",
    ],
    "sqlite": ["DROP TRIGGER tb_accounts_never_deleted"],
}


def upgrade() -> None:
    with op.batch_alter_table("gifts", schema=None) as batch_op:
        for column in GIFT_ACCOUNT_FKS:
            batch_op.drop_constraint(op.f(f"fk_gifts_{column}_accounts"), type_="foreignkey")
    for statement in GUARD[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade() -> None:
    for statement in UNGUARD[op.get_bind().dialect.name]:
        op.execute(statement)
    # Every gift's accounts still exist (none could be deleted), so the keys hold again; a gift
    # written by hand for a missing account makes this fail rather than be kept unchecked.
    with op.batch_alter_table("gifts", schema=None) as batch_op:
        for column in GIFT_ACCOUNT_FKS:
            batch_op.create_foreign_key(op.f(f"fk_gifts_{column}_accounts"), "accounts", [column], ["id"])
