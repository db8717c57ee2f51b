"""Gifts have no foreign keys to `accounts` (revision 0007), on SQLite and PostgreSQL: the
database refuses to delete any account instead, the audit counts gifts whose sender or creator
has no row (`LedgerTotals.orphan_gifts`, a `ledger.orphan_gifts` reconcile difference), and
downgrading below 0007 brings the keys back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, inspect, select, text
from sqlalchemy.exc import IntegrityError

from support_ledger import LedgerHarness, own_ledger
from tokenbridge.adapters.db import migrate
from tokenbridge.adapters.db.models import Account
from tokenbridge.services.reconcile import ReconcileService
from tokenbridge.services.views import PostGift

GIFT_ACCOUNT_FKS = {("sender_id", "accounts"), ("creator_id", "accounts")}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerHarness]:
    """A database of this test's own: it writes orphans, drops the trigger, migrates down."""
    with own_ledger(request.param, tmp_path, "tb_orphans") as h:
        yield h


def _engine(h: LedgerHarness) -> Any:
    engine = h.services.engine
    assert engine is not None
    return engine


def _accounts(h: LedgerHarness, ids: list[str]) -> set[str]:
    with _engine(h).connect() as conn:
        return set(conn.scalars(select(Account.id).where(Account.id.in_(ids))))


def _orphans(h: LedgerHarness) -> int:
    assert h.services.ledger is not None
    return h.services.ledger.totals().orphan_gifts


def _gift_fks(h: LedgerHarness) -> set[tuple[str, str]]:
    # a fresh connection: SQLite's PRAGMA foreign_key_list answers from a pooled connection's
    # schema as it was before the migration ran
    _engine(h).dispose()
    with _engine(h).connect() as conn:
        return {
            (fk["constrained_columns"][0], fk["referred_table"])
            for fk in inspect(conn).get_foreign_keys("gifts")
            if fk["referred_table"] == "accounts"
        }


def _orphan_gift(h: LedgerHarness, sender: str, creator: str) -> str:
    """A gift row written by hand (no service would write it), for accounts that may not exist."""
    gift_id = h.uid("orphan")
    with _engine(h).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO gifts (id, sender_id, creator_id, sender_key, creator_key, gross, creator_amount,"
                " platform_amount, creator_bps, status, request_hash, created_at, ledger_creator_amount,"
                " ledger_platform_amount, creator_folded, platform_folded) VALUES (:id, :s, :c, '0x', '0x',"
                " 0, 0, 0, 7000, 'posted', 'h', CURRENT_TIMESTAMP, 0, 0, :t, :t)"
            ),
            {"id": gift_id, "s": sender, "c": creator, "t": True},
        )
    return gift_id


class _Vault:
    """Enough of a vault for reconcile to run its ledger checks; its own checks are not looked at."""

    address = "0x" + "00" * 20

    def reserve(self) -> int:
        return 0

    def earned(self, creator_key: bytes) -> int:
        return 0

    def paid_out(self, creator_key: bytes) -> int:
        return 0

    def is_minted(self, batch_id: int) -> bool:
        return False

    def is_burned(self, burn_id: int) -> bool:
        return False

    def is_paid_out(self, payout_id: int) -> bool:
        return False

    def epoch(self, epoch_id: int) -> Any:
        return None


def test_deleting_an_account_is_refused_with_or_without_gifts(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(500), ledger.creator()
    _, created = ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 100))
    assert created
    # no gifts, no payments, no holds: nothing but the trigger refers to these two
    idle_user, idle_creator = ledger.user(), ledger.creator()
    everyone = [alice, bob, idle_user, idle_creator]
    for account_id in everyone:
        with pytest.raises(IntegrityError, match="accounts are never deleted"), _engine(ledger).begin() as conn:
            conn.execute(delete(Account).where(Account.id == account_id))
    with pytest.raises(IntegrityError), _engine(ledger).begin() as conn:  # a set-based delete too
        conn.execute(delete(Account).where(Account.id.in_([idle_user, idle_creator])))
    assert _accounts(ledger, everyone) == set(everyone)


def test_orphan_gifts_are_counted_and_reported(own_db: LedgerHarness) -> None:
    h = own_db
    alice, bob = h.user(1_000), h.creator()
    for amount in (100, 250):
        assert h.services.gifts.post(PostGift(h.uid("g"), alice, bob, amount))[1]
    assert _orphans(h) == 0
    assert _gift_fks(h) == set()  # nothing but the write path and the trigger keeps them whole

    # With the trigger intact, a gift naming a missing sender is accepted: the audit must see it.
    ghost = h.uid("ghost")
    _orphan_gift(h, ghost, bob)
    assert _orphans(h) == 1
    _orphan_gift(h, alice, ghost)
    _orphan_gift(h, ghost, ghost)
    assert _orphans(h) == 3

    # An account deleted behind the trigger's back orphans its gifts (none of them counted twice).
    carol = h.creator()
    assert h.services.gifts.post(PostGift(h.uid("g"), alice, carol, 50))[1]
    engine = _engine(h)
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER tb_accounts_never_deleted" + (" ON accounts" if _is_pg(h) else "")))
        conn.execute(delete(Account).where(Account.id == carol))
    assert _orphans(h) == 4

    report = ReconcileService(h.services.uow, _Vault()).run()
    orphans = [d for d in report.differences if d.check == "ledger.orphan_gifts"]
    assert [(d.subject, d.expected, d.actual) for d in orphans] == [("gifts", 0, 4)]


def test_downgrade_below_0007_restores_the_keys_and_refuses_orphans(own_db: LedgerHarness) -> None:
    h = own_db
    alice, bob = h.user(300), h.creator()
    assert h.services.gifts.post(PostGift(h.uid("g"), alice, bob, 100))[1]
    migrate.downgrade(h.url, "0006")
    assert _gift_fks(h) == GIFT_ACCOUNT_FKS
    idle = h.creator()
    with _engine(h).begin() as conn:  # no trigger any more: an account nothing refers to can go
        conn.execute(delete(Account).where(Account.id == idle))
    migrate.upgrade(h.url)
    assert _gift_fks(h) == set()

    ghost = _orphan_gift(h, h.uid("ghost"), bob)
    migrate.downgrade(h.url, "0007")  # the later revisions first (SQLite commits each step)
    with pytest.raises(IntegrityError):
        migrate.downgrade(h.url, "0006")
    assert migrate.current_revision_for(h.url) == "0007"
    with _engine(h).begin() as conn:
        conn.execute(text("DELETE FROM gifts WHERE id = :id"), {"id": ghost})
    migrate.downgrade(h.url, "0006")
    assert _gift_fks(h) == GIFT_ACCOUNT_FKS


def _is_pg(h: LedgerHarness) -> bool:
    return bool(_engine(h).dialect.name == "postgresql")
