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
