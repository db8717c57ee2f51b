"""mintForRecharges: minted into the vault, unique batch ids, and a rolling mint allowance that
refills linearly over its period without overflowing near the largest limit."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.contracts.conftest import Chain

pytestmark = pytest.mark.chain

MAX_LIMIT = 2**96 - 1
SLOW_PERIOD = 2**24 - 1  # the longest period: tiny limits then refill far slower than a test runs


def _block_time(chain: Chain, block: int | str = "latest") -> int:
    return int(chain.w3.eth.get_block(block)["timestamp"])


def test_mint_goes_to_the_vault_and_is_recorded(chain: Chain) -> None:
    vault = chain.vault
    root = os.urandom(32)
    result = vault.mint_for_recharges(42, 5_000_000, root, 3)
    assert vault.reserve() == 5_000_000
    assert vault.total_supply() == 5_000_000
    assert vault.balance_of(chain.actors.bridge.address) == 0
    assert vault.is_minted(42)
    assert not vault.is_minted(43)
    (event,) = vault.events("RechargesMinted", result.block_number, result.block_number)
    assert dict(event["args"]) == {"batchId": 42, "amount": 5_000_000, "rechargeRoot": root, "count": 3}


def test_replayed_batch_id_reverts(chain: Chain) -> None:
    vault = chain.vault
    vault.mint_for_recharges(2**255 + 3, 1_000, os.urandom(32), 1)
    args = chain.reverts("CoinVaultBatchAlreadyMinted", vault.mint_for_recharges, 2**255 + 3, 999, os.urandom(32), 1)
    assert args == (2**255 + 3,)
    assert vault.reserve() == 1_000


def test_batch_ids_sharing_a_bitmap_word_are_independent(chain: Chain) -> None:
    vault = chain.vault
    for batch in (256, 257, 511):
        vault.mint_for_recharges(batch, 1, os.urandom(32), 1)
    assert [vault.is_minted(i) for i in (255, 256, 257, 258, 511, 512)] == [False, True, True, False, True, False]


def test_zero_amount_reverts(chain: Chain) -> None:
    chain.reverts("CoinVaultZeroAmount", chain.vault.mint_for_recharges, 1, 0, os.urandom(32), 0)
    assert not chain.vault.is_minted(1)


def test_mint_above_allowance_reverts_with_available(chain: Chain) -> None:
    vault = chain.vault
    assert vault.mint_allowance().available == chain.params.mint_limit
    # 1,000 per 2**24-1 s refills one unit per ~4.6 hours, so wall-clock time between blocks cannot matter.
    vault.set_mint_limit(1_000, SLOW_PERIOD, account=chain.actors.admin)
    assert vault.mint_allowance().available == 1_000
    vault.mint_for_recharges(1, 990, os.urandom(32), 1)
    args = chain.reverts("CoinVaultMintAllowanceExceeded", vault.mint_for_recharges, 2, 11, os.urandom(32), 1)
    assert args == (10, 11)
    vault.mint_for_recharges(2, 10, os.urandom(32), 1)
    assert vault.mint_allowance().available == 0


def test_allowance_refills_linearly_and_caps_at_limit(chain: Chain) -> None:
    vault, limit, period = chain.vault, chain.params.mint_limit, chain.params.mint_period
    t0 = _block_time(chain, vault.mint_for_recharges(1, limit, os.urandom(32), 1).block_number)
    assert vault.mint_allowance().available == 0
    chain.advance(period // 4)
    elapsed = _block_time(chain) - t0
    expected = elapsed * limit // period
    assert 0 < expected < limit
    assert vault.mint_allowance().available == expected
    chain.reverts("CoinVaultMintAllowanceExceeded", vault.mint_for_recharges, 2, expected + limit // 100, b"\0" * 32, 1)
    chain.advance(period)
    assert vault.mint_allowance().available == limit  # full, never more
    chain.advance(period * 10)
    assert vault.mint_allowance().available == limit


def test_partial_use_then_refill_adds_to_remaining(chain: Chain) -> None:
    vault, limit, period = chain.vault, chain.params.mint_limit, chain.params.mint_period
    t0 = _block_time(chain, vault.mint_for_recharges(1, limit // 2, os.urandom(32), 1).block_number)
    chain.advance(period // 10)
    elapsed = _block_time(chain) - t0
    assert vault.mint_allowance().available == min(limit, limit - limit // 2 + elapsed * limit // period)


def test_admin_raising_limit_adds_difference_lowering_removes_it(chain: Chain) -> None:
    vault, admin = chain.vault, chain.actors.admin
    vault.set_mint_limit(10_000, SLOW_PERIOD, account=admin)
    vault.mint_for_recharges(1, 9_000, os.urandom(32), 1)  # 1,000 left
    result = vault.set_mint_limit(15_000, SLOW_PERIOD, account=admin)
    allowance = vault.mint_allowance()
    assert (allowance.limit, allowance.period, allowance.available) == (15_000, SLOW_PERIOD, 6_000)
    (event,) = vault.events("MintLimitChanged", result.block_number, result.block_number)
    assert dict(event["args"]) == {"limit": 15_000, "period": SLOW_PERIOD}
    vault.set_mint_limit(12_000, SLOW_PERIOD, account=admin)
    assert vault.mint_allowance().available == 3_000
    vault.set_mint_limit(10, SLOW_PERIOD, account=admin)
    assert vault.mint_allowance().available == 0  # lowering by more than what is left floors at zero


@pytest.mark.parametrize(
    ("limit", "period", "error", "args"),
    [
        (2**96, 60, "CoinVaultInvalidLimit", (2**96, MAX_LIMIT)),
        (2**256 - 1, 60, "CoinVaultInvalidLimit", (2**256 - 1, MAX_LIMIT)),
        (1, 0, "CoinVaultInvalidPeriod", (0,)),
        (1, 2**24, "CoinVaultInvalidPeriod", (2**24,)),
    ],
)
def test_limit_and_period_are_range_checked(chain: Chain, limit: int, period: int, error: str, args: tuple) -> None:
    assert chain.reverts(error, chain.vault.set_mint_limit, limit, period, account=chain.actors.admin) == args
    assert chain.vault.mint_allowance().limit == chain.params.mint_limit


def test_largest_limit_refills_without_overflow(chain: Chain) -> None:
    """xERC20 issue #18: a huge limit must not overflow the refill maths and block every mint."""
    vault, admin = chain.vault, chain.actors.admin
    period = 2**24 - 1
    vault.set_mint_limit(MAX_LIMIT, period, account=admin)
    # the allowance was full, so raising the limit to MAX_LIMIT leaves exactly MAX_LIMIT available
    assert vault.mint_allowance().available == MAX_LIMIT
    t0 = _block_time(chain, vault.mint_for_recharges(1, MAX_LIMIT, os.urandom(32), 1).block_number)
    chain.advance(period - 1)
    elapsed = _block_time(chain) - t0
    expected = elapsed * MAX_LIMIT // period
    assert vault.mint_allowance().available == expected
    vault.mint_for_recharges(2, expected, os.urandom(32), 1)
    chain.advance(period)
    assert vault.mint_allowance().available == MAX_LIMIT
    vault.mint_for_recharges(3, MAX_LIMIT, os.urandom(32), 1)
    assert vault.total_supply() > 2 * MAX_LIMIT
