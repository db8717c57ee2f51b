"""EIP-712 messages of wallet links and withdrawals (signed and recovered with eth-account), the
request checks that need no I/O, the state machine with its illegal transitions, and batch gas."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from tokenbridge.domain.errors import IllegalTransition, InvalidInput, SignatureExpired
from tokenbridge.domain.withdrawal import (
    MAX_GAS,
    WalletLinkMessage,
    Withdrawal,
    WithdrawalConfirmed,
    WithdrawalFailed,
    WithdrawalMessage,
    WithdrawalState,
    check_deadline,
    max_payout_batch,
    payout_gas,
    validate_signature,
    withdrawable,
)
from tokenbridge.services.withdrawals import recover_signer

VAULT = "0x" + "5f" * 20
KEY = "0x" + "ab" * 32


def sign(account: Any, typed: dict[str, Any]) -> str:
    m = encode_typed_data(domain_data=typed["domain"], message_types=typed["types"], message_data=typed["message"])
    return "0x" + bytes(Account.sign_message(m, account.key).signature).hex()


def test_withdrawal_signature_recovers_the_signer_and_binds_every_field() -> None:
    wallet = Account.create()
    msg = WithdrawalMessage("w-1", KEY, wallet.address, 5_000_000, 2_000_000_000)
    typed = msg.typed_data(31337, VAULT)
    assert typed["domain"] == {"name": "tokenbridge", "version": "1", "chainId": 31337, "verifyingContract": VAULT}
    sig = sign(wallet, typed)
    signer, digest = recover_signer(typed, sig)
    assert signer == wallet.address
    assert digest.startswith("0x")
    assert len(digest) == 66
    variants = [
        WithdrawalMessage("w-2", KEY, wallet.address, 5_000_000, 2_000_000_000).typed_data(31337, VAULT),
        WithdrawalMessage("w-1", "0x" + "cd" * 32, wallet.address, 5_000_000, 2_000_000_000).typed_data(31337, VAULT),
        WithdrawalMessage("w-1", KEY, Account.create().address, 5_000_000, 2_000_000_000).typed_data(31337, VAULT),
        WithdrawalMessage("w-1", KEY, wallet.address, 5_000_001, 2_000_000_000).typed_data(31337, VAULT),
        WithdrawalMessage("w-1", KEY, wallet.address, 5_000_000, 2_000_000_001).typed_data(31337, VAULT),
        msg.typed_data(1, VAULT),  # another chain
        msg.typed_data(31337, "0x" + "6e" * 20),  # another vault
    ]
    for other in variants:
        recovered, other_digest = recover_signer(other, sig)
        assert recovered != wallet.address
        assert other_digest != digest


def test_wallet_link_signature() -> None:
    wallet = Account.create()
    typed = WalletLinkMessage("bob", KEY, wallet.address, 2_000_000_000).typed_data(31337, VAULT)
    assert recover_signer(typed, sign(wallet, typed))[0] == wallet.address
    moved = WalletLinkMessage("carol", KEY, wallet.address, 2_000_000_000).typed_data(31337, VAULT)
    assert recover_signer(moved, sign(wallet, typed))[0] != wallet.address
    with pytest.raises(InvalidInput):
        WalletLinkMessage("bob", KEY, "0x" + "00" * 20, 1).typed_data(31337, VAULT)  # zero address


def test_malformed_inputs() -> None:
    with pytest.raises(InvalidInput):
        validate_signature("0x1234")
    with pytest.raises(InvalidInput):
        recover_signer(WalletLinkMessage("b", KEY, VAULT, 5).typed_data(1, VAULT), "0x" + "00" * 65)
    with pytest.raises(InvalidInput):
        WithdrawalMessage("w", KEY, VAULT, 0, 5).typed_data(1, VAULT)  # amount must be > 0
    with pytest.raises(InvalidInput):
        WithdrawalMessage("w", "0x12", VAULT, 1, 5).typed_data(1, VAULT)


def test_deadline_is_inclusive() -> None:
    check_deadline(100, 100)
    with pytest.raises(SignatureExpired):
        check_deadline(100, 101)


def test_withdrawable_is_matured_minus_paid_minus_held() -> None:
    assert withdrawable(100, 30, 20) == 50
    assert withdrawable(100, 30, 90) == 0  # never negative
    assert withdrawable(0, 0, 0) == 0


def test_state_machine_happy_paths_and_events() -> None:
    w = Withdrawal("w-1")
    assert w.state is WithdrawalState.REQUESTED
    w.submit(7)
    w.confirm("0xabc")
    assert w.state is WithdrawalState.CONFIRMED
    assert w.final
    assert isinstance(w.events[-1], WithdrawalConfirmed)
    f = Withdrawal("w-2")
    f.submit(8)
    f.fail("reverted")
    assert f.state is WithdrawalState.FAILED
    assert isinstance(f.events[-1], WithdrawalFailed)
    r = Withdrawal("w-3")
    r.fail("refused before sending")  # failed straight from requested
    assert r.state is WithdrawalState.FAILED
    q = Withdrawal("w-4")
    q.submit(9)
    q.requeue()  # superseded tx: back to the queue
    assert q.state is WithdrawalState.REQUESTED


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (WithdrawalState.REQUESTED, "confirm"),
        (WithdrawalState.REQUESTED, "requeue"),
        (WithdrawalState.CONFIRMED, "fail"),
        (WithdrawalState.CONFIRMED, "submit"),
        (WithdrawalState.CONFIRMED, "confirm"),
        (WithdrawalState.FAILED, "confirm"),
        (WithdrawalState.FAILED, "submit"),
        (WithdrawalState.FAILED, "fail"),
        (WithdrawalState.SUBMITTED, "submit"),
    ],
)
def test_illegal_transitions(state: WithdrawalState, action: str) -> None:
    w = Withdrawal("w", state)
    calls = {
        "submit": lambda: w.submit(1),
        "confirm": lambda: w.confirm("0x1"),
        "fail": lambda: w.fail("x"),
        "requeue": w.requeue,
    }
    with pytest.raises(IllegalTransition):
        calls[action]()
    assert w.state is state
    assert w.events == []


def test_payout_batches_fit_the_gas_cap() -> None:
    n = max_payout_batch()
    assert 300 <= n <= 400
    assert payout_gas(n) <= MAX_GAS
    with pytest.raises(InvalidInput):
        payout_gas(0)
