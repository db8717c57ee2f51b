"""Request and response bodies of the HTTP API (the wire contract of DESIGN.md section 7).

Amounts are strict JSON integers with `0 < amount < 2**63`: floats (even `1.0`), strings,
booleans and out-of-range values are a 422 before any service runs. Ids are 1-128
characters of `[A-Za-z0-9_.@-]` not starting with `.`, so they are safe in a URL path and
a log line.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from tokenbridge.domain.money import MAX_AMOUNT_EXCLUSIVE
from tokenbridge.services.views import AccountView, ApiKeyInfo, GiftReceipt, PaymentEventResult

from .problems import Problem

# the domain's id rule (domain/accounts.py) minus a leading '.', so "." and ".." never reach a URL path
ID_PATTERN = r"^[A-Za-z0-9_@\-][A-Za-z0-9_.@\-]{0,127}$"
CURSOR_PATTERN = r"^[A-Za-z0-9_.@\-]{1,512}$"  # opaque to clients, URL-safe (ids and base64url fit)
MAX_BATCH = 1000
MAX_PAGE = 200

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN, examples=["alice"])]
Amount = Annotated[
    int,
    Field(
        strict=True,
        gt=0,
        lt=MAX_AMOUNT_EXCLUSIVE,
        description="Integer number of base units (1 coin = 1,000,000 units); 0 < amount < 2**63.",
        examples=[1_000_000],
    ),
]
Units = Annotated[int, Field(description="Integer number of base units.")]
Hex32 = Annotated[str, Field(pattern=r"^0x[0-9a-f]{64}$", description="0x-prefixed bytes32, lower-case hex.")]
AccountKind = Literal["user", "creator"]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]
Cursor = Annotated[
    str | None, Query(max_length=512, pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page.")
]


class _Request(BaseModel):
    # strict: `"1"`, `1.0`, `0`/`1` for booleans are 422s, never coerced.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class OpenAccount(_Request):
    id: Id
    kind: AccountKind
    is_minor: bool = False
    restricted: bool = False


class AccountFlags(_Request):
    is_minor: bool | None = None
    restricted: bool | None = None


class PostGiftBody(_Request):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    id: Id = Field(description="Caller-chosen unique gift id; also the idempotency key.")
    sender: Id = Field(alias="from", description="Sending user's account id.")
    to: Id = Field(description="Receiving creator's account id.")
    amount: Amount


class GiftBatch(_Request):
    gifts: list[PostGiftBody] = Field(min_length=1, max_length=MAX_BATCH)


class CreateApiKey(_Request):
    scope: Literal["app", "admin"]
    account_id: Id | None = Field(default=None, description="Bind the key to one account (scope app only).")


class BalancesOut(BaseModel):
    coins: Units
    earnings: Units
    held: Units
    debt: Units


class AccountOut(BaseModel):
    id: str
    kind: AccountKind
    account_key: Hex32
    balances: BalancesOut
    is_minor: bool
    restricted: bool
    created_at: datetime

    @classmethod
    def of(cls, view: AccountView) -> AccountOut:
        b = view.balances
        return cls(
            id=view.id,
            kind=view.kind,
            account_key=view.account_key,
            balances=BalancesOut(coins=b.coins, earnings=b.earnings, held=b.held, debt=b.debt),
            is_minor=view.is_minor,
            restricted=view.restricted,
            created_at=view.created_at,
        )


class GiftReceiptOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str
    sender: str = Field(alias="from")
    to: str
    gross: Units
    creator_amount: Units
    platform_amount: Units
    creator_bps: int = Field(ge=0, le=10_000)
    status: Literal["posted", "settled"]
    epoch_id: int | None
    sender_key: Hex32
    creator_key: Hex32
    sender_salt: Hex32 | None = Field(
        description="The sender's key salt, to recompute their on-chain key; null when the caller is the creator."
    )
    created_at: datetime

    @classmethod
    def trusted(cls, r: GiftReceipt, *, with_salt: bool = True) -> GiftReceiptOut:
        """Built without validation (the hot paths: a batch answers 1,000 of these): the
        receipt comes from the ledger service, whose values already have these types."""
        return cls.model_construct(
            id=r.id,
            sender=r.sender_id,
            to=r.creator_id,
            gross=r.gross,
            creator_amount=r.creator_amount,
            platform_amount=r.platform_amount,
            creator_bps=r.creator_bps,
            status=r.status,
            epoch_id=r.epoch_id,
            sender_key=r.sender_key,
            creator_key=r.creator_key,
            sender_salt=r.sender_salt if with_salt else None,
            created_at=r.created_at,
        )


class BatchItemOut(BaseModel):
    status: int = Field(description="What POST /v1/gifts would have answered for this item: 201, 200 or 4xx.")
    receipt: GiftReceiptOut | None = None
    problem: Problem | None = None


class GiftBatchOut(BaseModel):
    results: list[BatchItemOut]
    created: int
    replayed: int
    failed: int


class AccountPage(BaseModel):
    items: list[AccountOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


class GiftPage(BaseModel):
    items: list[GiftReceiptOut]
    next_cursor: str | None


class PaymentEventOut(BaseModel):
    event_id: str
    type: str
    payment_id: str
    account_id: str
    amount: Units
    credited: Units
    reversed: Units
    debt_recorded: Units
    replayed: bool

    @classmethod
    def of(cls, r: PaymentEventResult, *, created: bool) -> PaymentEventOut:
        return cls(
            event_id=r.event_id,
            type=r.type,
            payment_id=r.payment_id,
            account_id=r.account_id,
            amount=r.amount,
            credited=r.credited,
            reversed=r.reversed,
            debt_recorded=r.debt_recorded,
            replayed=not created,
        )


class ApiKeyOut(BaseModel):
    id: str
    scope: Literal["app", "admin"]
    account_id: str | None
    created_at: datetime
    key: str | None = Field(default=None, description="The plaintext key; returned once, at creation.")

    @classmethod
    def of(cls, info: ApiKeyInfo, plaintext: str | None = None) -> ApiKeyOut:
        return cls(id=info.id, scope=info.scope, account_id=info.account_id, created_at=info.created_at, key=plaintext)


class Health(BaseModel):
    status: Literal["ok"]
