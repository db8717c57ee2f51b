"""Gifts: who may send to whom, how much, and the split at the rate in force."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from .accounts import check_daily_limit, check_not_restricted, validate_id
from .errors import InsufficientFunds, InvalidInput, OutstandingDebt
from .ledger import PLATFORM_REVENUE, Posting, coins, credit, debit, earnings
from .money import validate_amount
from .split import Split, split

MAX_BATCH = 1000


# The values below are NamedTuples, not frozen dataclasses: as immutable, and a batch of 1,000
# gifts builds several per gift (a frozen dataclass's __init__ costs about 0.1 µs per field).


class GiftRequest(NamedTuple):
    id: str
    sender_id: str
    creator_id: str
    amount: int

    def body(self) -> dict[str, object]:
        """What a replay must match: the gift id alone does not say what was asked."""
        return {"from": self.sender_id, "to": self.creator_id, "amount": self.amount}


def gift_request_hash(req: GiftRequest) -> str:
    """`ledger.request_hash(req.body())`, without the general JSON encoder (the gift hot path).

    Valid ids are `[A-Za-z0-9._@-]` and the amount an int, so the canonical JSON (sorted
    keys, no whitespace, ASCII) is this exact string; a property test holds the two equal.
    """
    canonical = f'{{"amount":{req.amount},"from":"{req.sender_id}","to":"{req.creator_id}"}}'
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_gift(gift_id: object, sender_id: object, creator_id: object, amount: object) -> GiftRequest:
    req = GiftRequest(
        id=validate_id(gift_id, "id"),
        sender_id=validate_id(sender_id, "from"),
        creator_id=validate_id(creator_id, "to"),
        amount=validate_amount(amount),
    )
    check_parties(req)
    return req


def check_parties(req: GiftRequest) -> None:
    """The rule of `validate_gift` beyond each field's own: a gift goes to someone else."""
    if req.sender_id == req.creator_id:
        raise InvalidInput("a gift's sender and creator must differ")


def validate_batch_size(n: int) -> None:
    if n > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} gifts, got {n}")


class SenderState(NamedTuple):
    id: str
    kind: str
    coins: int
    debt: int
    restricted: bool
    gifted_today: int
    daily_limit: int


class CreatorState(NamedTuple):
    id: str
    kind: str
    restricted: bool


def check_gift(req: GiftRequest, sender: SenderState, creator: CreatorState) -> None:
    """Every reason to refuse a gift, in the order a user would want to hear them."""
    if sender.kind != "user":
        raise InvalidInput(f"sender {sender.id} is a {sender.kind} account; only user accounts send gifts")
    if creator.kind != "creator":
        raise InvalidInput(f"recipient {creator.id} is a {creator.kind} account; gifts go to creator accounts")
    check_not_restricted(sender.id, sender.restricted, "send gifts")
    check_not_restricted(creator.id, creator.restricted, "receive gifts")
    if sender.debt > 0:
        raise OutstandingDebt(f"account {sender.id} owes {sender.debt} units; spending is blocked until it is repaid")
    check_daily_limit(sender.id, "gift", sender.gifted_today, req.amount, sender.daily_limit)
    if sender.coins < req.amount:
        raise InsufficientFunds(f"account {sender.id} has {sender.coins} coins units, gift needs {req.amount}")


def debit_sender(req: GiftRequest, sender: SenderState, creator: CreatorState) -> SenderState:
    """`check_gift`, then the sender's state after the gift (coins and today's total).

    Batches apply this item by item to a running state, so a later item sees what the
    earlier ones spent; the adapter writes the final state once per sender.
    """
    check_gift(req, sender, creator)
    return SenderState(  # not `_replace`: this runs once per gift on the hot path
        sender.id,
        sender.kind,
        sender.coins - req.amount,
        sender.debt,
        sender.restricted,
        sender.gifted_today + req.amount,
        sender.daily_limit,
    )


def gifted_on(day: str, counter_day: str, gifted_today: int) -> int:
    """Today's gift total: the stored counter if it is for `day`, else 0 (the day rolled)."""
    return gifted_today if counter_day == day else 0


def gift_posting(req: GiftRequest, creator_bps: int) -> tuple[Split, Posting]:
    parts = split(req.amount, creator_bps)
    posting = Posting.of(
        "gift",
        debit(coins(req.sender_id), parts.gross),
        credit(earnings(req.creator_id), parts.creator_amount),
        credit(PLATFORM_REVENUE, parts.platform_amount),
    )
    return parts, posting
