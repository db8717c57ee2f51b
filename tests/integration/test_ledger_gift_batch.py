"""Set-based gift batches (`GiftService.post_batch`) and the single-gift hot path, on SQLite
and PostgreSQL: per-item results identical to posting the items one by one, each item
atomic (a refused item writes nothing), replays and conflicts by id, and concurrent
batches/singles on the same senders never overspend."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support_ledger import LedgerHarness, own_ledger
from tokenbridge.adapters.db.gift_ledger import COPY_MIN
from tokenbridge.domain.errors import (
    AccountRestricted,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidInput,
    LimitExceeded,
    NotFound,
    OutstandingDebt,
    TokenbridgeError,
)
from tokenbridge.services.views import GiftReceipt, PostGift

Outcome = tuple[GiftReceipt, bool] | TokenbridgeError


def _check_ledger(h: LedgerHarness) -> None:
    assert h.services.ledger is not None
    t = h.services.ledger.totals()
    assert t.unbalanced_transfers == ()
    assert t.negative_accounts == ()
    assert t.cache_mismatches == ()


def _created(r: Outcome) -> GiftReceipt:
    assert isinstance(r, tuple), r
    assert r[1]
    return r[0]


def _replayed(r: Outcome) -> GiftReceipt:
    assert isinstance(r, tuple), r
    assert not r[1]
    return r[0]


def test_mixed_batch_matches_one_by_one_semantics(ledger: LedgerHarness) -> None:
    alice, carol, bob = ledger.user(1_000), ledger.user(50), ledger.creator()
    blocked = ledger.creator(restricted=True)
    earlier = ledger.uid("g")
    first = ledger.services.gifts.post(PostGift(earlier, alice, bob, 100))[0]
    dup = ledger.uid("g")
    ids = [ledger.uid("g") for _ in range(10)]
    results = ledger.services.gifts.post_batch(
        [
            PostGift(ids[0], alice, bob, 300),  # ok: alice 900 -> 600
            PostGift(earlier, alice, bob, 100),  # replay of an earlier single gift
            PostGift(earlier, alice, bob, 101),  # same id, other body: 409
            PostGift(ids[1], carol, bob, 60),  # carol has 50: insufficient, writes nothing
            PostGift(ids[2], carol, bob, 50),  # ok: the refused item above spent nothing
            PostGift(dup, alice, bob, 600),  # ok: alice 600 -> 0
            PostGift(dup, alice, bob, 600),  # replay of the item above, in the same batch
            PostGift(dup, alice, bob, 1),  # conflict with the item above, in the same batch
            PostGift(ids[3], alice, bob, 1),  # insufficient: earlier items spent it all
            PostGift(ids[4], "nobody-here", bob, 1),  # 404 sender
            PostGift(ids[5], alice, "nobody-there", 1),  # 404 creator
            PostGift(ids[6], alice, alice, 1),  # invalid: to self
            PostGift(ids[7], alice, blocked, 1),  # restricted creator
            PostGift(ids[8], bob, alice, 1),  # a creator cannot send
            PostGift("bad id!", alice, bob, 1),  # invalid id
        ]
    )
    assert _created(results[0]).gross == 300
    assert _replayed(results[1]) == first
    assert isinstance(results[2], IdempotencyConflict)
    assert isinstance(results[3], InsufficientFunds)
    assert _created(results[4]).sender_id == carol
    dup_receipt = _created(results[5])
    assert _replayed(results[6]) == dup_receipt
    assert isinstance(results[7], IdempotencyConflict)
    assert isinstance(results[8], InsufficientFunds)
    assert isinstance(results[9], NotFound)
    assert isinstance(results[10], NotFound)
    assert isinstance(results[11], InvalidInput)
    assert isinstance(results[12], AccountRestricted)
    assert isinstance(results[13], InvalidInput)
    assert isinstance(results[14], InvalidInput)
    assert ledger.services.accounts.get(alice).balances.coins == 0
    assert ledger.services.accounts.get(carol).balances.coins == 0
    assert ledger.services.accounts.get(bob).balances.earnings == (100 + 300 + 50 + 600) * 7_000 // 10_000
    for missing in (ids[1], ids[3], ids[4], ids[5], ids[7], ids[8]):  # refused items wrote nothing
        try:
            ledger.services.gifts.get(missing)
        except NotFound:
            continue
        raise AssertionError(f"refused gift {missing} was written")
    # the receipts of a batch are what GET returns
    assert ledger.services.gifts.get(ids[0]) == _created(results[0])
    replay_again = ledger.services.gifts.post_batch([PostGift(dup, alice, bob, 600)])
    assert _replayed(replay_again[0]) == dup_receipt
    _check_ledger(ledger)


def test_batch_applies_limits_and_debt_per_item_in_order(make_ledger: object) -> None:
    h = make_ledger(daily_gift_limit=500)  # type: ignore[operator]
    alice, bob = h.user(1_000), h.creator()
    results = h.services.gifts.post_batch([PostGift(h.uid("g"), alice, bob, 300) for _ in range(3)])
    _created(results[0])
    assert isinstance(results[1], LimitExceeded)  # 300 + 300 > 500
    assert isinstance(results[2], LimitExceeded)
    ok = h.services.gifts.post_batch([PostGift(h.uid("g"), alice, bob, 200)])
    _created(ok[0])  # exactly the limit
    # debt blocks spending: refund more than the coins left
    carol = h.user(0)
    pid = h.recharge(carol, 100)
    h.services.gifts.post(PostGift(h.uid("g"), carol, bob, 80))
    h.deliver(h.event("recharge.refunded", carol, 100, pid))
    assert isinstance(h.services.gifts.post_batch([PostGift(h.uid("g"), carol, bob, 1)])[0], OutstandingDebt)
    _check_ledger(h)


def test_all_refused_batch_writes_nothing(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(10), ledger.creator()
    results = ledger.services.gifts.post_batch([PostGift(ledger.uid("g"), alice, bob, 11) for _ in range(3)])
    assert all(isinstance(r, InsufficientFunds) for r in results)
    assert ledger.services.accounts.get(alice).balances.coins == 10
    _check_ledger(ledger)


# batches under and over COPY_MIN: PostgreSQL writes the larger ones' gifts by COPY
@pytest.mark.parametrize("per_batch", [20, COPY_MIN + 6])
def test_concurrent_batches_and_singles_on_the_same_senders_never_overspend(
    ledger: LedgerHarness, per_batch: int
) -> None:
    gift, affordable = 10, 25
    senders = [ledger.user(gift * affordable) for _ in range(3)]
    bob = ledger.creator()
    n_batches, n_singles = 6, 20
    barrier = threading.Barrier(n_batches + n_singles)

    def batch(k: int) -> list[Outcome]:
        # overlapping senders in different orders (sorted locking must not deadlock)
        cmds = [PostGift(f"b{k}-{i}-{ledger.uid()}", senders[(i + k) % 3], bob, gift) for i in range(per_batch)]
        barrier.wait()
        return ledger.services.gifts.post_batch(cmds)

    def single(k: int) -> list[Outcome]:
        barrier.wait()
        try:
            return [ledger.services.gifts.post(PostGift(f"s{k}-{ledger.uid()}", senders[k % 3], bob, gift))]
        except TokenbridgeError as exc:
            return [exc]

    with ThreadPoolExecutor(n_batches + n_singles) as pool:
        futures = [pool.submit(batch, k) for k in range(n_batches)]
        futures += [pool.submit(single, k) for k in range(n_singles)]
        outcomes = [o for f in futures for o in f.result()]
    created = [o for o in outcomes if isinstance(o, tuple) and o[1]]
    refused = [o for o in outcomes if not isinstance(o, tuple)]
    assert all(isinstance(o, InsufficientFunds) for o in refused), refused[:3]
    assert len(created) == 3 * affordable  # more attempts, exactly what the balances allow
    for s in senders:
        assert ledger.services.accounts.get(s).balances.coins == 0
    _check_ledger(ledger)


@pytest.mark.parametrize("n", [30, COPY_MIN + 6])
def test_concurrent_batches_with_the_same_gift_ids_apply_each_once(ledger: LedgerHarness, n: int) -> None:
    """The same ids in opposite orders from four threads, several rounds: races resolve on the
    unique id (decide again, then replay), never in a deadlock between two inserts."""
    rounds = 4
    alice, carol, bob = ledger.user(10_000), ledger.user(10_000), ledger.creator()
    for _ in range(rounds):
        ids = [ledger.uid("g") for _ in range(n)]
        barrier = threading.Barrier(4)

        def run(k: int, ids: list[str] = ids, barrier: threading.Barrier = barrier) -> list[Outcome]:
            cmds = [PostGift(gid, alice, bob, 7) for gid in (ids if k % 2 else reversed(ids))]
            barrier.wait()
            return ledger.services.gifts.post_batch(cmds)

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(run, range(4)))
        created = sum(1 for rs in results for r in rs if isinstance(r, tuple) and r[1])
        replayed = sum(1 for rs in results for r in rs if isinstance(r, tuple) and not r[1])
        assert (created, replayed) == (n, 3 * n)
    assert ledger.services.accounts.get(alice).balances.coins == 10_000 - rounds * n * 7
    assert ledger.services.accounts.get(carol).balances.coins == 10_000
    _check_ledger(ledger)


def test_single_posts_racing_on_one_id_answer_one_created_and_replays(ledger: LedgerHarness) -> None:
    # The hot path's idempotency probe runs in the statement's snapshot (taken before the lock
    # wait), so losers of the race hit the unique caller_id; that must surface as a replay.
    alice, bob = ledger.user(10_000), ledger.creator()
    for _ in range(5):
        gid = ledger.uid("g")
        barrier = threading.Barrier(8)

        def run(_i: int, gid: str = gid, barrier: threading.Barrier = barrier) -> Outcome:
            barrier.wait()
            return ledger.services.gifts.post(PostGift(gid, alice, bob, 10))

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(run, range(8)))
        assert sorted(r[1] for r in results if isinstance(r, tuple)) == [False] * 7 + [True]
    assert ledger.services.accounts.get(alice).balances.coins == 10_000 - 5 * 10
    _check_ledger(ledger)


@pytest.fixture
def pg_ledger(tmp_path: Path) -> Iterator[LedgerHarness]:
    """PostgreSQL only: SQLite decides every call under the database's write lock."""
    with own_ledger("postgres", tmp_path, "tb_optimistic") as h:
        yield h


@pytest.mark.postgres
@pytest.mark.parametrize("n", [3, COPY_MIN + 2])
def test_a_sender_spent_between_the_optimistic_read_and_the_write_is_decided_again_under_the_lock(
    pg_ledger: LedgerHarness, monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    """PostgreSQL decides a call on the senders' rows as read, then debits them only if every rule
    still holds. Here another posting spends the sender's coins right after that read: the debit's
    check fails, nothing of the first attempt stays, and the call is decided again with the row
    locked -- so exactly what the balance allows is accepted."""
    from tokenbridge.adapters.db.gift_ledger import GiftLedger

    ledger = pg_ledger
    alice, bob = ledger.user(10 * n), ledger.creator()
    spender = ledger.uid("spend")
    original = GiftLedger.context
    calls: list[bool] = []

    def context_then_spend(self: GiftLedger, *args: object, lock: bool = True, **kw: bool) -> object:
        ctx = original(self, *args, lock=lock, **kw)  # type: ignore[arg-type]
        calls.append(lock)
        if not lock and len(calls) == 1:  # another writer takes all but 20 of alice's coins now
            with ThreadPoolExecutor(1) as pool:
                pool.submit(ledger.services.gifts.post, PostGift(spender, alice, bob, 10 * n - 20)).result()
        return ctx

    monkeypatch.setattr(GiftLedger, "context", context_then_spend)
    ids = [ledger.uid("g") for _ in range(n)]
    results = ledger.services.gifts.post_batch([PostGift(i, alice, bob, 10) for i in ids])
    assert calls[0] is False  # optimistic first
    assert True in calls[1:]  # then under the lock, after the failed check
    assert [_created(r).id for r in results[:2]] == ids[:2]  # 20 left: two of 10 fit
    assert all(isinstance(r, InsufficientFunds) for r in results[2:])
    assert ledger.services.accounts.get(alice).balances.coins == 0
    with ledger.services.uow.read() as uow:  # the first attempt's gift rows were rolled back
        assert {g for g in ids if uow.gifts.get(g) is not None} == set(ids[:2])
    _check_ledger(ledger)


@pytest.mark.postgres
def test_copy_and_the_json_insert_write_the_same_rows(pg_ledger: LedgerHarness) -> None:
    """PostgreSQL writes a call's gifts by COPY from COPY_MIN gifts on, by a JSON insert below:
    the rows (every column) and the receipts must not depend on which."""
    from sqlalchemy import text

    ledger = pg_ledger
    alice, bob = ledger.user(10**11), ledger.creator()
    amounts = [1, 2, 3, 999, 10_001, 123_456_789]
    rows: dict[int, list[tuple[object, ...]]] = {}
    for n in (COPY_MIN - 1, COPY_MIN):
        ids = [f"{n}-{ledger.uid('g')}" for _ in range(n)]
        results = ledger.services.gifts.post_batch(
            [PostGift(gid, alice, bob, amounts[i % len(amounts)]) for i, gid in enumerate(ids)]
        )
        receipts = [_created(r) for r in results]
        with ledger.services.uow.read() as uow:
            got = uow.gift_ledger.s.execute(text("SELECT * FROM gifts WHERE id = ANY(:ids)"), {"ids": ids})
            got = got.mappings().all()
        assert len(got) == n
        by_id = {r.id: r for r in receipts}
        for row in got:
            r = by_id[row["id"]]
            assert (row["gross"], row["creator_amount"], row["platform_amount"], row["creator_bps"]) == (
                r.gross, r.creator_amount, r.platform_amount, r.creator_bps,
            )  # fmt: skip
            assert row["created_at"] == r.created_at
        rows[n] = [tuple(v for k, v in row.items() if k not in ("id", "created_at")) for row in got]
    # the same amounts in the same order: every column but id and time agrees, the COPY call has one row more
    extra = Counter(rows[COPY_MIN]) - Counter(rows[COPY_MIN - 1])
    assert Counter(rows[COPY_MIN - 1]) <= Counter(rows[COPY_MIN])
    assert [row[list(got[0].keys()).index("gross") - 1] for row in extra.elements()] == [amounts[(COPY_MIN - 1) % 6]]
    assert ledger.services.accounts.get(alice).balances.coins == 10**11 - sum(
        amounts[i % len(amounts)] for n in (COPY_MIN - 1, COPY_MIN) for i in range(n)
    )
    _check_ledger(ledger)
