"""Holds on creator earnings: reserve -> post | void, idempotent, never overdrawn, and the
ledger invariants hold across them (on SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from support_ledger import LedgerHarness
from tokenbridge.domain.errors import IdempotencyConflict, IllegalTransition, InsufficientFunds, InvalidInput, NotFound
from tokenbridge.services.holds import HoldService
from tokenbridge.services.views import PostGift


def _holds(h: LedgerHarness) -> HoldService:
    assert h.services.holds is not None
    return h.services.holds


def _creator_with_earnings(h: LedgerHarness, gross: int) -> str:
    alice, bob = h.user(gross), h.creator()
    h.services.gifts.post(PostGift(h.uid("g"), alice, bob, gross))
    return bob


def test_reserve_post_and_void(ledger: LedgerHarness) -> None:
    holds = _holds(ledger)
    bob = _creator_with_earnings(ledger, 1_000)  # 700 earnings, unfolded
    with pytest.raises(InsufficientFunds):
        holds.reserve(ledger.uid("h"), bob, 701)
    h1, created = holds.reserve(ledger.uid("h"), bob, 500)
    assert created
    assert h1.state == "reserved"
    b = ledger.services.accounts.get(bob).balances
    assert (b.earnings, b.held) == (200, 500)
    again, created_again = holds.reserve(h1.id, bob, 500)
    assert not created_again
    assert again.id == h1.id
    with pytest.raises(IdempotencyConflict):
        holds.reserve(h1.id, bob, 499)
    with pytest.raises(InsufficientFunds):
        holds.reserve(ledger.uid("h"), bob, 201)

    assert holds.post(h1.id).state == "posted"
    assert holds.post(h1.id).state == "posted"  # idempotent
    with pytest.raises(IllegalTransition):
        holds.void(h1.id)
    b = ledger.services.accounts.get(bob).balances
    assert (b.earnings, b.held) == (200, 0)

    h2, _ = holds.reserve(ledger.uid("h"), bob, 200)
    assert holds.void(h2.id).state == "voided"
    with pytest.raises(IllegalTransition):
        holds.post(h2.id)
    b = ledger.services.accounts.get(bob).balances
    assert (b.earnings, b.held) == (200, 0)

    assert ledger.services.ledger is not None
    t = ledger.services.ledger.totals()
    assert t.negative_accounts == ()
    assert t.cache_mismatches == ()
    assert t.unbalanced_transfers == ()
    assert t.liabilities - t.debt + t.external_payments + t.external_chain == 0


def test_hold_errors(ledger: LedgerHarness) -> None:
    holds = _holds(ledger)
    with pytest.raises(NotFound):
        holds.reserve(ledger.uid("h"), ledger.uid("nobody"), 1)
    with pytest.raises(InvalidInput):
        holds.reserve(ledger.uid("h"), ledger.user(), 1)
    with pytest.raises(NotFound):
        holds.post(ledger.uid("h"))


# --- invariant 2 under concurrency: reserves racing on one creator's earnings --------------------

_RESERVE_EACH = 100
_EARNED = 700  # 70 % of a 1_000 gift: room for exactly 7 reserves of 100


def _reserve_outcomes(url: str, creator: str, hold_ids: list[str], barrier: object = None) -> list[str]:
    """Reserve each hold id once, in this thread or process; 'ok' or the refusal's class name."""
    harness = LedgerHarness(url)
    try:
        holds = _holds(harness)
        if barrier is not None:
            barrier.wait()  # type: ignore[attr-defined]
        out: list[str] = []
        for hold_id in hold_ids:
            try:
                holds.reserve(hold_id, creator, _RESERVE_EACH)
                out.append("ok")
            except InsufficientFunds:
                out.append("InsufficientFunds")
        return out
    finally:
        harness.close()


def _check_after_race(h: LedgerHarness, creator: str, outcomes: list[str]) -> None:
    affordable = _EARNED // _RESERVE_EACH
    assert outcomes.count("ok") == affordable, outcomes
    assert outcomes.count("InsufficientFunds") == len(outcomes) - affordable, outcomes
    b = h.services.accounts.get(creator).balances
    assert (b.earnings, b.held) == (0, affordable * _RESERVE_EACH)
    assert b.held <= _EARNED
    assert h.services.ledger is not None
    t = h.services.ledger.totals()
    assert t.negative_accounts == ()
    assert t.cache_mismatches == ()
    assert t.unbalanced_transfers == ()


def test_reserves_racing_in_threads_never_overdraw_earnings(ledger: LedgerHarness) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    bob = _creator_with_earnings(ledger, 1_000)
    threads, per_thread = 8, 3  # 24 attempts for 7 affordable reserves
    barrier = threading.Barrier(threads)
    ids = [[ledger.uid("h") for _ in range(per_thread)] for _ in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda chunk: _reserve_outcomes(ledger.url, bob, chunk, barrier), ids))
    _check_after_race(ledger, bob, [o for r in results for o in r])


@pytest.mark.postgres
def test_reserves_racing_in_processes_never_overdraw_earnings(postgres_db_url: str) -> None:
    import multiprocessing

    harness = LedgerHarness(postgres_db_url)
    try:
        bob = _creator_with_earnings(harness, 1_000)
        procs, per_proc = 6, 4  # 24 attempts, 6 connections from 6 processes
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Manager().Barrier(procs)
        ids = [[harness.uid("h") for _ in range(per_proc)] for _ in range(procs)]
        with ctx.Pool(procs) as pool:
            results = pool.starmap(_reserve_outcomes, [(postgres_db_url, bob, chunk, barrier) for chunk in ids])
        _check_after_race(harness, bob, [o for r in results for o in r])
    finally:
        harness.close()


def test_a_withdrawals_hold_cannot_be_posted_or_voided_here(ledger: LedgerHarness) -> None:
    """Withdrawal holds are booked with their payout (which also counts the creator's booked
    payouts); posting one by hand would make the API's credit snapshot overstate withdrawable."""
    from tokenbridge.domain.errors import InvalidInput

    for finish in (_holds(ledger).post, _holds(ledger).void):
        with pytest.raises(InvalidInput, match="belongs to a withdrawal"):
            finish("withdrawal:1")
