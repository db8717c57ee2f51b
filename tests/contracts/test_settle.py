"""settleGifts: the epoch header, the on-chain split, ordered chunks (a replayed chunk is
recognisable), the gross cap, and maturity of credits with admin voids before they mature."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from tokenbridge.domain.split import split

if TYPE_CHECKING:
    from tests.contracts.conftest import Chain

pytestmark = pytest.mark.chain


def test_single_chunk_stores_epoch_and_splits_on_chain(chain: Chain) -> None:
    vault = chain.vault
    creators = [chain.key() for _ in range(3)]
    grosses = [1_000_001, 333, 7_777_777]
    root = os.urandom(32)
    result = vault.settle_gifts(5, 0, root, 12, sum(grosses), creators, grosses)
    bps = chain.params.creator_bps
    for creator, gross in zip(creators, grosses, strict=True):
        assert vault.earned(creator) == split(gross, bps).creator_amount
        assert vault.paid_out(creator) == 0
    creator_total = sum(split(g, bps).creator_amount for g in grosses)
    assert vault.platform_earned() == sum(grosses) - creator_total
    block_time = int(chain.w3.eth.get_block(result.block_number)["timestamp"])
    info = vault.epoch(5)
    assert (info.gift_root, info.gift_count, info.gross_total, info.settled_gross) == (
        root,
        12,
        sum(grosses),
        sum(grosses),
    )
    assert (info.bps, info.settled_at, info.chunks_settled) == (bps, block_time, 1)
    (event,) = vault.events("GiftsSettled", result.block_number, result.block_number)
    assert dict(event["args"]) == {
        "epochId": 5,
        "chunkIndex": 0,
        "giftRoot": root,
        "creatorBps": bps,
        "creators": 3,
        "chunkGross": sum(grosses),
        "creatorTotal": creator_total,
        "platformTotal": sum(grosses) - creator_total,
    }


def test_unsettled_epoch_view_is_empty(chain: Chain) -> None:
    info = chain.vault.epoch(123_456)
    assert not info.settled
    assert info.gift_root == b"\0" * 32


def test_chunks_in_order_accumulate_and_credit_repeat_creators(chain: Chain) -> None:
    vault = chain.vault
    a, b = chain.key(), chain.key()
    root = os.urandom(32)
    vault.settle_gifts(9, 0, root, 4, 4_000, [a, b], [1_000, 1_000])
    vault.settle_gifts(9, 1, root, 4, 4_000, [a], [2_000])
    assert vault.earned(a) == chain.share(1_000) + chain.share(2_000)
    info = vault.epoch(9)
    assert (info.settled_gross, info.chunks_settled) == (4_000, 2)


def test_replayed_chunk_reverts_with_its_own_error(chain: Chain) -> None:
    vault = chain.vault
    a = chain.key()
    root = os.urandom(32)
    vault.settle_gifts(9, 0, root, 2, 3_000, [a], [1_000])
    vault.settle_gifts(9, 1, root, 2, 3_000, [a], [1_000])
    for index in (0, 1):
        args = chain.reverts("CoinVaultChunkAlreadySettled", vault.settle_gifts, 9, index, root, 2, 3_000, [a], [1_000])
        assert args == (9, index)
    assert vault.earned(a) == 2 * chain.share(1_000)


def test_chunk_out_of_order_reverts(chain: Chain) -> None:
    vault = chain.vault
    a = chain.key()
    root = os.urandom(32)
    assert chain.reverts("CoinVaultChunkOutOfOrder", vault.settle_gifts, 9, 1, root, 2, 3_000, [a], [1]) == (9, 0, 1)
    vault.settle_gifts(9, 0, root, 2, 3_000, [a], [1_000])
    assert chain.reverts("CoinVaultChunkOutOfOrder", vault.settle_gifts, 9, 3, root, 2, 3_000, [a], [1]) == (9, 1, 3)


@pytest.mark.parametrize("field", ["root", "count", "gross_total"])
def test_later_chunk_must_repeat_the_header(chain: Chain, field: str) -> None:
    vault = chain.vault
    a = chain.key()
    root = os.urandom(32)
    vault.settle_gifts(9, 0, root, 2, 3_000, [a], [1_000])
    header = {"root": root, "count": 2, "gross_total": 3_000}
    header[field] = os.urandom(32) if field == "root" else int(header[field]) + 1
    args = chain.reverts(
        "CoinVaultEpochHeaderMismatch",
        vault.settle_gifts,
        9,
        1,
        header["root"],
        header["count"],
        header["gross_total"],
        [a],
        [1_000],
    )
    assert args == (9,)


def test_settled_gross_may_not_exceed_gross_total(chain: Chain) -> None:
    vault = chain.vault
    a = chain.key()
    root = os.urandom(32)
    assert chain.reverts("CoinVaultEpochGrossExceeded", vault.settle_gifts, 9, 0, root, 1, 999, [a], [1_000]) == (
        9,
        999,
        1_000,
    )
    vault.settle_gifts(9, 0, root, 2, 1_500, [a], [1_000])
    args = chain.reverts("CoinVaultEpochGrossExceeded", vault.settle_gifts, 9, 1, root, 2, 1_500, [a], [501])
    assert args == (9, 1_500, 1_501)
    assert vault.earned(a) == chain.share(1_000)


def test_length_mismatch_reverts(chain: Chain) -> None:
    args = chain.reverts(
        "CoinVaultLengthMismatch", chain.vault.settle_gifts, 1, 0, os.urandom(32), 2, 10, [chain.key()], [5, 5]
    )
    assert args == (1, 2)


def test_header_values_must_fit_storage(chain: Chain) -> None:
    vault = chain.vault
    a = chain.key()
    assert chain.reverts("CoinVaultAmountTooLarge", vault.settle_gifts, 1, 0, b"\1" * 32, 2**64, 10, [a], [1]) == (
        2**64,
        2**64 - 1,
    )
    assert chain.reverts("CoinVaultAmountTooLarge", vault.settle_gifts, 1, 0, b"\1" * 32, 1, 2**128, [a], [1]) == (
        2**128,
        2**128 - 1,
    )


# ------------------------------------------------------------------ maturity


def test_credit_is_pending_until_payout_delay_passes(chain: Chain) -> None:
    vault = chain.vault
    a = chain.key()
    result = vault.settle_gifts(9, 0, os.urandom(32), 1, 1_000_000, [a], [1_000_000])
    settled_at = int(chain.w3.eth.get_block(result.block_number)["timestamp"])
    credit = vault.credit_of(a)
    assert credit.matures_at == settled_at + chain.params.payout_delay
    assert vault.pending(a) == chain.share(1_000_000)
    assert vault.matured(a) == 0
    assert vault.withdrawable(a) == 0
    assert vault.platform_pending() == 1_000_000 - chain.share(1_000_000)
    assert vault.platform_matured() == 0
    chain.advance(chain.params.payout_delay - 120)
    assert vault.matured(a) == 0
    chain.advance(120)
    assert vault.pending(a) == 0
    assert vault.matured(a) == vault.withdrawable(a) == chain.share(1_000_000)
    assert vault.platform_matured() == 1_000_000 - chain.share(1_000_000)


def test_each_credit_matures_on_its_own_time(chain: Chain) -> None:
    """Granularity 1 s: a second credit to a pending key neither delays nor advances the first one."""
    vault = chain.vault
    delay = chain.params.payout_delay
    a = chain.key()
    t0 = chain.cell_start()
    chain.at(t0)
    chain.credit({a: 1_000_000})
    chain.at(t0 + delay // 2)
    vault.settle_gifts(10, 0, os.urandom(32), 1, 500_000, [a], [500_000])
    assert vault.credit_of(a).matures_at == t0 + delay // 2 + delay  # the newest tracked credit
    assert vault.pending(a) == chain.share(1_000_000) + chain.share(500_000)
    chain.mine_at(t0 + delay - 1)
    assert vault.matured(a) == 0
    chain.mine_at(t0 + delay)  # the first credit's own time
    assert vault.matured(a) == chain.share(1_000_000)
    assert vault.pending(a) == chain.share(500_000)
    chain.mine_at(t0 + delay // 2 + delay)
    assert vault.matured(a) == chain.share(1_500_000)


def test_new_credit_after_maturity_keeps_matured_part(chain: Chain) -> None:
    vault = chain.vault
    a = chain.key()
    chain.credit({a: 1_000_000}, mature=True)
    chain.credit({a: 2_000_000})
    assert vault.matured(a) == chain.share(1_000_000)
    assert vault.pending(a) == chain.share(2_000_000)
    assert vault.earned(a) == chain.share(1_000_000) + chain.share(2_000_000)


def test_admin_voids_unmatured_credit(chain: Chain) -> None:
    vault, admin = chain.vault, chain.actors.admin
    a = chain.key()
    chain.credit({a: 1_000_000}, mature=True)
    chain.credit({a: 5_000_000})  # say this one is fake
    fake = chain.share(5_000_000)
    result = vault.void_credit(a, fake - 1, account=admin)
    assert vault.pending(a) == 1
    assert vault.earned(a) == chain.share(1_000_000) + 1
    (event,) = vault.events("CreditVoided", result.block_number, result.block_number)
    assert dict(event["args"]) == {"creatorKey": a, "amount": fake - 1}
    args = chain.reverts("CoinVaultVoidExceedsPending", vault.void_credit, a, 2, account=admin)
    assert args == (a, 1, 2)
    vault.void_credit(a, 1, account=admin)
    chain.advance(chain.params.payout_delay + 1)
    assert vault.matured(a) == chain.share(1_000_000)


def test_matured_credit_cannot_be_voided(chain: Chain) -> None:
    vault, admin = chain.vault, chain.actors.admin
    a = chain.key()
    chain.credit({a: 1_000_000}, mature=True)
    args = chain.reverts("CoinVaultVoidExceedsPending", vault.void_credit, a, 1, account=admin)
    assert args == (a, 0, 1)
    chain.reverts("CoinVaultZeroAmount", vault.void_credit, a, 0, account=admin)
    assert vault.earned(a) == chain.share(1_000_000)


def test_admin_voids_unmatured_platform_credit(chain: Chain) -> None:
    vault, admin = chain.vault, chain.actors.admin
    chain.credit({chain.key(): 1_000_000})
    platform = 1_000_000 - chain.share(1_000_000)
    args = chain.reverts("CoinVaultVoidExceedsPending", vault.void_platform_credit, platform + 1, account=admin)
    assert args == (b"\0" * 32, platform, platform + 1)
    result = vault.void_platform_credit(platform, account=admin)
    assert vault.platform_earned() == 0
    (event,) = vault.events("PlatformCreditVoided", result.block_number, result.block_number)
    assert event["args"]["amount"] == platform


def test_payout_delay_change_applies_to_every_pending_credit(chain: Chain) -> None:
    vault, admin = chain.vault, chain.actors.admin
    a, b = chain.key(), chain.key()
    chain.credit({a: 1_000})
    assert vault.matured(a) == 0
    result = vault.set_payout_delay(0, account=admin)
    (event,) = vault.events("PayoutDelayChanged", result.block_number, result.block_number)
    assert dict(event["args"]) == {"previousDelay": chain.params.payout_delay, "newDelay": 0}
    assert vault.matured(a) == chain.share(1_000)  # the admin's lower delay matures pending credits too
    chain.credit({b: 1_000})
    assert vault.matured(b) == chain.share(1_000)
    vault.set_payout_delay(chain.params.payout_delay, account=admin)  # raising it delays them again
    assert vault.matured(a) == vault.matured(b) == 0
    assert vault.pending(a) == chain.share(1_000)
