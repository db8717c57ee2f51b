"""A gift is one journal row (revision 0006), on SQLite and PostgreSQL: it writes no transfer
or legs, its credits are unfolded until a fold flags them, every audit reader counts it,
and gifts written before 0006 (a transfer with legs) are still counted exactly once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from support_ledger import LedgerHarness
from tokenbridge.adapters.db import migrate
from tokenbridge.adapters.db.models import Account, Gift, Transfer, TransferLeg
from tokenbridge.domain import ledger as lg
from tokenbridge.services.views import PostGift


def _clean(h: LedgerHarness) -> None:
    assert h.services.ledger is not None
    t = h.services.ledger.totals()
    assert t.unbalanced_transfers == ()
    assert t.negative_accounts == ()
    assert t.cache_mismatches == ()


def _count(h: LedgerHarness, model: type) -> int:
    engine = h.services.engine
    assert engine is not None
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def _gift_row(h: LedgerHarness, gift_id: str) -> Gift:
    with h.services.uow.read() as uow:
        g = uow.session.get(Gift, gift_id)
        assert g is not None
        uow.session.expunge(g)
        return g


def test_a_gift_is_one_row_whose_credits_fold_later(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(1_000), ledger.creator()
    assert ledger.services.ledger is not None
    start = ledger.services.ledger.totals()  # the database is shared with other tests: compare deltas
    transfers, legs = _count(ledger, Transfer), _count(ledger, TransferLeg)
    gift_id = ledger.uid("g")
    receipt, created = ledger.services.gifts.post(PostGift(gift_id, alice, bob, 301))
    assert created
    assert (_count(ledger, Transfer), _count(ledger, TransferLeg)) == (transfers, legs)  # no transfer, no legs
    row = _gift_row(ledger, gift_id)
    assert row.transfer_id is None
    assert (row.ledger_creator_amount, row.ledger_platform_amount) == (receipt.creator_amount, receipt.platform_amount)
    assert row.ledger_creator_amount + row.ledger_platform_amount == 301
    assert (row.creator_folded, row.platform_folded) == (False, False)
    # unfolded, yet every reader sees the credit
    assert ledger.services.accounts.get(bob).balances.earnings == receipt.creator_amount
    assert ledger.services.accounts.get(alice).balances.coins == 1_000 - 301
    before = ledger.services.ledger.totals()
    assert (before.earnings - start.earnings, before.platform_revenue - start.platform_revenue) == (
        receipt.creator_amount,
        receipt.platform_amount,
    )
    _clean(ledger)
    assert ledger.services.ledger.fold() >= 2  # bob's earnings and platform revenue
    row = _gift_row(ledger, gift_id)
    assert (row.creator_folded, row.platform_folded) == (True, True)
    with ledger.services.uow.read() as uow:
        account = uow.session.get(Account, bob)
        assert account is not None
        assert account.earnings == receipt.creator_amount  # now in the cache
        assert uow.ledger.unfolded_sums().get(lg.earnings(bob), 0) == 0
    after = ledger.services.ledger.totals()
    assert (after.earnings, after.platform_revenue) == (before.earnings, before.platform_revenue)
    assert ledger.services.ledger.fold() == 0  # nothing left: a second fold adds nothing
    assert ledger.services.accounts.get(bob).balances.earnings == receipt.creator_amount
    _clean(ledger)


def test_the_audit_notices_a_gift_row_that_disagrees_with_the_caches(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(1_000), ledger.creator()
    gift_id = ledger.uid("g")
    ledger.services.gifts.post(PostGift(gift_id, alice, bob, 500))
    _clean(ledger)
    engine = ledger.services.engine
    assert engine is not None
    with engine.begin() as conn:  # corrupt the journal behind the ledger's back
        conn.execute(
            text("UPDATE gifts SET gross = 400, ledger_platform_amount = ledger_platform_amount - 100 WHERE id = :id"),
            {"id": gift_id},
        )
    try:
        assert ledger.services.ledger is not None
        t = ledger.services.ledger.totals()
        assert lg.coins(alice) in t.cache_mismatches  # the sender's cache says 500 were spent
    finally:  # the database is shared with the other tests of the session
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE gifts SET gross = 500, ledger_platform_amount = ledger_platform_amount + 100 WHERE id = :id"
                ),
                {"id": gift_id},
            )
    _clean(ledger)


def test_the_database_refuses_an_unbalanced_gift_row(ledger: LedgerHarness) -> None:
    from sqlalchemy.exc import IntegrityError

    alice, bob = ledger.user(1_000), ledger.creator()
    gift_id = ledger.uid("g")
    ledger.services.gifts.post(PostGift(gift_id, alice, bob, 500))
    engine = ledger.services.engine
    assert engine is not None
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE gifts SET gross = gross + 1 WHERE id = :id"), {"id": gift_id})


def test_gifts_written_before_0006_are_counted_through_their_legs_only(ledger: LedgerHarness) -> None:
    """A legacy gift: a transfer with three legs (the sender's debit folded into the cache,
    both credits unfolded) and a gift row pointing at it with both flags set."""
    alice, bob = ledger.user(1_000), ledger.creator()
    engine = ledger.services.engine
    assert engine is not None
    now = datetime.now(UTC)
    legacy = ledger.uid("legacy")
    with ledger.services.uow.write() as uow:
        s = uow.session
        sender = uow.accounts.lock(alice)
        creator = uow.accounts.get(bob)
        assert sender is not None
        assert creator is not None
        transfer = Transfer(caller_id=f"gift:{legacy}", kind="gift", request_hash="0" * 64, created_at=now)
        s.add(transfer)
        s.flush()
        for account, side, amount, folded in (
            (lg.coins(alice), "debit", 200, True),
            (lg.earnings(bob), "credit", 180, False),
            (lg.PLATFORM_REVENUE, "credit", 20, False),
        ):
            s.add(TransferLeg(transfer_id=transfer.id, account=account, side=side, amount=amount, folded=folded))
        sender.coins -= 200
        s.add(
            Gift(
                id=legacy, transfer_id=transfer.id, sender_id=alice, creator_id=bob, sender_key=sender.account_key,
                creator_key=creator.account_key, gross=200, creator_amount=180, platform_amount=20, creator_bps=9_000,
                status="posted", epoch_id=None, request_hash="0" * 64, created_at=now, ledger_creator_amount=180,
                ledger_platform_amount=20, creator_folded=True, platform_folded=True,
            )
        )  # fmt: skip
        uow.commit()
    _clean(ledger)
    assert ledger.services.ledger is not None
    platform_before = ledger.services.ledger.totals().platform_revenue
    receipt, _ = ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 100))
    assert ledger.services.accounts.get(bob).balances.earnings == 180 + receipt.creator_amount  # each once
    assert ledger.services.accounts.get(alice).balances.coins == 1_000 - 200 - 100
    _clean(ledger)
    ledger.services.ledger.fold()
    assert ledger.services.accounts.get(bob).balances.earnings == 180 + receipt.creator_amount
    t = ledger.services.ledger.totals()
    assert t.platform_revenue == platform_before + receipt.platform_amount
    _clean(ledger)


def test_downgrading_below_0006_refuses_to_drop_gift_rows(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(1_000), ledger.creator()
    ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 10))
    url = ledger.url
    with pytest.raises(RuntimeError, match="would lose them"):
        migrate.downgrade(url, "-1")  # the check runs before any change
    assert migrate.current_revision_for(url) == migrate.head_revision(url)
