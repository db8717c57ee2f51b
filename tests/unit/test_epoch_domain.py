"""The pure epoch rules: when to close, per-creator totals, the rounding adjustment, re-splits at
the enforced rate, chunking within the gas cap, and the state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenbridge.domain.epoch import (
    MAX_GAS,
    EpochGift,
    EpochPolicy,
    EpochState,
    max_creators_per_chunk,
    plan_settlement,
    settle_gas,
    transition,
)
from tokenbridge.domain.errors import IllegalTransition, InvalidInput

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY_A = "0x" + "aa" * 32
KEY_B = "0x" + "bb" * 32


def gift(i: int, gross: int, bps: int = 8_000, key: str = KEY_A, creator: str = "bob") -> EpochGift:
    return EpochGift(f"g{i}", creator, key, gross, gross * bps // 10_000, bps)


def close_reason(policy: EpochPolicy, **kw: object) -> str | None:
    args: dict[str, object] = {
        "opened_at": T0,
        "now": T0 + timedelta(seconds=10),
        "gift_count": 1,
        "gift_rates": [8_000],
        "chain_bps": 8_000,
        "pending_effective_at": None,
    }
    args.update(kw)
    return policy.reason_to_close(**args)  # type: ignore[arg-type]


def test_close_rules() -> None:
    p = EpochPolicy(max_age_s=60, max_gifts=100, rate_lead_s=30)
    assert close_reason(p) is None
    assert close_reason(p, gift_count=0, now=T0 + timedelta(days=1)) is None  # empty never closes
    assert "old" in (close_reason(p, now=T0 + timedelta(seconds=60)) or "")
    assert "gifts" in (close_reason(p, gift_count=100) or "")
    assert "rate" in (close_reason(p, chain_bps=7_000) or "")
    soon = int((T0 + timedelta(seconds=30)).timestamp())
    assert close_reason(p, pending_effective_at=soon) is not None  # within the lead time
    assert close_reason(p, pending_effective_at=soon + 3_600) is None
    with pytest.raises(InvalidInput):
        EpochPolicy(max_age_s=0)


def test_rounding_adjustment_is_the_vaults_floor_minus_the_ledgers_floors() -> None:
    plan = plan_settlement([gift(0, 1), gift(1, 1), gift(2, 1), gift(3, 2)], 8_000)
    [credit] = plan.credits
    assert (credit.gross, credit.ledger_credit, credit.chain_credit) == (5, 1, 4)
    assert credit.adjustment == 3
    assert plan.rounding_total == 3
    assert plan.creator_total == 4
    assert plan.resplit == ()


@given(st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=40), st.integers(0, 10_000))
def test_adjustment_is_never_negative_and_below_the_gift_count_at_one_rate(amounts: list[int], bps: int) -> None:
    plan = plan_settlement([gift(i, a, bps) for i, a in enumerate(amounts)], bps)
    [credit] = plan.credits
    assert 0 <= credit.adjustment < len(amounts)
    assert credit.chain_credit == sum(amounts) * bps // 10_000  # the vault's formula


def test_gifts_split_at_another_rate_are_re_split_at_the_enforced_rate() -> None:
    plan = plan_settlement([gift(0, 1_000_003, 8_000), gift(1, 10, 7_000)], 7_000)
    assert [g for g, _ in plan.resplit] == ["g0"]
    new = dict(plan.resplit)["g0"]
    assert (new.creator_amount, new.platform_amount, new.creator_bps) == (700_002, 300_001, 7_000)
    [credit] = plan.credits
    assert credit.chain_credit == 1_000_013 * 7_000 // 10_000
    assert credit.adjustment < 0  # the creator gives back what the old rate over-credited


def test_credits_are_sorted_by_key_and_chunked() -> None:
    keys = [f"0x{i:064x}" for i in range(7)]
    gifts = [gift(i, 100 + i, key=keys[6 - i], creator=f"c{6 - i}") for i in range(7)]
    plan = plan_settlement(gifts, 8_000, chunk_size=3)
    assert [c.creator_key for c in plan.credits] == keys
    assert [len(c) for c in plan.chunks] == [3, 3, 1]
    assert plan.gross_total == sum(g.gross for g in gifts)
    with pytest.raises(InvalidInput):
        plan_settlement([], 8_000)
    with pytest.raises(InvalidInput):  # one key, two accounts: a ledger bug, refused
        plan_settlement([gift(0, 1, key=KEY_B, creator="x"), gift(1, 1, key=KEY_B, creator="y")], 8_000)


def test_chunks_fit_the_transaction_gas_cap() -> None:
    n = max_creators_per_chunk()
    assert n >= 400
    assert settle_gas(n) <= MAX_GAS
    assert (
        plan_settlement([gift(i, 1, key=f"0x{i:064x}", creator=f"c{i}") for i in range(n + 1)], 8_000).chunks[1]
        == plan_settlement([gift(i, 1, key=f"0x{i:064x}", creator=f"c{i}") for i in range(n + 1)], 8_000).credits[n:]
    )


def test_state_machine() -> None:
    assert transition("open", EpochState.CLOSED) == "closed"
    assert transition("closed", EpochState.SUBMITTED) == "submitted"
    assert transition("submitted", EpochState.SETTLED) == "settled"
    for current, to in (("open", EpochState.SETTLED), ("settled", EpochState.OPEN), ("closed", EpochState.CLOSED)):
        with pytest.raises(IllegalTransition):
            transition(current, to)
