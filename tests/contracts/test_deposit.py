"""deposit and depositWithPermit: anyone moves tokens into the vault for an account key and the
`Deposited` event carries what the indexer credits."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from tokenbridge.adapters.chain.vault import PayoutItem

if TYPE_CHECKING:
    from tests.contracts.conftest import Chain

pytestmark = pytest.mark.chain

HELD = 5_000_000


@pytest.fixture
def holder(chain: Chain) -> Chain:
    """alice holds HELD tokens (paid out to her wallet the normal way)."""
    chain.fund_vault(10**9)
    k = chain.key()
    chain.credit({k: 10 * HELD}, mature=True)
    chain.vault.payout([PayoutItem(1, k, chain.actors.alice.address, HELD)])
    return chain


def test_deposit_after_approve_moves_tokens_and_emits_event(holder: Chain) -> None:
    vault, alice = holder.vault, holder.actors.alice
    account = os.urandom(32)
    reserve = vault.reserve()
    vault.approve(vault.address, 1_000, account=alice)
    result = vault.deposit(account, 1_000, account=alice, approve=False)
    assert vault.balance_of(alice.address) == HELD - 1_000
    assert vault.reserve() == reserve + 1_000
    (event,) = vault.events("Deposited", result.block_number, result.block_number)
    assert dict(event["args"]) == {"accountKey": account, "from": alice.address, "amount": 1_000}
    assert event["transactionHash"].to_0x_hex() == result.tx_hash
    assert vault.coin.functions.allowance(alice.address, vault.address).call() == 0


def test_deposit_without_allowance_reverts(holder: Chain) -> None:
    vault, alice = holder.vault, holder.actors.alice
    args = holder.reverts("ERC20InsufficientAllowance", vault.deposit, os.urandom(32), 10, account=alice, approve=False)
    assert args == (vault.address.lower(), 0, 10)
    assert vault.balance_of(alice.address) == HELD


def test_deposit_above_balance_reverts(holder: Chain) -> None:
    vault, alice = holder.vault, holder.actors.alice
    args = holder.reverts("ERC20InsufficientBalance", vault.deposit, os.urandom(32), HELD + 1, account=alice)
    assert args == (alice.address.lower(), HELD, HELD + 1)


def test_deposit_refuses_zero_amount_and_zero_key(holder: Chain) -> None:
    vault, alice = holder.vault, holder.actors.alice
    holder.reverts("CoinVaultZeroAmount", vault.deposit, os.urandom(32), 0, account=alice)
    holder.reverts("CoinVaultZeroAccountKey", vault.deposit, b"\0" * 32, 5, account=alice)
    assert vault.balance_of(alice.address) == HELD


def test_deposit_with_permit_needs_no_approve_transaction(holder: Chain) -> None:
    vault, alice = holder.vault, holder.actors.alice
    account = os.urandom(32)
    nonce = vault.coin.functions.nonces(alice.address).call()
    sent_before = holder.w3.eth.get_transaction_count(alice.address)
    result = vault.deposit_with_permit(account, 2_500, account=alice)
    assert holder.w3.eth.get_transaction_count(alice.address) == sent_before + 1  # one transaction in all
    assert vault.balance_of(alice.address) == HELD - 2_500
    assert vault.coin.functions.nonces(alice.address).call() == nonce + 1
    (event,) = vault.events("Deposited", result.block_number, result.block_number)
    assert dict(event["args"]) == {"accountKey": account, "from": alice.address, "amount": 2_500}


def test_permit_front_run_does_not_block_the_deposit(holder: Chain) -> None:
    """Someone submits alice's permit first; the vault ignores the failing permit and uses the allowance."""
    vault, alice, stranger = holder.vault, holder.actors.alice, holder.actors.stranger
    deadline = holder.now() + 3_600
    v, r, s = vault.sign_permit(alice, 700, deadline)
    vault._send("permit", alice.address, vault.address, 700, deadline, v, r, s, account=stranger, contract=vault.coin)
    vault._send("depositWithPermit", os.urandom(32), 700, deadline, v, r, s, account=alice)
    assert vault.balance_of(alice.address) == HELD - 700


def test_expired_or_forged_permit_fails_on_allowance(holder: Chain) -> None:
    vault, alice, bob = holder.vault, holder.actors.alice, holder.actors.bob
    past = holder.now() - 1
    v, r, s = vault.sign_permit(alice, 700, past)
    args = holder.reverts(
        "ERC20InsufficientAllowance",
        vault._send,
        "depositWithPermit",
        os.urandom(32),
        700,
        past,
        v,
        r,
        s,
        account=alice,
    )
    assert args == (vault.address.lower(), 0, 700)
    # bob replays alice's signature for himself: the permit is for alice, so bob has no allowance
    deadline = holder.now() + 3_600
    v, r, s = vault.sign_permit(alice, 700, deadline)
    holder.reverts(
        "ERC20InsufficientAllowance",
        vault._send,
        "depositWithPermit",
        os.urandom(32),
        700,
        deadline,
        v,
        r,
        s,
        account=bob,
    )
    assert vault.balance_of(alice.address) == HELD


def test_anyone_may_deposit_for_any_key(holder: Chain) -> None:
    vault, alice, bob = holder.vault, holder.actors.alice, holder.actors.bob
    vault.transfer(bob.address, 300, account=alice)
    account = os.urandom(32)
    result = vault.deposit(account, 300, account=bob)
    (event,) = vault.events("Deposited", result.block_number, result.block_number)
    assert event["args"]["from"] == bob.address
    assert event["args"]["accountKey"] == account
