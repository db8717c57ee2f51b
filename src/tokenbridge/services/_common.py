"""Helpers shared by the services: clock, paging, retry on a lost insert race."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from tokenbridge.adapters.db.models import Account
from tokenbridge.domain.errors import InvalidInput

T = TypeVar("T")
Clock = Callable[[], datetime]
MAX_PAGE = 1000


def utc_clock() -> datetime:
    return datetime.now(UTC)


def validate_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be an integer in [1, {MAX_PAGE}], got {limit!r}")
    return limit


def retry_on_race(attempt: Callable[[], T], tries: int = 3) -> T:
    """Run `attempt` again when a unique insert lost a race: the rerun sees the winner's row."""
    for i in range(tries):
        try:
            return attempt()
        except IntegrityError:
            if i == tries - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def roll_day(account: Account, now: datetime) -> None:
    """Reset the daily counters when the UTC day changed (caller holds the row lock)."""
    day = now.astimezone(UTC).date().isoformat()
    if account.counter_day != day:
        account.counter_day = day
        account.recharged_today = 0
        account.gifted_today = 0


def hex0x(b: bytes) -> str:
    return "0x" + b.hex()
