"""Accounts: ids, kinds, flags and the daily limits that follow from them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .errors import AccountRestricted, InvalidInput, LimitExceeded

AccountKind = Literal["user", "creator"]
ACCOUNT_KINDS: tuple[AccountKind, ...] = ("user", "creator")

# No ':' so a ledger account name "user:{id}:coins" parses unambiguously.
_ID_RE = re.compile(r"^[A-Za-z0-9._@-]{1,128}\Z")  # \Z: `$` would also accept a trailing newline


def validate_id(value: object, field: str = "id") -> str:
    """Ids of accounts, gifts, payments and events: 1-128 chars of [A-Za-z0-9._@-]."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidInput(f"{field} must be 1-128 characters of letters, digits, '.', '_', '@' or '-', got {value!r}")
    return value


def validate_kind(value: object) -> AccountKind:
    if value == "user":
        return "user"
    if value == "creator":
        return "creator"
    raise InvalidInput(f"kind must be 'user' or 'creator', got {value!r}")


@dataclass(frozen=True, slots=True)
class DailyLimits:
    recharge: int
    gift: int
    minor_recharge: int
    minor_gift: int

    def recharge_limit(self, is_minor: bool) -> int:
        return self.minor_recharge if is_minor else self.recharge

    def gift_limit(self, is_minor: bool) -> int:
        return self.minor_gift if is_minor else self.gift


def check_not_restricted(account_id: str, restricted: bool, action: str) -> None:
    if restricted:
        raise AccountRestricted(f"account {account_id} is restricted and may not {action}")


def check_daily_limit(account_id: str, action: str, used_today: int, amount: int, limit: int) -> None:
    """Refuse when today's total plus `amount` would exceed `limit` (UTC day)."""
    if used_today + amount > limit:
        raise LimitExceeded(
            f"account {account_id}: daily {action} limit is {limit} units, "
            f"{used_today} already used today, {amount} requested"
        )
