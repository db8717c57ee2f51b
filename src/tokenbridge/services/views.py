"""What services return to the edges: frozen, plain data, no ORM objects.

The HTTP layer serialises these; nothing here holds a session or a lazy attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, NamedTuple, Protocol, TypeVar

T = TypeVar("T")

AccountKind = Literal["user", "creator"]
ApiKeyScope = Literal["app", "admin"]
GiftStatus = Literal["posted", "settled"]


@dataclass(frozen=True, slots=True)
class Balances:
    coins: int
    earnings: int
    held: int
    debt: int


@dataclass(frozen=True, slots=True)
class AccountView:
    id: str
    kind: AccountKind
    account_key: str  # 0x-hex bytes32
    balances: Balances
    is_minor: bool
    restricted: bool
    created_at: datetime


class GiftReceipt(NamedTuple):
    """A NamedTuple rather than a frozen dataclass (as immutable): a batch answers 1,000 of these
    and a frozen dataclass's __init__ costs about 0.1 µs per field."""

    id: str
    sender_id: str
    creator_id: str
    sender_key: str  # 0x-hex bytes32
    creator_key: str  # 0x-hex bytes32
    sender_salt: str  # 0x-hex, the holder's salt so they can recompute their key
    gross: int
    creator_amount: int
    platform_amount: int
    creator_bps: int
    status: GiftStatus
    epoch_id: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentEventResult:
    """Outcome of one payment webhook event.

    recharge.succeeded: `credited` went to coins, `debt_repaid` paid down earlier debt
    (credited + debt_repaid == amount). Refund/chargeback: `reversed` came out of coins,
    `debt_recorded` could not be (already spent) and became debt. A duplicate event for a
    payment that was already credited/reversed has every effect field at 0.
    """

    event_id: str
    type: str
    payment_id: str
    account_id: str
    amount: int
    credited: int
    reversed: int
    debt_recorded: int
    debt_repaid: int = 0


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: str
    scope: ApiKeyScope
    account_id: str | None
    created_at: datetime
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


class GiftCommand(Protocol):
    """What `GiftService.post_batch` reads of each item (`PostGift` has it; so may a caller's
    own type, without building a `PostGift` per item)."""

    @property
    def id(self) -> str: ...
    @property
    def sender_id(self) -> str: ...
    @property
    def creator_id(self) -> str: ...
    @property
    def amount(self) -> int: ...


class PostGift(NamedTuple):
    """Command: move `amount` from sender's coins to creator earnings + platform revenue
    (a NamedTuple like `GiftReceipt`: a batch builds 1,000)."""

    id: str
    sender_id: str
    creator_id: str
    amount: int


HoldStateName = Literal["reserved", "posted", "voided"]


@dataclass(frozen=True, slots=True)
class HoldView:
    id: str
    creator_id: str
    amount: int
    state: HoldStateName
    created_at: datetime
    updated_at: datetime
