"""Domain rules of the ledger, gifts and accounts: pure Python, no database."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenbridge.domain import ledger as lg
from tokenbridge.domain.accounts import DailyLimits, check_daily_limit, validate_id, validate_kind
from tokenbridge.domain.errors import (
    AccountRestricted,
    IdempotencyConflict,
    IllegalTransition,
    InsufficientFunds,
    InvalidAmount,
    InvalidInput,
    LimitExceeded,
    OutstandingDebt,
    UnbalancedPosting,
)
from tokenbridge.domain.gifts import (
    MAX_BATCH,
    CreatorState,
    SenderState,
    check_gift,
    gift_posting,
    gift_request_hash,
    validate_batch_size,
    validate_gift,
)

amounts = st.integers(min_value=1, max_value=2**63 - 1)
bps = st.integers(min_value=0, max_value=10_000)


def sender(**kw: object) -> SenderState:
    base: dict[str, object] = {
        "id": "alice",
        "kind": "user",
        "coins": 1_000,
        "debt": 0,
        "restricted": False,
        "gifted_today": 0,
        "daily_limit": 10_000,
    }
    base.update(kw)
    return SenderState(**base)  # type: ignore[arg-type]


def creator(**kw: object) -> CreatorState:
    base: dict[str, object] = {"id": "bob", "kind": "creator", "restricted": False}
    base.update(kw)
    return CreatorState(**base)  # type: ignore[arg-type]


# --- postings --------------------------------------------------------------------------------


def test_posting_must_balance() -> None:
    with pytest.raises(UnbalancedPosting):
        lg.Posting.of("x", lg.debit(lg.coins("a"), 10), lg.credit(lg.PLATFORM_REVENUE, 9))


def test_posting_drops_zero_legs_and_needs_one_leg() -> None:
    p = lg.Posting.of("x", lg.debit(lg.coins("a"), 5), lg.credit(lg.earnings("b"), 5), lg.credit(lg.debt("a"), 0))
    assert len(p.legs) == 2
    with pytest.raises(UnbalancedPosting):
        lg.Posting.of("x", lg.debit(lg.coins("a"), 0), lg.credit(lg.coins("b"), 0))


def test_posting_refuses_negative_leg_amounts() -> None:
    with pytest.raises(InvalidAmount):
        lg.Posting.of("x", lg.debit(lg.coins("a"), -5), lg.credit(lg.coins("b"), -5))


def test_which_accounts_may_go_negative() -> None:
    assert lg.may_go_negative(lg.EXTERNAL_PAYMENTS)
    assert lg.may_go_negative(lg.EXTERNAL_CHAIN)
    assert lg.may_go_negative(lg.debt("a"))
    for name in (lg.coins("a"), lg.earnings("b"), lg.held("b"), lg.PLATFORM_REVENUE):
        assert not lg.may_go_negative(name)
        with pytest.raises(UnbalancedPosting):
            lg.check_balance(name, -1)
        lg.check_balance(name, 0)


def test_parse_name_rejects_garbage() -> None:
    assert lg.parse_name("user:alice:coins") == ("user", "alice", "coins")
    assert lg.parse_name("platform:revenue") == ("platform", None, "revenue")
    with pytest.raises(InvalidInput):
        lg.parse_name("nonsense")


@settings(max_examples=200)
@given(amount=amounts, rate=bps)
def test_gift_posting_balances_and_splits_exactly(amount: int, rate: int) -> None:
    req = validate_gift("g1", "alice", "bob", amount)
    parts, posting = gift_posting(req, rate)
    debits = sum(leg.amount for leg in posting.legs if leg.side == "debit")
    credits = sum(leg.amount for leg in posting.legs if leg.side == "credit")
    assert debits == credits == amount
    assert parts.creator_amount == amount * rate // 10_000
    assert parts.creator_amount + parts.platform_amount == amount
    assert sum(posting.effects().values()) == 0


# --- idempotency -------------------------------------------------------------------------------

_ids = st.text(alphabet="ABCXYZabcxyz0189._@-", min_size=1, max_size=128)


@settings(max_examples=300)
@given(gift_id=_ids, sender=_ids, creator=_ids, amount=amounts)
def test_the_gift_hot_path_hash_is_the_canonical_request_hash(
    gift_id: str, sender: str, creator: str, amount: int
) -> None:
    """`gift_request_hash` skips the JSON encoder; it must give exactly `request_hash(body)`,
    or replays of gifts stored by the general path would be refused as conflicts."""
    if sender == creator:
        creator = ("Y" if creator[0] == "Z" else "Z") + creator[1:]
    req = validate_gift(gift_id, sender, creator, amount)
    assert gift_request_hash(req) == lg.request_hash(req.body())


def test_request_hash_is_canonical_and_type_sensitive() -> None:
    assert lg.request_hash({"a": 1, "b": "x"}) == lg.request_hash({"b": "x", "a": 1})
    assert lg.request_hash({"amount": 1}) != lg.request_hash({"amount": 1.0})
    assert lg.request_hash({"amount": 1}) != lg.request_hash({"amount": 2})


def test_check_replay() -> None:
    h = lg.request_hash({"amount": 1})
    lg.check_replay("gift id", "g", h, h)
    with pytest.raises(IdempotencyConflict):
        lg.check_replay("gift id", "g", h, lg.request_hash({"amount": 2}))


# --- holds -------------------------------------------------------------------------------------


def test_hold_posts_once() -> None:
    hold = lg.Hold("h1", "bob", 50)
    reserve = hold.reserve_posting()
    assert reserve.effects() == {lg.earnings("bob"): -50, lg.held("bob"): 50}
    post = hold.post()
    assert hold.state is lg.HoldState.POSTED
    assert post.effects() == {lg.held("bob"): -50, lg.EXTERNAL_CHAIN: 50}
    with pytest.raises(IllegalTransition):
        hold.post()
    with pytest.raises(IllegalTransition):
        hold.void()


def test_hold_void_returns_funds_and_is_final() -> None:
    hold = lg.Hold("h1", "bob", 50)
    assert hold.void().effects() == {lg.held("bob"): -50, lg.earnings("bob"): 50}
    assert hold.state is lg.HoldState.VOIDED
    with pytest.raises(IllegalTransition):
        hold.post()


# --- accounts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "a:b", "x" * 129, "spa ce", 5, None, "ü"])
def test_validate_id_refuses(bad: object) -> None:
    with pytest.raises(InvalidInput):
        validate_id(bad)


def test_validate_kind() -> None:
    assert validate_kind("user") == "user"
    assert validate_kind("creator") == "creator"
    with pytest.raises(InvalidInput):
        validate_kind("admin")


def test_daily_limits() -> None:
    limits = DailyLimits(recharge=100, gift=50, minor_recharge=10, minor_gift=5)
    assert limits.gift_limit(is_minor=True) == 5
    assert limits.recharge_limit(is_minor=False) == 100
    check_daily_limit("a", "gift", 40, 10, 50)
    with pytest.raises(LimitExceeded):
        check_daily_limit("a", "gift", 41, 10, 50)


# --- gifts ------------------------------------------------------------------------------------


def test_validate_gift() -> None:
    with pytest.raises(InvalidInput):
        validate_gift("g", "alice", "alice", 5)
    with pytest.raises(InvalidAmount):
        validate_gift("g", "alice", "bob", 0)
    with pytest.raises(InvalidAmount):
        validate_gift("g", "alice", "bob", 1.0)
    with pytest.raises(InvalidAmount):
        validate_gift("g", "alice", "bob", 2**63)
    validate_batch_size(MAX_BATCH)
    with pytest.raises(InvalidInput):
        validate_batch_size(MAX_BATCH + 1)


@pytest.mark.parametrize(
    ("s", "c", "error"),
    [
        ({"coins": 99}, {}, InsufficientFunds),
        ({"debt": 1, "coins": 10_000}, {}, OutstandingDebt),
        ({"restricted": True}, {}, AccountRestricted),
        ({}, {"restricted": True}, AccountRestricted),
        ({"gifted_today": 9_950}, {}, LimitExceeded),
        ({"kind": "creator"}, {}, InvalidInput),
        ({}, {"kind": "user"}, InvalidInput),
    ],
)
def test_check_gift_refusals(s: dict[str, object], c: dict[str, object], error: type[Exception]) -> None:
    req = validate_gift("g", "alice", "bob", 100)
    with pytest.raises(error):
        check_gift(req, sender(**s), creator(**c))


def test_check_gift_allows_exact_balance_and_limit() -> None:
    req = validate_gift("g", "alice", "bob", 100)
    check_gift(req, sender(coins=100, gifted_today=9_900), creator())


def test_ids_addresses_and_signatures_refuse_a_trailing_newline() -> None:
    """`$` matches before a final newline; the patterns end in `\\Z` so "alice\\n" is not an id."""
    from tokenbridge.domain.accounts import validate_id
    from tokenbridge.domain.withdrawal import validate_address, validate_signature

    assert validate_id("alice") == "alice"
    with pytest.raises(InvalidInput):
        validate_id("alice\n")
    with pytest.raises(InvalidInput):
        validate_address("0x" + "ab" * 20 + "\n")
    with pytest.raises(InvalidInput):
        validate_signature("0x" + "ab" * 65 + "\n")
