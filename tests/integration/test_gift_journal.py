"""A gift is one journal row (revision 0006), on SQLite and PostgreSQL: it writes no transfer
or legs, its credits are unfolded until a fold flags them, every audit reader counts it,
and gifts written before 0006 (a transfer with legs) are still counted exactly once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from support_ledger import LedgerHarness, own_ledger
from tokenbridge.adapters.db import migrate
from tokenbridge.adapters.db.models import Account, Gift, Transfer, TransferLeg
from tokenbridge.adapters.db.repositories import _PLATFORM_UNFOLDED
from tokenbridge.domain import ledger as lg
from tokenbridge.domain.epoch import CreatorCredit
from tokenbridge.services.epochs import lock_adjusted_accounts, post_adjustment
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
    ledger.services.ledger.fold()  # a second fold finds nothing of this gift to add
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
    _legacy_gift(ledger, alice, bob)
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


def test_a_transfer_still_backs_at_most_one_gift(ledger: LedgerHarness) -> None:
    """0008 made `transfer_id` unique only where set (new gifts leave it NULL): two gift rows on
    one legacy transfer are still refused."""
    alice, bob = ledger.user(1_000), ledger.creator()
    legacy = _legacy_gift(ledger, alice, bob)
    engine = ledger.services.engine
    assert engine is not None
    copy = ", ".join(c.name for c in Gift.__table__.columns if c.name != "id")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO gifts (id, {copy}) SELECT :new, {copy} FROM gifts WHERE id = :old"),  # noqa: S608 - column names from the model
            {"new": ledger.uid("g"), "old": legacy},
        )
    for _ in range(2):  # while any number of gifts have no transfer
        assert ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 1))[1]
    _clean(ledger)


def test_downgrading_below_0006_refuses_to_drop_gift_rows(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(1_000), ledger.creator()
    ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 10))
    url = ledger.url
    migrate.downgrade(url, "0006")  # 0007 (no account keys on gifts) goes back first
    try:
        with pytest.raises(RuntimeError, match="would lose them"):
            migrate.downgrade(url, "-1")  # the check runs before any change
        assert migrate.current_revision_for(url) == "0006"
    finally:
        migrate.upgrade(url)  # the database is shared with other tests
    assert migrate.current_revision_for(url) == migrate.head_revision(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerHarness]:
    """A database of this test's own (migrations up and down, EXPLAIN on known contents)."""
    with own_ledger(request.param, tmp_path, "tb_journal") as h:
        yield h


def test_upgrading_to_0006_takes_a_legacy_gifts_ledger_amounts_from_its_legs(own_db: LedgerHarness) -> None:
    """A legacy gift whose receipt an epoch re-split (creator_amount 170, platform 30) while its
    legs posted 180/20: after 0005 -> 0006 the ledger columns hold what the legs posted."""
    h = own_db
    alice, bob = h.user(1_000), h.creator()
    # the receipt re-split to 170/30 at 8,500 bps; the ledger columns hold anything but the legs' 180/20
    legacy = _legacy_gift(h, alice, bob, receipt=(170, 30, 8_500), ledger_columns=(0, 200))
    migrate.downgrade(h.url, "0005")  # allowed: every gift has its legs
    migrate.upgrade(h.url)
    row = _gift_row(h, legacy)
    assert (row.ledger_creator_amount, row.ledger_platform_amount) == (180, 20)
    assert (row.creator_amount, row.platform_amount) == (170, 30)  # the receipt's split is kept
    assert (row.creator_folded, row.platform_folded) == (True, True)
    _clean(h)
    engine = h.services.engine
    assert engine is not None
    with pytest.raises(IntegrityError), engine.begin() as conn:  # no default left to fill a forgotten flag
        conn.execute(
            text(
                "INSERT INTO gifts (id, sender_id, creator_id, sender_key, creator_key, gross, creator_amount,"
                " platform_amount, creator_bps, status, request_hash, created_at, ledger_creator_amount,"
                " ledger_platform_amount) VALUES ('x', :a, :b, '0x', '0x', 10, 7, 3, 7000, 'posted', 'h',"
                " CURRENT_TIMESTAMP, 7, 3)"
            ),
            {"a": alice, "b": bob},
        )


def test_the_unfolded_gift_reads_can_use_their_partial_index(own_db: LedgerHarness) -> None:
    """The readers' predicate must be the partial index's own (`NOT platform_folded`), or the
    database cannot use the index and every platform-revenue read scans all gifts ever."""
    h = own_db
    engine = h.services.engine
    assert engine is not None
    query = select(func.sum(Gift.ledger_platform_amount)).where(_PLATFORM_UNFOLDED)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            sql = str(query.compile(dialect=postgresql.dialect()))
            conn.execute(text("SET enable_seqscan = off"))  # only an unusable index loses to this
            plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
        else:
            sql = str(query.compile(dialect=conn.dialect))
            plan = "\n".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
    assert "ix_gifts_platform_unfolded" in plan, plan


def test_an_epoch_close_locks_adjusted_creators_before_a_fold_can_deadlock_it(own_db: LedgerHarness) -> None:
    """Lock order "account rows, then gift rows": the close locks the creators it will adjust
    before it writes any gift row, so a withdrawal's fold of one of them (creator row, then its
    gift rows) waits for the close instead of deadlocking with it."""
    h = own_db
    u, c1, c2 = h.user(10_000), h.creator(), h.creator()
    g1, g2 = h.uid("g"), h.uid("g")
    h.services.gifts.post(PostGift(g1, u, c1, 1_000))
    h.services.gifts.post(PostGift(g2, u, c2, 1_000))
    uowf = h.services.uow
    first_done, fold_started = threading.Event(), threading.Event()
    errors: dict[str, BaseException] = {}

    def epoch_close() -> None:  # what EpochService._apply_plan does, with two negative adjustments
        try:
            with uowf.write() as uow:
                s = uow.session
                lock_adjusted_accounts(uow, [_credit(c1, -10), _credit(c2, -10)])
                for g in s.scalars(select(Gift).where(Gift.id.in_([g1, g2]))).all():
                    g.creator_amount, g.platform_amount = g.creator_amount - 10, g.platform_amount + 10
                now = datetime.now(UTC)
                post_adjustment(uow, 999, c1, -10, now)  # flushes the gift rows
                first_done.set()
                fold_started.wait(10)
                post_adjustment(uow, 999, c2, -10, now)
                uow.commit()
        except BaseException as exc:
            errors["close"] = exc

    def withdrawal_fold() -> None:
        first_done.wait(10)
        try:
            fold_started.set()  # it will now wait for c2's row, which the close holds
            with uowf.write() as uow:
                uow.accounts.lock(c2)
                uow.ledger.fold(lg.earnings(c2))
                uow.commit()
        except BaseException as exc:
            errors["fold"] = exc

    threads = [threading.Thread(target=epoch_close), threading.Thread(target=withdrawal_fold)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == {}
    assert h.services.accounts.get(c2).balances.earnings == 700 - 10
    _clean(h)


def _credit(creator_id: str, adjustment: int) -> CreatorCredit:
    return CreatorCredit(
        creator_id=creator_id, creator_key="0x" + "00" * 32, gross=1_000, ledger_credit=700,
        chain_credit=700 + adjustment,
    )  # fmt: skip


@pytest.fixture
def own_pg(tmp_path: Path) -> Iterator[LedgerHarness]:
    """A PostgreSQL database of this test's own (SQLite readers see one snapshot per transaction)."""
    with own_ledger("postgres", tmp_path, "tb_journal") as h:
        yield h


@pytest.mark.postgres
def test_platform_revenue_is_read_in_one_statement_so_a_concurrent_fold_is_never_half_seen(
    own_pg: LedgerHarness,
) -> None:
    h = own_pg
    engine = h.services.engine
    assert engine is not None
    u, c = h.user(1_000), h.creator()
    h.services.gifts.post(PostGift(h.uid("g"), u, c, 1_000))
    uowf = h.services.uow
    with uowf.read() as uow:
        expected = uow.ledger.system_balance(lg.PLATFORM_REVENUE)
    after_the_read = _fold_once_after(engine, lambda sql: "system_balances" in sql and "UPDATE" not in sql, h)
    with after_the_read as fired, uowf.read() as uow:
        got = uow.ledger.system_balance(lg.PLATFORM_REVENUE)
    assert fired
    assert got == expected == 300


@pytest.mark.postgres
def test_status_reads_liabilities_in_one_snapshot_while_a_fold_commits(own_pg: LedgerHarness) -> None:
    """`tokenbridge status` sums cached balances, unfolded credits and platform revenue in several
    statements; a fold committing between them must not make its amount vanish (or count twice)."""
    from tokenbridge.services.status import StatusService

    h = own_pg
    engine = h.services.engine
    assert engine is not None
    u, c = h.user(1_000), h.creator()
    h.services.gifts.post(PostGift(h.uid("g"), u, c, 1_000))
    uowf = h.services.uow
    before = StatusService(uowf).report().solvency.liabilities
    assert before == 1_000  # 0 coins left + 700 earnings + 300 revenue, all unfolded
    with _fold_once_after(engine, lambda sql: "sum(accounts.coins)" in sql, h) as fired:
        during = StatusService(uowf).report().solvency.liabilities
    assert fired
    assert during == before == StatusService(uowf).report().solvency.liabilities


@contextmanager
def _fold_once_after(engine: Any, matches: Callable[[str], bool], h: LedgerHarness) -> Iterator[list[int]]:
    """While open: right after the first statement that `matches` runs, every unfolded credit is
    folded and committed by another transaction (a fold landing between two reads). The list
    holds one item once that happened."""
    fired: list[int] = []

    def fold(conn: object, cursor: object, statement: str, *args: object) -> None:
        if matches(statement) and not fired:
            fired.append(1)
            assert h.services.ledger is not None
            h.services.ledger.fold()

    event.listen(engine, "after_cursor_execute", fold)
    try:
        yield fired
    finally:
        event.remove(engine, "after_cursor_execute", fold)


def _legacy_gift(
    h: LedgerHarness,
    alice: str,
    bob: str,
    *,
    receipt: tuple[int, int, int] = (180, 20, 9_000),
    ledger_columns: tuple[int, int] = (180, 20),
) -> str:
    """A gift as written before 0006: a transfer with three legs posting 200 = 180 + 20 (the
    sender's debit folded into the cache, both credits unfolded) and a gift row pointing at it
    with both flags set; `receipt` is the row's (creator, platform, bps) split."""
    now = datetime.now(UTC)
    legacy = h.uid("legacy")
    with h.services.uow.write() as uow:
        s = uow.session
        sender = uow.accounts.lock(alice)
        creator = uow.accounts.get(bob)
        assert sender is not None
        assert creator is not None
        transfer = Transfer(caller_id=f"gift:{legacy}", kind="gift", request_hash="0" * 64, created_at=now)
        s.add(transfer)
        s.flush()
        for account, side, amount in (
            (lg.coins(alice), "debit", 200),
            (lg.earnings(bob), "credit", 180),
            (lg.PLATFORM_REVENUE, "credit", 20),
        ):
            folded = side == "debit"  # the sender's leg is on its locked row; the credits fold later
            s.add(TransferLeg(transfer_id=transfer.id, account=account, side=side, amount=amount, folded=folded))
        sender.coins -= 200
        s.add(
            Gift(
                id=legacy, transfer_id=transfer.id, sender_id=alice, creator_id=bob, sender_key=sender.account_key,
                creator_key=creator.account_key, gross=200, creator_amount=receipt[0], platform_amount=receipt[1],
                creator_bps=receipt[2], status="posted", epoch_id=None, request_hash="0" * 64, created_at=now,
                ledger_creator_amount=ledger_columns[0], ledger_platform_amount=ledger_columns[1],
                creator_folded=True, platform_folded=True,
            )
        )  # fmt: skip
        uow.commit()
    return legacy
