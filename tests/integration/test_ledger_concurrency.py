"""Invariant 2 under contention: many threads (and, on PostgreSQL, processes) spend one
balance at once; exactly the affordable number of gifts succeed and nothing goes
negative. Also: concurrent duplicates of one gift id / one webhook event apply once."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from support_ledger import LedgerHarness
from tokenbridge.domain.errors import InsufficientFunds, TokenbridgeError
from tokenbridge.services.views import PostGift

GIFT = 100
AFFORDABLE = 12


def _race(n_workers: int, fn: Callable[[int], object]) -> list[object]:
    """Run fn(i) for every worker, all released at once by a barrier."""
    barrier = threading.Barrier(n_workers)

    def run(i: int) -> object:
        barrier.wait()
        try:
            return fn(i)
        except TokenbridgeError as exc:
            return exc

    with ThreadPoolExecutor(n_workers) as pool:
        return list(pool.map(run, range(n_workers)))


def test_threads_spend_one_balance_exactly_affordable_times(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(GIFT * AFFORDABLE), ledger.creator()
    n = 3 * AFFORDABLE
    results = _race(n, lambda i: ledger.services.gifts.post(PostGift(f"{alice}-g{i}", alice, bob, GIFT)))
    ok = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert len(ok) == AFFORDABLE
    assert len(refused) == n - AFFORDABLE
    b = ledger.services.accounts.get(alice).balances
    assert b.coins == 0
    assert ledger.services.accounts.get(bob).balances.earnings == AFFORDABLE * GIFT * 7_000 // 10_000
    assert ledger.services.ledger is not None
    totals = ledger.services.ledger.totals()
    assert totals.negative_accounts == ()
    assert totals.cache_mismatches == ()


def test_threads_posting_one_gift_id_apply_it_once(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(10 * GIFT), ledger.creator()
    gid = ledger.uid("g")
    results = _race(8, lambda _i: ledger.services.gifts.post(PostGift(gid, alice, bob, GIFT)))
    created = [r for r in results if isinstance(r, tuple) and r[1]]
    replays = [r for r in results if isinstance(r, tuple) and not r[1]]
    assert len(created) == 1
    assert len(replays) == 7
    assert ledger.services.accounts.get(alice).balances.coins == 9 * GIFT


def test_threads_delivering_one_event_credit_once(ledger: LedgerHarness) -> None:
    alice = ledger.user()
    body = ledger.event("recharge.succeeded", alice, 500, ledger.uid("pay"))
    results = _race(8, lambda _i: ledger.deliver(body))
    applied = [r for r in results if isinstance(r, tuple) and r[1]]
    assert len(applied) == 1
    assert all(isinstance(r, tuple) for r in results)
    assert ledger.services.accounts.get(alice).balances.coins == 500


def test_threads_one_payment_many_event_ids_credit_once(ledger: LedgerHarness) -> None:
    alice = ledger.user()
    pid = ledger.uid("pay")
    results = _race(8, lambda _i: ledger.deliver(ledger.event("recharge.succeeded", alice, 500, pid)))
    assert sum(1 for r in results if isinstance(r, tuple) and r[1]) == 1
    assert ledger.services.accounts.get(alice).balances.coins == 500


def _spend_in_process(url: str, alice: str, bob: str, worker: int, attempts: int, start: object) -> int:
    """Child process: post `attempts` gifts from alice with a few threads; return how many succeeded."""
    h = LedgerHarness(url)
    try:
        start.wait()  # type: ignore[attr-defined]
        results = _race(attempts, lambda i: h.services.gifts.post(PostGift(f"{alice}-p{worker}-{i}", alice, bob, GIFT)))
        return sum(1 for r in results if isinstance(r, tuple))
    finally:
        h.close()


@pytest.mark.postgres
def test_processes_spend_one_balance_exactly_affordable_times(postgres_db_url: str) -> None:
    h = LedgerHarness(postgres_db_url)
    try:
        alice, bob = h.user(GIFT * AFFORDABLE), h.creator()
        ctx = multiprocessing.get_context("spawn")
        n_proc, attempts = 3, 8
        with ctx.Manager() as manager:
            start = manager.Event()
            with ctx.Pool(n_proc) as pool:
                pending = [
                    pool.apply_async(_spend_in_process, (postgres_db_url, alice, bob, w, attempts, start))
                    for w in range(n_proc)
                ]
                start.set()
                succeeded = sum(p.get(timeout=120) for p in pending)
        assert succeeded == AFFORDABLE
        assert h.services.accounts.get(alice).balances.coins == 0
        assert h.services.ledger is not None
        assert h.services.ledger.totals().negative_accounts == ()
    finally:
        h.close()


def test_gifts_racing_a_refund_leave_no_negative_and_exact_debt(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(), ledger.creator()
    pid = ledger.recharge(alice, 10 * GIFT)
    refund = ledger.event("recharge.refunded", alice, 10 * GIFT, pid)

    def act(i: int) -> object:
        if i == 0:
            return ledger.deliver(refund)
        return ledger.services.gifts.post(PostGift(f"{alice}-r{i}", alice, bob, GIFT))

    results = _race(13, act)
    gifts_ok = sum(1 for r in results[1:] if isinstance(r, tuple))
    assert isinstance(results[0], tuple)
    b = ledger.services.accounts.get(alice).balances
    assert b.coins == 0  # the refund took whatever was left
    assert b.debt == gifts_ok * GIFT  # and what was already gifted became debt, exactly
    assert ledger.services.ledger is not None
    t = ledger.services.ledger.totals()
    assert t.negative_accounts == ()
    assert t.cache_mismatches == ()


def test_folding_while_gifting_counts_every_gift_once(ledger: LedgerHarness) -> None:
    n_senders, per_sender = 6, 5
    senders = [ledger.user(per_sender * GIFT) for _ in range(n_senders)]
    bob = ledger.creator()
    stop = threading.Event()
    folds = 0

    def folder() -> None:
        nonlocal folds
        assert ledger.services.ledger is not None
        while not stop.is_set():
            ledger.services.ledger.fold()
            folds += 1

    t = threading.Thread(target=folder)
    t.start()
    try:
        _race(
            n_senders,
            lambda i: [
                ledger.services.gifts.post(PostGift(f"{senders[i]}-f{k}", senders[i], bob, GIFT))
                for k in range(per_sender)
            ],
        )
    finally:
        stop.set()
        t.join()
    assert folds > 0
    expected = n_senders * per_sender * (GIFT * 7_000 // 10_000)
    assert ledger.services.accounts.get(bob).balances.earnings == expected
    assert ledger.services.ledger is not None
    ledger.services.ledger.fold()
    assert ledger.services.accounts.get(bob).balances.earnings == expected
    assert ledger.services.ledger.totals().cache_mismatches == ()
