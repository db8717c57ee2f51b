"""`GiftService._post_all` runs a call again when PostgreSQL aborted it to break a deadlock
(SQLSTATE 40P01: the whole transaction was rolled back), and only then."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from support_ledger import LedgerHarness
from tokenbridge.services.gifts import DEADLOCK_RETRIES, GiftService
from tokenbridge.services.views import PostGift


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _failing(sqlstate: str, times: int, calls: list[int]) -> object:
    original = GiftService._post_decided

    def post_decided(self: GiftService, items: object) -> object:
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("INSERT INTO gifts ...", {}, _DriverError(sqlstate))
        return original(self, items)  # type: ignore[arg-type]

    return post_decided


def test_a_deadlock_abort_is_run_again_and_posts_once(ledger: LedgerHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = ledger.user(100), ledger.creator()
    calls: list[int] = []
    monkeypatch.setattr(GiftService, "_post_decided", _failing("40P01", 1, calls))
    receipt, created = ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 30))
    assert created
    assert receipt.gross == 30
    assert len(calls) == 2
    assert ledger.services.accounts.get(alice).balances.coins == 70


def test_deadlocks_beyond_the_retries_and_other_errors_propagate(
    ledger: LedgerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = ledger.user(100), ledger.creator()
    calls: list[int] = []
    monkeypatch.setattr(GiftService, "_post_decided", _failing("40P01", DEADLOCK_RETRIES + 1, calls))
    with pytest.raises(OperationalError):
        ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 30))
    assert len(calls) == DEADLOCK_RETRIES + 1
    calls.clear()
    monkeypatch.setattr(GiftService, "_post_decided", _failing("57014", 1, calls))  # a statement timeout
    with pytest.raises(OperationalError):
        ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 30))
    assert len(calls) == 1
    assert ledger.services.accounts.get(alice).balances.coins == 100
