"""The chain tx state machine, fee bump maths and confirmation rules (pure, no I/O)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tokenbridge.domain import txstate as ts
from tokenbridge.domain.errors import IllegalTransition, InvalidInput
from tokenbridge.domain.txstate import Fees, TxState

wei = st.integers(min_value=0, max_value=10**30)
pcts = st.integers(min_value=1, max_value=200)


@st.composite
def fees(draw: st.DrawFn) -> Fees:
    tip = draw(wei)
    return Fees(max_fee_per_gas=tip + draw(wei), max_priority_fee_per_gas=tip)


# --- transitions ------------------------------------------------------------------------------

LEGAL = {
    (TxState.SIGNED, TxState.BROADCAST),
    (TxState.SIGNED, TxState.MINED),
    (TxState.SIGNED, TxState.SUPERSEDED),
    (TxState.BROADCAST, TxState.MINED),
    (TxState.BROADCAST, TxState.SUPERSEDED),
    (TxState.MINED, TxState.CONFIRMED),
    (TxState.MINED, TxState.REVERTED),
    (TxState.MINED, TxState.BROADCAST),
}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(TxState, TxState)))
def test_exactly_the_listed_transitions_are_allowed(current: TxState, new: TxState) -> None:
    if (current, new) in LEGAL:
        assert ts.transition(current, new) is new
    else:
        with pytest.raises(IllegalTransition):
            ts.transition(current, new)


def test_final_states_have_no_way_out_and_strings_are_accepted() -> None:
    assert {s for s in TxState if ts.is_final(s)} == {TxState.CONFIRMED, TxState.REVERTED, TxState.SUPERSEDED}
    assert ts.transition("signed", "broadcast") is TxState.BROADCAST
    with pytest.raises(ValueError, match="bogus"):
        ts.transition("signed", "bogus")


@given(st.lists(st.sampled_from(list(TxState)), max_size=12))
def test_any_walk_of_legal_steps_never_leaves_a_final_state(steps: list[TxState]) -> None:
    state = TxState.SIGNED
    for step in steps:
        try:
            new = ts.transition(state, step)
        except IllegalTransition:
            assert (state, step) not in LEGAL
            continue
        assert not ts.is_final(state)
        state = new


# --- fees -----------------------------------------------------------------------------------


@given(old=fees(), pct=pcts)
def test_bump_raises_both_caps_by_at_least_pct_and_one_wei(old: Fees, pct: int) -> None:
    new = ts.bump_fees(old, pct=pct, max_fee_cap=10**40)
    assert new is not None
    for before, after in (
        (old.max_fee_per_gas, new.max_fee_per_gas),
        (old.max_priority_fee_per_gas, new.max_priority_fee_per_gas),
    ):
        assert after >= before + 1
        assert after * 100 >= before * (100 + pct)  # integer form of after >= before * (1 + pct%)
    assert new.max_priority_fee_per_gas <= new.max_fee_per_gas


@given(old=fees(), pct=pcts, market=fees())
def test_bump_follows_the_market_when_it_asks_for_more(old: Fees, pct: int, market: Fees) -> None:
    new = ts.bump_fees(old, pct=pct, max_fee_cap=10**40, market=market)
    assert new is not None
    assert new.max_fee_per_gas >= market.max_fee_per_gas
    assert new.max_priority_fee_per_gas >= market.max_priority_fee_per_gas


@given(old=fees(), pct=pcts, cap=wei, market=st.none() | fees())
def test_bump_never_exceeds_the_cap_and_refuses_an_invalid_replacement(
    old: Fees, pct: int, cap: int, market: Fees | None
) -> None:
    assume(cap > 0)
    new = ts.bump_fees(old, pct=pct, max_fee_cap=cap, market=market)
    min_fee = max(-(-old.max_fee_per_gas * (100 + pct) // 100), old.max_fee_per_gas + 1)
    min_tip = max(-(-old.max_priority_fee_per_gas * (100 + pct) // 100), old.max_priority_fee_per_gas + 1)
    # refused exactly when the smallest valid replacement does not fit under the cap
    assert (new is None) == (min_fee > cap or min_tip > cap)
    if new is not None:
        assert min_fee <= new.max_fee_per_gas <= cap
        assert min_tip <= new.max_priority_fee_per_gas <= new.max_fee_per_gas


def test_bump_examples() -> None:
    assert ts.bump_fees(Fees(100, 10), pct=10, max_fee_cap=1_000) == Fees(110, 11)
    assert ts.bump_fees(Fees(0, 0), pct=10, max_fee_cap=1_000) == Fees(1, 1)  # +1 wei at least
    assert ts.bump_fees(Fees(101, 1), pct=10, max_fee_cap=1_000) == Fees(112, 2)  # rounds up
    assert ts.bump_fees(Fees(100, 10), pct=10, max_fee_cap=109) is None  # would break the cap
    assert ts.bump_fees(Fees(100, 10), pct=10, max_fee_cap=150, market=Fees(400, 30)) == Fees(150, 30)
    with pytest.raises(InvalidInput):
        ts.bump_fees(Fees(100, 10), pct=0, max_fee_cap=1_000)


@given(base=wei, tip=wei, cap=st.integers(min_value=1, max_value=10**31))
def test_market_fees_are_capped_and_consistent(base: int, tip: int, cap: int) -> None:
    f = ts.market_fees(base, tip, cap)
    assert f.max_fee_per_gas <= cap
    assert f.max_priority_fee_per_gas <= f.max_fee_per_gas
    if 2 * base + tip <= cap:
        assert f == Fees(2 * base + tip, tip)


def test_fees_reject_a_tip_above_the_max_fee() -> None:
    with pytest.raises(InvalidInput):
        Fees(max_fee_per_gas=1, max_priority_fee_per_gas=2)


# --- confirmations and nonces ----------------------------------------------------------------


@given(block=st.integers(0, 10**9), conf=st.integers(0, 1000), ahead=st.integers(-1000, 1000))
def test_confirmed_exactly_when_enough_blocks_are_on_top(block: int, conf: int, ahead: int) -> None:
    head = block + ahead
    assume(head >= 0)
    assert ts.is_confirmed(block, head, conf) == (head - block >= conf)
    state = ts.settle_state(1, block, head, conf)
    assert state is (TxState.CONFIRMED if head - block >= conf else TxState.MINED)
    assert ts.settle_state(0, block, head, conf) is (TxState.REVERTED if head - block >= conf else TxState.MINED)


@given(nonce=st.integers(0, 10**6), settled=st.integers(0, 10**6), own=st.booleans())
def test_superseded_only_when_nonce_is_used_and_no_receipt_is_ours(nonce: int, settled: int, own: bool) -> None:
    assert ts.nonce_taken_by_other(nonce, settled, own) == (nonce < settled and not own)


@given(cursor=st.none() | st.integers(0, 10**6), chain=st.integers(0, 10**6))
def test_cursor_never_moves_down(cursor: int | None, chain: int) -> None:
    new = ts.next_cursor(cursor, chain)
    assert new >= chain
    if cursor is not None:
        assert new == max(cursor, chain)


def test_intrinsic_gas_counts_calldata_and_applies_the_floor() -> None:
    assert ts.intrinsic_gas(b"") == 21_000
    assert ts.intrinsic_gas(b"\x00" * 10) == 21_000 + 10 * 10  # floor (10/zero byte) above 4/zero byte
    assert ts.intrinsic_gas(b"\x01" * 10) == 21_000 + 40 * 10  # floor (40/non-zero byte) above 16


@given(st.binary(max_size=2_000))
def test_intrinsic_gas_is_at_least_the_standard_cost(data: bytes) -> None:
    zeros = data.count(0)
    assert ts.intrinsic_gas(data) >= 21_000 + 4 * zeros + 16 * (len(data) - zeros)
    assert ts.intrinsic_gas(data + b"\x01") > ts.intrinsic_gas(data)


@pytest.mark.parametrize(
    ("message", "verdict"),
    [
        ("already known", ts.SendVerdict.ACCEPTED),
        ("transaction already imported", ts.SendVerdict.ACCEPTED),
        ("nonce too low", ts.SendVerdict.NONCE_USED),
        ("replacement transaction underpriced", ts.SendVerdict.OUTBID),
        ("Insufficient funds for gas * price + value", ts.SendVerdict.RETRY),
        ("max fee per gas less than block base fee", ts.SendVerdict.RETRY),
        ("invalid chain id for signer", ts.SendVerdict.REFUSED),
        ("intrinsic gas too low", ts.SendVerdict.REFUSED),
        ("something new from a node", ts.SendVerdict.RETRY),
    ],
)
def test_node_refusals_are_classified(message: str, verdict: ts.SendVerdict) -> None:
    assert ts.classify_send_error(message) is verdict
