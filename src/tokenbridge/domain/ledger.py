"""The double-entry rules: account names, postings, idempotency, holds.

A posting is a list of legs; each leg debits or credits one ledger account. The balance
of an account is its credits minus its debits, so user coins, creator earnings, platform
revenue and holds are positive when the platform owes them; `external:*` accounts (the
outside world) and `*:debt` accounts (money a user owes the platform) run negative.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .errors import IdempotencyConflict, IllegalTransition, InvalidInput, UnbalancedPosting
from .money import MAX_AMOUNT_EXCLUSIVE, validate_amount

Side = Literal["debit", "credit"]


class Bucket(StrEnum):
    COINS = "coins"  # user: spendable coins
    DEBT = "debt"  # user: receivable (balance = -outstanding debt)
    EARNINGS = "earnings"  # creator: share of gifts not yet paid out
    HELD = "held"  # creator: reserved for a pending withdrawal


PLATFORM_REVENUE = "platform:revenue"
EXTERNAL_PAYMENTS = "external:payments"
EXTERNAL_CHAIN = "external:chain"
SYSTEM_ACCOUNTS = (PLATFORM_REVENUE, EXTERNAL_PAYMENTS, EXTERNAL_CHAIN)

# Accounts whose balance may be negative: the outside world, and receivables.
_MAY_GO_NEGATIVE_SYSTEM = frozenset({EXTERNAL_PAYMENTS, EXTERNAL_CHAIN})
_MAY_GO_NEGATIVE_BUCKETS = frozenset({Bucket.DEBT})


def account_name(kind: str, account_id: str, bucket: Bucket) -> str:
    return f"{kind}:{account_id}:{bucket.value}"


def coins(account_id: str) -> str:
    return account_name("user", account_id, Bucket.COINS)


def debt(account_id: str) -> str:
    return account_name("user", account_id, Bucket.DEBT)


def earnings(account_id: str) -> str:
    return account_name("creator", account_id, Bucket.EARNINGS)


def held(account_id: str) -> str:
    return account_name("creator", account_id, Bucket.HELD)


def parse_name(name: str) -> tuple[str, str | None, str]:
    """'user:alice:coins' -> ('user', 'alice', 'coins'); 'platform:revenue' -> ('platform', None, 'revenue')."""
    parts = name.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2 and name in SYSTEM_ACCOUNTS:
        return parts[0], None, parts[1]
    raise InvalidInput(f"not a ledger account name: {name!r}")


def may_go_negative(name: str) -> bool:
    if name in _MAY_GO_NEGATIVE_SYSTEM:
        return True
    _, owner, bucket = parse_name(name)
    return owner is not None and bucket in _MAY_GO_NEGATIVE_BUCKETS


@dataclass(frozen=True, slots=True)
class Leg:
    account: str
    side: Side
    amount: int

    @property
    def signed(self) -> int:
        """Effect on the account's balance (credits minus debits)."""
        return self.amount if self.side == "credit" else -self.amount


@dataclass(frozen=True, slots=True)
class Posting:
    """One balanced movement of money; `kind` says why (gift, recharge, refund, ...)."""

    kind: str
    legs: tuple[Leg, ...]

    @classmethod
    def of(cls, kind: str, *legs: Leg) -> Posting:
        """Build a posting, dropping zero legs; raises UnbalancedPosting unless debits == credits."""
        kept = tuple(leg for leg in legs if leg.amount != 0)
        for leg in kept:
            validate_amount(leg.amount, f"{kind} leg on {leg.account}")
        debits = sum(leg.amount for leg in kept if leg.side == "debit")
        credits = sum(leg.amount for leg in kept if leg.side == "credit")
        if debits != credits:
            raise UnbalancedPosting(f"{kind}: debits {debits} != credits {credits}")
        if not kept:
            raise UnbalancedPosting(f"{kind}: a posting needs at least one non-zero leg")
        return cls(kind, kept)

    def effects(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for leg in self.legs:
            out[leg.account] = out.get(leg.account, 0) + leg.signed
        return out


def debit(account: str, amount: int) -> Leg:
    return Leg(account, "debit", amount)


def credit(account: str, amount: int) -> Leg:
    return Leg(account, "credit", amount)


def check_balance(name: str, balance: int) -> None:
    """Invariant 2 at posting time: a spendable balance never drops below zero or overflows."""
    if balance < 0 and not may_go_negative(name):
        raise UnbalancedPosting(f"{name} would go negative ({balance})")
    if balance >= MAX_AMOUNT_EXCLUSIVE:
        raise InvalidInput(f"{name} would exceed the maximum balance of 2**63 - 1 units")


# --- idempotency --------------------------------------------------------------------------


def request_hash(body: dict[str, object]) -> str:
    """sha256 of the canonical JSON of a request body (sorted keys, no whitespace).

    Ints stay ints (1 and 1.0 differ), so a replay matches only the exact same request.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_replay(what: str, request_id: str, stored_hash: str, new_hash: str) -> None:
    """Same id, same body -> fine (caller returns the first result); other body -> 409."""
    if stored_hash != new_hash:
        raise IdempotencyConflict(f"{what} {request_id} was already used with a different request body")


# --- holds: reserved -> posted | voided ---------------------------------------------------


class HoldState(StrEnum):
    RESERVED = "reserved"
    POSTED = "posted"
    VOIDED = "voided"


_HOLD_TRANSITIONS: dict[HoldState, frozenset[HoldState]] = {
    HoldState.RESERVED: frozenset({HoldState.POSTED, HoldState.VOIDED}),
    HoldState.POSTED: frozenset(),
    HoldState.VOIDED: frozenset(),
}


@dataclass(slots=True)
class Hold:
    """Two-phase reservation of a creator's earnings for a pending withdrawal."""

    id: str
    creator_id: str
    amount: int
    state: HoldState = HoldState.RESERVED

    def _move(self, to: HoldState) -> None:
        if to not in _HOLD_TRANSITIONS[self.state]:
            raise IllegalTransition(f"hold {self.id} is {self.state.value}; cannot become {to.value}")
        self.state = to

    def reserve_posting(self) -> Posting:
        return Posting.of(
            "hold.reserve", debit(earnings(self.creator_id), self.amount), credit(held(self.creator_id), self.amount)
        )

    def post(self) -> Posting:
        """The payout confirmed on-chain: the held tokens left custody."""
        self._move(HoldState.POSTED)
        return Posting.of("hold.post", debit(held(self.creator_id), self.amount), credit(EXTERNAL_CHAIN, self.amount))

    def void(self) -> Posting:
        """The payout failed for good: the funds return to earnings."""
        self._move(HoldState.VOIDED)
        return Posting.of(
            "hold.void", debit(held(self.creator_id), self.amount), credit(earnings(self.creator_id), self.amount)
        )
