"""Maturity buckets (AUDIT-3): two buckets per key on a fixed grid of `maturityGranularity` (G) seconds.

A credit settled in cell c = t // G matures at (c + 1) * G - 1 + D, D the *current* payoutDelay. Rules for a
credit in cell c (contracts/CoinVault.sol, maturity comment): 1 same cell -> the newest bucket grows; 2 new
cell, newest bucket matured -> both dropped; 3 new cell, older bucket matured or empty -> rotate; 4 new cell,
both unmatured (only when D > G) -> the newest bucket absorbs the credit and moves to cell c.

Most tests use `grid` (G = 1 h, D = 1 h); the overflow and saturation tests use `chain` (G = 1 s).
Fields that cannot overflow by construction: `paid` (<= earned), the older bucket (it only ever receives a
range-checked newest bucket), the platform's `earned` (would need 2**32 cells of a full uint96 bucket).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eth_account import Account

from tokenbridge.adapters.chain.vault import CreditBuckets, PayoutItem

if TYPE_CHECKING:
    from tests.contracts.conftest import Chain

pytestmark = pytest.mark.chain

G = 3_600  # the grid deployment's granularity and payout delay
D = 3_600
U48 = 2**48 - 1
U56 = 2**56 - 1


def _gross_for(chain: Chain, share: int) -> int:
    """The smallest gross whose creator share at the deployment's rate is `share`."""
    bps = chain.params.creator_bps
    gross = -(-share * 10_000 // bps)
    assert chain.share(gross) == share
    return gross


def _credit_at(chain: Chain, timestamp: int, credits: dict[bytes, int]) -> None:
    """Settle a one-chunk epoch in a block at `timestamp`. Gas is given: anvil estimates against the
    latest block's time, i.e. possibly another cell, where the credit could behave differently."""
    chain.at(timestamp)
    gross = list(credits.values())
    chain.vault.settle_gifts(
        chain.next_epoch(), 0, b"\1" * 32, len(gross), sum(gross), list(credits), gross, gas=1_000_000
    )


def test_credits_in_one_cell_share_one_bucket_and_one_maturity(grid: Chain) -> None:
    vault = grid.vault
    a = grid.key()
    base = grid.cell_start()
    _credit_at(grid, base + 10, {a: 1_000_000})
    _credit_at(grid, base + G - 1, {a: 500_000})  # the cell's last second
    both = grid.share(1_000_000) + grid.share(500_000)
    assert vault.credit_buckets(a) == CreditBuckets(both, base + G - 1 + D, 0, 0)
    assert vault.credit_of(a).matures_at == base + G - 1 + D
    grid.mine_at(base + G - 2 + D)  # the later credit is D - 1 old: not yet
    assert (vault.matured(a), vault.pending(a)) == (0, both)
    grid.mine_at(base + G - 1 + D)  # exactly D after the later credit, D + G - 11 after the first
    assert (vault.matured(a), vault.pending(a)) == (both, 0)


def test_new_cell_rotates_the_unmatured_bucket(grid: Chain) -> None:
    vault = grid.vault
    a = grid.key()
    base = grid.cell_start()
    x, y = grid.share(1_000_000), grid.share(3_000_000)
    _credit_at(grid, base + 10, {a: 1_000_000})
    _credit_at(grid, base + G + 10, {a: 3_000_000})
    assert vault.credit_buckets(a) == CreditBuckets(y, base + 2 * G - 1 + D, x, base + G - 1 + D)
    grid.mine_at(base + G - 2 + D)
    assert vault.pending(a) == x + y
    grid.mine_at(base + G - 1 + D)
    assert (vault.matured(a), vault.pending(a)) == (x, y)
    grid.mine_at(base + 2 * G - 1 + D)
    assert (vault.matured(a), vault.pending(a)) == (x + y, 0)


def test_new_cell_after_maturity_drops_both_buckets(grid: Chain) -> None:
    vault = grid.vault
    a = grid.key()
    base = grid.cell_start()
    _credit_at(grid, base + 10, {a: 1_000_000})
    _credit_at(grid, base + G + 10, {a: 2_000_000})
    _credit_at(grid, base + 3 * G + 10, {a: 4_000_000})  # cell 1 matured at base + 3G - 1
    z = grid.share(4_000_000)
    assert vault.credit_buckets(a) == CreditBuckets(z, base + 4 * G - 1 + D, 0, 0)
    assert vault.matured(a) == grid.share(1_000_000) + grid.share(2_000_000)
    assert vault.pending(a) == z


def test_new_cell_while_both_buckets_are_unmatured_merges_into_the_newest(grid: Chain) -> None:
    """D = 3 G: the older bucket keeps its cell (so it matures on time); the newest moves later."""
    vault, admin = grid.vault, grid.actors.admin
    vault.set_payout_delay(3 * G, account=admin)
    a = grid.key()
    base = grid.cell_start()
    x, y, z, w = (grid.share(n * 1_000_000) for n in (1, 2, 4, 8))
    _credit_at(grid, base + 10, {a: 1_000_000})  # cell 0
    _credit_at(grid, base + G + 10, {a: 2_000_000})  # cell 1: rotate
    _credit_at(grid, base + 2 * G + 10, {a: 4_000_000})  # cell 2: x (cell 0) unmatured until base + 4G - 1
    assert vault.credit_buckets(a) == CreditBuckets(y + z, base + 6 * G - 1, x, base + 4 * G - 1)
    grid.mine_at(base + 4 * G - 2)
    assert vault.matured(a) == 0
    grid.mine_at(base + 4 * G - 1)  # x matures exactly on its own time
    assert (vault.matured(a), vault.pending(a)) == (x, y + z)
    _credit_at(grid, base + 5 * G + 10, {a: 8_000_000})  # cell 5: x matured -> rotate, y + z keep cell 2
    assert vault.credit_buckets(a) == CreditBuckets(w, base + 9 * G - 1, y + z, base + 6 * G - 1)
    grid.mine_at(base + 6 * G - 1)
    assert (vault.matured(a), vault.pending(a)) == (x + y + z, w)


def test_a_key_credited_in_every_cell_still_matures(grid: Chain) -> None:
    """Liveness with D = 4 G and a credit every half cell (the platform on every settlement): every credit
    matures no earlier than D and no later than 2 D + 2 G after its settlement."""
    vault, admin = grid.vault, grid.actors.admin
    delay = 4 * G
    vault.set_payout_delay(delay, account=admin)
    a = grid.key()
    base = grid.cell_start()
    settled: list[tuple[int, int, int]] = []  # (time, creator share, platform share)
    platform_before = vault.platform_earned()
    for step in range(40):  # 20 hours
        t = base + 10 + step * G // 2
        gross = 1_000_000 + step
        grid.at(t)
        grid.credit({a: gross})
        settled.append((t, grid.share(gross), grid.platform_share(gross)))
        now = grid.now()
        at_most = sum(c for ts, c, _ in settled if now - ts >= delay)
        at_least = sum(c for ts, c, _ in settled if now - ts >= 2 * delay + 2 * G)
        assert at_least <= vault.matured(a) <= at_most, step
        p_most = sum(p for ts, _, p in settled if now - ts >= delay)
        p_least = sum(p for ts, _, p in settled if now - ts >= 2 * delay + 2 * G)
        assert p_least <= vault.platform_matured() - platform_before <= p_most, step
    assert vault.matured(a) > 0
    assert vault.platform_matured() > platform_before


def test_lowering_the_delay_matures_pending_credit_at_its_cell_end(grid: Chain) -> None:
    vault, admin = grid.vault, grid.actors.admin
    a = grid.key()
    base = grid.cell_start()
    _credit_at(grid, base + 10, {a: 1_000_000})
    grid.at(base + 20)
    vault.set_payout_delay(0, account=admin)
    assert vault.credit_of(a).matures_at == base + G - 1
    grid.mine_at(base + G - 2)
    assert vault.matured(a) == 0
    grid.mine_at(base + G - 1)
    assert vault.matured(a) == grid.share(1_000_000)


def test_raising_the_delay_relocks_tracked_credit_but_never_takes_back_paid(funded_grid: Chain) -> None:
    vault, admin = funded_grid.vault, funded_grid.actors.admin
    a = funded_grid.key()
    funded_grid.credit({a: 1_000_000}, mature=True)
    x = funded_grid.share(1_000_000)
    vault.payout([PayoutItem(1, a, Account.create().address, x // 2)])
    vault.set_payout_delay(10 * D, account=admin)  # the admin delays everything still tracked
    assert (vault.matured(a), vault.pending(a), vault.paid_out(a), vault.withdrawable(a)) == (0, x, x // 2, 0)
    args = funded_grid.reverts(
        "CoinVaultPayoutExceedsMatured", vault.payout, [PayoutItem(2, a, Account.create().address, 1)]
    )
    assert args == (a, 0, x // 2, 1)
    # Only the unpaid part can be voided: paid never exceeds earned.
    args = funded_grid.reverts("CoinVaultVoidExceedsPending", vault.void_credit, a, x, account=admin)
    assert args == (a, x - x // 2, x)
    vault.void_credit(a, x - x // 2, account=admin)
    assert (vault.earned(a), vault.paid_out(a)) == (x // 2, x // 2)
    vault.set_payout_delay(D, account=admin)
    assert (vault.matured(a), vault.withdrawable(a)) == (x // 2, 0)


def test_void_takes_the_newest_bucket_first(grid: Chain) -> None:
    vault, admin = grid.vault, grid.actors.admin
    a = grid.key()
    base = grid.cell_start()
    x, y = grid.share(1_000_000), grid.share(2_000_000)
    _credit_at(grid, base + 10, {a: 1_000_000})
    _credit_at(grid, base + G + 10, {a: 2_000_000})
    vault.void_credit(a, y + 5, account=admin)
    buckets = vault.credit_buckets(a)
    assert (buckets.newest, buckets.older) == (0, x - 5)
    assert (vault.earned(a), vault.pending(a)) == (x - 5, x - 5)
    args = grid.reverts("CoinVaultVoidExceedsPending", vault.void_credit, a, x - 4, account=admin)
    assert args == (a, x - 5, x - 4)
    grid.mine_at(base + G - 1 + D)  # the older bucket matured: nothing is voidable any more
    assert grid.reverts("CoinVaultVoidExceedsPending", vault.void_credit, a, 1, account=admin) == (a, 0, 1)
    assert vault.matured(a) == x - 5


def test_void_of_the_platform_takes_the_newest_bucket_first(grid: Chain) -> None:
    vault, admin = grid.vault, grid.actors.admin
    base = grid.cell_start()
    earned = vault.platform_earned()
    _credit_at(grid, base + 10, {grid.key(): 1_000_000})
    _credit_at(grid, base + G + 10, {grid.key(): 2_000_000})
    px, py = grid.platform_share(1_000_000), grid.platform_share(2_000_000)
    vault.void_platform_credit(py + 1, account=admin)
    buckets = vault.platform_credit_buckets()
    assert (buckets.newest, buckets.older) == (0, px - 1)
    assert vault.platform_earned() == earned + px - 1


# ------------------------------------------------------------------ overflow of each field


def test_newest_bucket_overflow_in_the_same_cell_reverts_and_changes_nothing(grid: Chain) -> None:
    vault = grid.vault
    a = grid.key()
    half = _gross_for(grid, 2**47)
    base = grid.cell_start()
    _credit_at(grid, base, {a: half})
    grid.at(base + 1)
    args = grid.reverts(
        "CoinVaultAmountTooLarge", vault.settle_gifts, grid.next_epoch(), 0, b"\1" * 32, 1, half, [a], [half]
    )
    assert args == (2**48, U48)
    assert (vault.earned(a), vault.pending(a)) == (2**47, 2**47)


def test_newest_bucket_overflow_on_a_merge_reverts(grid: Chain) -> None:
    vault, admin = grid.vault, grid.actors.admin
    vault.set_payout_delay(3 * G, account=admin)
    a = grid.key()
    half = _gross_for(grid, 2**47)
    base = grid.cell_start()
    _credit_at(grid, base, {a: half})
    _credit_at(grid, base + G, {a: half})  # rotate
    grid.at(base + 2 * G)  # merge: 2**47 + 2**47 in the newest bucket
    args = grid.reverts(
        "CoinVaultAmountTooLarge", vault.settle_gifts, grid.next_epoch(), 0, b"\1" * 32, 1, half, [a], [half]
    )
    assert args == (2**48, U48)
    assert vault.credit_buckets(a).newest == 2**47


def test_earned_overflow_reverts(chain: Chain) -> None:
    """G = 1 s and D = 0: each credit matures at once, so 256 full buckets fill the uint56 `earned`."""
    vault, admin = chain.vault, chain.actors.admin
    vault.set_payout_delay(0, account=admin)
    a = chain.key()
    full = _gross_for(chain, U48)
    t = chain.now() + 10
    for i in range(256):
        _credit_at(chain, t + i, {a: full})
    assert vault.earned(a) == 256 * U48 == U56 - 255
    assert vault.matured(a) == 256 * U48  # D = 0: matured at the end of its 1 s cell
    gross = _gross_for(chain, 256)
    chain.at(t + 300)
    args = chain.reverts(
        "CoinVaultAmountTooLarge", vault.settle_gifts, chain.next_epoch(), 0, b"\1" * 32, 1, gross, [a], [gross]
    )
    assert args == (2**56, U56)
    assert vault.earned(a) == U56 - 255


def test_cell_past_uint32_reverts(chain: Chain) -> None:
    chain.at(2**32)  # 2106 at G = 1 s
    args = chain.reverts(
        "CoinVaultAmountTooLarge", chain.vault.settle_gifts, 1, 0, b"\1" * 32, 1, 1, [chain.key()], [1]
    )
    assert args == (2**32, 2**32 - 1)


def test_older_bucket_gap_saturates_towards_a_later_maturity(chain: Chain) -> None:
    """D = 100,000 s > 65,535 cells of 1 s: the 16-bit gap saturates and the older bucket's assigned cell
    moves later than its real one (never earlier)."""
    vault, admin = chain.vault, chain.actors.admin
    delay = 100_000
    vault.set_payout_delay(delay, account=admin)
    a = chain.key()
    t0 = chain.now() + 10
    _credit_at(chain, t0, {a: 1_000_000})
    _credit_at(chain, t0 + 1, {a: 2_000_000})  # rotate: older = x @ t0, gap 1
    assert vault.credit_buckets(a).older_matures_at == t0 + delay
    _credit_at(chain, t0 + 70_000, {a: 4_000_000})  # merge: gap 70,000 -> 65,535
    buckets = vault.credit_buckets(a)
    assert buckets.older == chain.share(1_000_000)
    assert buckets.older_matures_at == t0 + 70_000 - 65_535 + delay  # later than t0 + delay
    assert buckets.newest_matures_at == t0 + 70_000 + delay


def test_platform_bucket_overflow_reverts(grid: Chain) -> None:
    """The platform's newest bucket is a uint96; reachable only with bps 0 (all gross to the platform)."""
    vault, admin = grid.vault, grid.actors.admin
    vault.propose_creator_bps(0, account=admin)
    grid.advance(grid.params.split_delay)
    vault.apply_creator_bps(account=admin)
    args = grid.reverts(
        "CoinVaultAmountTooLarge", vault.settle_gifts, grid.next_epoch(), 0, b"\1" * 32, 1, 2**97, [grid.key()], [2**97]
    )
    assert args == (2**97, 2**96 - 1)


def test_granularity_is_immutable_and_reported(chain: Chain, grid: Chain) -> None:
    assert chain.vault.maturity_granularity() == 1
    assert grid.vault.maturity_granularity() == G


@pytest.fixture
def funded_grid(grid: Chain) -> Chain:
    grid.fund_vault(10**11)
    return grid
