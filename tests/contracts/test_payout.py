"""payout: tokens leave the vault to wallets, capped by each key's matured earnings and by the
rolling payout allowance; replayed ids are skipped (not reverted) so resends are safe."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eth_account import Account

from tokenbridge.adapters.chain.vault import PayoutItem

if TYPE_CHECKING:
    from tests.contracts.conftest import Chain

pytestmark = pytest.mark.chain

GROSS = 10_000_000
SLOW_PERIOD = 2**24 - 1  # 1,000 per this period refills one unit per ~4.6 hours: no wall-clock effects


@pytest.fixture
def funded(chain: Chain) -> Chain:
    """The vault holds plenty of tokens; nothing is credited yet."""
    chain.fund_vault(10**11)
    return chain


def _wallet() -> str:
    return str(Account.create().address)


def test_payout_moves_tokens_and_records_paid(funded: Chain) -> None:
    vault = funded.vault
    a, b = funded.key(), funded.key()
    funded.credit({a: GROSS, b: GROSS}, mature=True)
    wa, wb = _wallet(), _wallet()
    reserve = vault.reserve()
    result = vault.payout([PayoutItem(1, a, wa, 1_000), PayoutItem(2, b, wb, 2_000), PayoutItem(3, a, wa, 3)])
    assert vault.balance_of(wa) == 1_003
    assert vault.balance_of(wb) == 2_000
    assert vault.reserve() == reserve - 3_003
    assert vault.paid_out(a) == 1_003
    assert vault.withdrawable(a) == funded.share(GROSS) - 1_003
    assert all(vault.is_paid_out(i) for i in (1, 2, 3))
    assert not vault.is_paid_out(4)
    (event,) = vault.events("PayoutBatchExecuted", result.block_number, result.block_number)
    assert dict(event["args"]) == {"ids": [1, 2, 3], "paidCount": 3, "totalAmount": 3_003}
    assert vault.events("PayoutSkipped", result.block_number, result.block_number) == []


def test_replayed_id_is_skipped_not_reverted(funded: Chain) -> None:
    vault = funded.vault
    a = funded.key()
    funded.credit({a: GROSS}, mature=True)
    wa, wb = _wallet(), _wallet()
    vault.payout([PayoutItem(10, a, wa, 1_000)])
    result = vault.payout([PayoutItem(10, a, wa, 1_000), PayoutItem(11, a, wb, 500)])
    assert vault.balance_of(wa) == 1_000  # not paid twice
    assert vault.balance_of(wb) == 500
    assert vault.paid_out(a) == 1_500
    (skipped,) = vault.events("PayoutSkipped", result.block_number, result.block_number)
    assert dict(skipped["args"]) == {"payoutId": 10, "creatorKey": a}
    (batch,) = vault.events("PayoutBatchExecuted", result.block_number, result.block_number)
    assert dict(batch["args"]) == {"ids": [10, 11], "paidCount": 1, "totalAmount": 500}


def test_fully_replayed_batch_moves_nothing(funded: Chain) -> None:
    vault = funded.vault
    a = funded.key()
    funded.credit({a: GROSS}, mature=True)
    items = [PayoutItem(20 + i, a, _wallet(), 100) for i in range(3)]
    vault.payout(items)
    reserve = vault.reserve()
    allowance = vault.payout_allowance().available
    result = vault.payout(items)
    assert vault.reserve() == reserve
    assert vault.paid_out(a) == 300
    assert vault.payout_allowance().available >= allowance
    assert len(vault.events("PayoutSkipped", result.block_number, result.block_number)) == 3


def test_duplicate_id_within_a_batch_pays_once(funded: Chain) -> None:
    vault = funded.vault
    a = funded.key()
    funded.credit({a: GROSS}, mature=True)
    w1, w2, w3 = _wallet(), _wallet(), _wallet()
    vault.payout([PayoutItem(7, a, w1, 100), PayoutItem(8, a, w2, 200), PayoutItem(7, a, w3, 300)])
    assert (vault.balance_of(w1), vault.balance_of(w2), vault.balance_of(w3)) == (100, 200, 0)
    assert vault.paid_out(a) == 300


def test_payout_above_matured_reverts_with_context(funded: Chain) -> None:
    vault = funded.vault
    a = funded.key()
    funded.credit({a: GROSS}, mature=True)
    matured = funded.share(GROSS)
    vault.payout([PayoutItem(1, a, _wallet(), matured - 5)])
    args = funded.reverts("CoinVaultPayoutExceedsMatured", vault.payout, [PayoutItem(2, a, _wallet(), 6)])
    assert args == (a, matured, matured - 5, 6)
    vault.payout([PayoutItem(2, a, _wallet(), 5)])
    assert vault.withdrawable(a) == 0


def test_unmatured_credit_cannot_be_paid(funded: Chain) -> None:
    vault = funded.vault
    a = funded.key()
    funded.credit({a: GROSS}, mature=True)
    funded.credit({a: GROSS})  # pending
    matured = funded.share(GROSS)
    args = funded.reverts("CoinVaultPayoutExceedsMatured", vault.payout, [PayoutItem(1, a, _wallet(), matured + 1)])
    assert args == (a, matured, 0, matured + 1)
    funded.advance(funded.params.payout_delay)
    vault.payout([PayoutItem(1, a, _wallet(), matured + 1)])
    assert vault.paid_out(a) == matured + 1


def test_earned_cap_holds_across_batches_and_within_a_batch(funded: Chain) -> None:
    vault = funded.vault
    a = funded.key()
    funded.credit({a: 1_000}, mature=True)  # 800 matured
    w = _wallet()
    items = [PayoutItem(1, a, w, 500), PayoutItem(2, a, w, 301)]
    assert funded.reverts("CoinVaultPayoutExceedsMatured", vault.payout, items) == (a, 800, 500, 301)
    assert not vault.is_paid_out(1)  # the whole batch reverted
    assert vault.balance_of(w) == 0
    vault.payout([PayoutItem(1, a, w, 500), PayoutItem(2, a, w, 300)])
    args = funded.reverts("CoinVaultPayoutExceedsMatured", vault.payout, [PayoutItem(3, a, w, 1)])
    assert args == (a, 800, 800, 1)


def test_unknown_key_has_nothing_to_pay(funded: Chain) -> None:
    k = funded.key()
    args = funded.reverts("CoinVaultPayoutExceedsMatured", funded.vault.payout, [PayoutItem(1, k, _wallet(), 1)])
    assert args == (k, 0, 0, 1)


def test_huge_amount_does_not_overflow_the_check(funded: Chain) -> None:
    a = funded.key()
    funded.credit({a: 1_000}, mature=True)
    args = funded.reverts(
        "CoinVaultPayoutExceedsMatured", funded.vault.payout, [PayoutItem(1, a, _wallet(), 2**256 - 1)]
    )
    assert args == (a, 800, 0, 2**256 - 1)


def test_payout_allowance_caps_a_batch_and_refills(funded: Chain) -> None:
    vault, admin = funded.vault, funded.actors.admin
    vault.set_payout_limit(1_000, SLOW_PERIOD, account=admin)
    a = funded.key()
    funded.credit({a: GROSS}, mature=True)
    allowance = vault.payout_allowance()
    assert allowance.available == 1_000
    items = [PayoutItem(1, a, _wallet(), 600), PayoutItem(2, a, _wallet(), 401)]
    assert funded.reverts("CoinVaultPayoutAllowanceExceeded", vault.payout, items) == (1_000, 1_001)
    vault.payout([PayoutItem(1, a, _wallet(), 600), PayoutItem(2, a, _wallet(), 400)])
    assert vault.payout_allowance().available == 0
    funded.advance(SLOW_PERIOD)
    assert vault.payout_allowance().available == 1_000
    vault.payout([PayoutItem(3, a, _wallet(), 1_000)])


def test_zero_amount_zero_address_and_length_mismatch_revert(funded: Chain) -> None:
    vault = funded.vault
    a = funded.key()
    funded.credit({a: GROSS}, mature=True)
    funded.reverts("CoinVaultZeroAmount", vault.payout, [PayoutItem(1, a, _wallet(), 0)])
    args = funded.reverts("ERC20InvalidReceiver", vault.payout, [PayoutItem(1, a, "0x" + "00" * 20, 1)])
    assert args == ("0x" + "00" * 20,)
    assert not vault.is_paid_out(1)
    funded.reverts("CoinVaultLengthMismatch", vault._send, "payout", [1, 2], [a], [_wallet()], [1])


def test_payout_beyond_reserve_reverts_in_the_coin(chain: Chain) -> None:
    a = chain.key()
    chain.credit({a: GROSS}, mature=True)  # credited but nothing minted
    args = chain.reverts("ERC20InsufficientBalance", chain.vault.payout, [PayoutItem(1, a, _wallet(), 10)])
    assert args == (chain.vault.address.lower(), 0, 10)


def test_platform_payout_bounded_by_matured_platform_earnings(funded: Chain) -> None:
    vault, admin = funded.vault, funded.actors.admin
    funded.credit({funded.key(): GROSS})
    platform = GROSS - funded.share(GROSS)
    w = _wallet()
    args = funded.reverts("CoinVaultPlatformPayoutExceedsMatured", vault.payout_platform, w, 1, account=admin)
    assert args == (0, 0, 1)
    funded.advance(funded.params.payout_delay)
    result = vault.payout_platform(w, platform - 1, account=admin)
    assert vault.balance_of(w) == platform - 1
    assert vault.platform_paid_out() == platform - 1
    (event,) = vault.events("PlatformPaidOut", result.block_number, result.block_number)
    assert dict(event["args"]) == {"to": w, "amount": platform - 1}
    args = funded.reverts("CoinVaultPlatformPayoutExceedsMatured", vault.payout_platform, w, 2, account=admin)
    assert args == (platform, platform - 1, 2)
    funded.reverts("CoinVaultZeroAmount", vault.payout_platform, w, 0, account=admin)


def test_batch_of_many_fresh_wallets(funded: Chain) -> None:
    vault = funded.vault
    keys = [funded.key() for _ in range(50)]
    funded.credit(dict.fromkeys(keys, 1_000_000), mature=True)
    wallets = [_wallet() for _ in keys]
    items = [PayoutItem(1_000 + i, k, w, 1_000 + i) for i, (k, w) in enumerate(zip(keys, wallets, strict=True))]
    result = vault.payout(items)
    assert [vault.balance_of(w) for w in wallets] == [1_000 + i for i in range(50)]
    assert [vault.paid_out(k) for k in keys] == [1_000 + i for i in range(50)]
    assert result.gas_used < 50 * 40_000
