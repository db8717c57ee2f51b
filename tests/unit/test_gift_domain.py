"""The pure gift rules the hot path and batches apply item by item: `debit_sender` (every
refusal of `check_gift`, then the running state) and `gifted_on` (the daily counter roll)."""

from __future__ import annotations

import pytest

from tokenbridge.domain.errors import InsufficientFunds, LimitExceeded, OutstandingDebt
from tokenbridge.domain.gifts import CreatorState, SenderState, debit_sender, gifted_on, validate_gift

CREATOR = CreatorState(id="bob", kind="creator", restricted=False)


def _sender(coins: int = 100, debt: int = 0, gifted: int = 0, limit: int = 1_000) -> SenderState:
    return SenderState(
        id="alice", kind="user", coins=coins, debt=debt, restricted=False, gifted_today=gifted, daily_limit=limit
    )


def test_debit_sender_returns_the_running_state() -> None:
    s = _sender()
    after = debit_sender(validate_gift("g1", "alice", "bob", 30), s, CREATOR)
    assert (after.coins, after.gifted_today) == (70, 30)
    after2 = debit_sender(validate_gift("g2", "alice", "bob", 70), after, CREATOR)
    assert (after2.coins, after2.gifted_today) == (0, 100)
    with pytest.raises(InsufficientFunds):
        debit_sender(validate_gift("g3", "alice", "bob", 1), after2, CREATOR)
    assert (s.coins, s.gifted_today) == (100, 0)  # states are values: a refused item changes nothing


def test_debit_sender_checks_debt_and_the_daily_limit() -> None:
    with pytest.raises(OutstandingDebt):
        debit_sender(validate_gift("g", "alice", "bob", 1), _sender(debt=1), CREATOR)
    with pytest.raises(LimitExceeded):
        debit_sender(validate_gift("g", "alice", "bob", 11), _sender(gifted=90, limit=100), CREATOR)
    assert debit_sender(validate_gift("g", "alice", "bob", 10), _sender(gifted=90, limit=100), CREATOR).coins == 90


def test_gifted_on_rolls_the_day() -> None:
    assert gifted_on("2026-11-26", "2026-11-26", 40) == 40
    assert gifted_on("2026-11-27", "2026-11-26", 40) == 0
    assert gifted_on("2026-11-26", "", 0) == 0
