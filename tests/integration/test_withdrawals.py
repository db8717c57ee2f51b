"""Withdrawals against a real anvil and a real database: wallet links (EIP-712), the request checks
(signature, replay, deadline, wrong wallet, withdrawable, maturity, minimum, daily cap), payouts
confirmed on-chain with the hold posted, batching, and a reverted payout that fails and returns
the funds."""

# ruff: noqa: F811  (pytest fixtures imported from support_settlement)
from __future__ import annotations

import time
from typing import Any

import pytest
from eth_account import Account

from support_settlement import (  # noqa: F401  (fixtures)
    CHAIN_ID,
    COIN,
    PAYOUT_DELAY,
    Settlement,
    fresh_db_url,
    make_settlement,
    settle,
    sign_typed,
)
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil
from tokenbridge.domain.errors import (
    BelowMinimumWithdrawal,
    ExceedsWithdrawable,
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    SignatureExpired,
    WalletNotLinked,
    WithdrawalCapExceeded,
    WrongSigner,
)
from tokenbridge.domain.withdrawal import WalletLinkMessage, payout_gas
from tokenbridge.services.ledger import LedgerService


def _earn(h: Settlement, creator: str, gross: int, *, mature: bool = True) -> None:
    """Give `creator` `gross` of gifts, settle them, and (by default) let them mature on-chain."""
    h.gift(h.user(gross), creator, gross)
    h.settle_all()
    if mature:
        h.advance(PAYOUT_DELAY + 1)


def _confirmed(h: Settlement, *ids: str) -> Any:
    return lambda: all(h.withdrawals.get(i).state in ("confirmed", "failed") for i in ids)


def test_link_wallet_needs_that_wallets_signature(settle: Settlement) -> None:
    h = settle
    bob = h.creator()
    with pytest.raises(WalletNotLinked):
        h.withdrawals.wallet_of(bob)
    wallet = h.link(bob)
    assert h.withdrawals.wallet_of(bob).wallet == wallet.address
    # signed by someone else
    other, intruder = Account.create(), Account.create()
    deadline = int(time.time()) + 600
    key = h.services.accounts.get(bob).account_key
    typed = WalletLinkMessage(bob, key, other.address, deadline).typed_data(CHAIN_ID, h.vault.address)
    with pytest.raises(WrongSigner):
        h.withdrawals.link_wallet(bob, other.address, deadline, sign_typed(intruder, typed))
    # signed for another chain id: recovers to some other address
    foreign = WalletLinkMessage(bob, key, other.address, deadline).typed_data(1, h.vault.address)
    with pytest.raises(WrongSigner):
        h.withdrawals.link_wallet(bob, other.address, deadline, sign_typed(other, foreign))
    # expired
    old = WalletLinkMessage(bob, key, other.address, 1_000).typed_data(CHAIN_ID, h.vault.address)
    with pytest.raises(SignatureExpired):
        h.withdrawals.link_wallet(bob, other.address, 1_000, sign_typed(other, old))
    assert h.withdrawals.wallet_of(bob).wallet == wallet.address  # unchanged by the refusals
    # a user account cannot link a wallet
    with pytest.raises(InvalidInput):
        h.link(h.user())


def test_a_valid_withdrawal_is_paid_on_chain_and_its_hold_posted(settle: Settlement) -> None:
    h = settle
    bob = h.creator()
    wallet = h.link(bob)
    _earn(h, bob, 10 * COIN)
    earned = h.earnings(bob)
    assert earned == 8 * COIN
    assert h.withdrawals.withdrawable(bob) == 8 * COIN
    req = h.withdrawal(bob, wallet, 5 * COIN)
    view, created = h.withdrawals.request(req)
    assert created
    assert view.state == "requested"
    acct = h.services.accounts.get(bob).balances
    assert (acct.earnings, acct.held) == (3 * COIN, 5 * COIN)
    assert h.withdrawals.withdrawable(bob) == 3 * COIN

    h.drive(_confirmed(h, req.id))
    done = h.withdrawals.get(req.id)
    assert done.state == "confirmed"
    assert done.tx_hash is not None
    assert done.submitted_at is not None
    assert done.finished_at is not None
    assert h.w3.eth.get_transaction_receipt(done.tx_hash)["status"] == 1  # type: ignore[arg-type]
    assert h.vault.balance_of(wallet.address) == 5 * COIN
    assert h.vault.paid_out(h.key_of(bob)) == 5 * COIN
    assert h.vault.is_paid_out(done.payout_id)
    acct = h.services.accounts.get(bob).balances
    assert (acct.earnings, acct.held) == (3 * COIN, 0)
    assert h.services.holds is not None
    assert h.services.holds.get(f"withdrawal:{done.payout_id}").state == "posted"
    totals = LedgerService(h.uow).totals()
    assert totals.external_chain == 5 * COIN  # the tokens left custody
    assert totals.cache_mismatches == ()
    assert totals.unbalanced_transfers == ()


def test_replay_returns_the_first_result_and_another_body_is_a_conflict(settle: Settlement) -> None:
    h = settle
    bob = h.creator()
    wallet = h.link(bob)
    _earn(h, bob, 10 * COIN)
    req = h.withdrawal(bob, wallet, 2 * COIN, withdrawal_id="w" * 128)  # the longest id the API accepts
    first, created = h.withdrawals.request(req)
    again, created_again = h.withdrawals.request(req)
    assert created
    assert not created_again
    assert again == first
    assert h.services.accounts.get(bob).balances.held == 2 * COIN  # one hold, not two
    other = h.withdrawal(bob, wallet, 3 * COIN, withdrawal_id=req.id)
    with pytest.raises(IdempotencyConflict):
        h.withdrawals.request(other)
    # the replay still answers after the deadline passed
    h.drive(_confirmed(h, req.id))
    assert h.withdrawals.request(req)[0].state == "confirmed"


def test_expired_wrong_wallet_unlinked_and_malformed_requests_are_refused(settle: Settlement) -> None:
    h = settle
    bob, carol = h.creator(), h.creator()
    wallet = h.link(bob)
    _earn(h, bob, 10 * COIN)
    with pytest.raises(SignatureExpired):
        h.withdrawals.request(h.withdrawal(bob, wallet, COIN, deadline=int(time.time()) - 1))
    with pytest.raises(WrongSigner):
        h.withdrawals.request(h.withdrawal(bob, Account.create(), COIN))
    # a signature made for another payee does not authorise this one
    honest = h.withdrawal(bob, wallet, COIN)
    redirected = type(honest)(honest.id, bob, Account.create().address, COIN, honest.deadline, honest.signature)
    with pytest.raises(WrongSigner):
        h.withdrawals.request(redirected)
    with pytest.raises(WalletNotLinked):
        h.withdrawals.request(h.withdrawal(carol, wallet, COIN))
    bad = type(honest)(h.uid("w"), bob, wallet.address, COIN, honest.deadline, "0x" + "00" * 65)
    with pytest.raises(InvalidInput):
        h.withdrawals.request(bad)
    with pytest.raises(NotFound):
        h.withdrawals.get("w-missing")
    assert h.services.accounts.get(bob).balances.held == 0


def test_above_withdrawable_before_maturity_below_minimum_and_over_the_daily_cap(
    anvil: Anvil, fresh_db_url: str
) -> None:
    h = make_settlement(anvil, fresh_db_url, min_amount=COIN, daily_cap=4 * COIN)
    try:
        bob = h.creator()
        wallet = h.link(bob)
        _earn(h, bob, 10 * COIN, mature=False)
        assert h.earnings(bob) == 8 * COIN  # in the ledger, settled on-chain ...
        assert h.vault.matured(h.key_of(bob)) == 0  # ... but still in its challenge window
        with pytest.raises(ExceedsWithdrawable):
            h.withdrawals.request(h.withdrawal(bob, wallet, COIN))
        h.advance(PAYOUT_DELAY + 1)
        with pytest.raises(BelowMinimumWithdrawal):
            h.withdrawals.request(h.withdrawal(bob, wallet, COIN - 1))
        with pytest.raises(WithdrawalCapExceeded):
            h.withdrawals.request(h.withdrawal(bob, wallet, 5 * COIN))
        h.withdrawals.request(h.withdrawal(bob, wallet, 3 * COIN))
        with pytest.raises(WithdrawalCapExceeded):  # 3 + 2 > 4 today
            h.withdrawals.request(h.withdrawal(bob, wallet, 2 * COIN))
        # new earnings not yet matured are not withdrawable even though the ledger has them
        _earn(h, bob, 10 * COIN, mature=False)
        assert h.earnings(bob) == 13 * COIN
        assert h.withdrawals.withdrawable(bob) == 8 * COIN - 3 * COIN
    finally:
        h.close()


def test_more_than_withdrawable_is_refused_without_a_hold(settle: Settlement) -> None:
    h = settle
    bob = h.creator()
    wallet = h.link(bob)
    _earn(h, bob, 10 * COIN)
    with pytest.raises(ExceedsWithdrawable):
        h.withdrawals.request(h.withdrawal(bob, wallet, 8 * COIN + 1))
    assert h.services.accounts.get(bob).balances.held == 0
    h.withdrawals.request(h.withdrawal(bob, wallet, 8 * COIN))  # exactly all of it is fine
    with pytest.raises(ExceedsWithdrawable):  # and then nothing is left
        h.withdrawals.request(h.withdrawal(bob, wallet, COIN))


def test_requested_withdrawals_are_paid_in_one_batch(settle: Settlement) -> None:
    h = settle
    creators = [h.creator() for _ in range(3)]
    wallets = [h.link(c) for c in creators]
    gifter = h.user(30 * COIN)
    for c in creators:
        h.gift(gifter, c, 10 * COIN)
    h.settle_all()
    h.advance(PAYOUT_DELAY + 1)
    reqs = [h.withdrawal(c, w, (i + 2) * COIN) for i, (c, w) in enumerate(zip(creators, wallets, strict=True))]
    for r in reqs:
        h.withdrawals.request(r)
    h.drive(_confirmed(h, *(r.id for r in reqs)))
    views = [h.withdrawals.get(r.id) for r in reqs]
    assert {v.state for v in views} == {"confirmed"}
    assert len({v.tx_hash for v in views}) == 1  # one payout transaction
    receipt = h.w3.eth.get_transaction_receipt(views[0].tx_hash)  # type: ignore[arg-type]
    assert receipt["gasUsed"] <= payout_gas(3)
    for i, w in enumerate(wallets):
        assert h.vault.balance_of(w.address) == (i + 2) * COIN
    assert len({v.payout_id for v in views}) == 3


def test_a_reverted_payout_fails_and_the_funds_come_back(settle: Settlement) -> None:
    h = settle
    bob, carol = h.creator(), h.creator()
    wb, wc = h.link(bob), h.link(carol)
    gifter = h.user(20 * COIN)
    h.gift(gifter, bob, 10 * COIN)
    h.gift(gifter, carol, 10 * COIN)
    h.settle_all()
    h.advance(PAYOUT_DELAY + 1)
    pauser = Account.from_key(DEV_PRIVATE_KEYS[2])
    h.vault.pause_coin(account=pauser)  # every token transfer now reverts, the vault itself is not paused
    rb, rc = h.withdrawal(bob, wb, 4 * COIN), h.withdrawal(carol, wc, 6 * COIN)
    h.withdrawals.request(rb)
    h.withdrawals.request(rc)
    assert h.earnings(bob) == 4 * COIN
    h.drive(_confirmed(h, rb.id, rc.id), rounds=40)
    for r, creator in ((rb, bob), (rc, carol)):
        view = h.withdrawals.get(r.id)
        assert view.state == "failed"
        assert view.failure_reason is not None
        assert "reverted" in view.failure_reason
        acct = h.services.accounts.get(creator).balances
        assert (acct.earnings, acct.held) == (8 * COIN, 0)  # funds back
        assert h.services.holds is not None
        assert h.services.holds.get(f"withdrawal:{view.payout_id}").state == "voided"
        assert not h.vault.is_paid_out(view.payout_id)
    assert h.vault.balance_of(wb.address) == 0
    # after the incident the creator withdraws normally
    h.vault.unpause_coin(account=h.admin)
    again = h.withdrawal(bob, wb, 4 * COIN)
    h.withdrawals.request(again)
    h.drive(_confirmed(h, again.id))
    assert h.withdrawals.get(again.id).state == "confirmed"
    assert h.vault.balance_of(wb.address) == 4 * COIN


def test_a_superseded_payout_is_sent_again_and_paid_once(settle: Settlement) -> None:
    h = settle
    bob = h.creator()
    wallet = h.link(bob)
    _earn(h, bob, 10 * COIN)
    req = h.withdrawal(bob, wallet, 3 * COIN)
    h.withdrawals.request(req)
    assert h.withdrawals.submit_batch()  # signed and stored, not yet broadcast
    first = h.withdrawals.get(req.id)
    assert first.state == "submitted"
    # the bridge key is used elsewhere for the same nonce: our payout can never be mined
    bridge = h.vault.account
    nonce = h.w3.eth.get_transaction_count(bridge.address)
    base = int(h.w3.eth.get_block("latest")["baseFeePerGas"])
    signed = bridge.sign_transaction(
        {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": nonce,
            "to": bridge.address,
            "value": 0,
            "gas": 21_000,
            "maxFeePerGas": 3 * base + 2 * 10**9,
            "maxPriorityFeePerGas": 2 * 10**9,
        }
    )
    h.w3.eth.send_raw_transaction(signed.raw_transaction)
    h.mine(2)
    h.drive(_confirmed(h, req.id), rounds=40)
    done = h.withdrawals.get(req.id)
    assert done.state == "confirmed"
    assert done.tx_hash is not None
    assert done.tx_hash != "0x" + bytes(signed.hash).hex()
    assert h.vault.balance_of(wallet.address) == 3 * COIN  # paid exactly once
    assert h.services.accounts.get(bob).balances.held == 0
    payouts = [t for t in h.txm.txs() if t.purpose == "payout"]
    assert [t.state.value for t in payouts] == ["superseded", "confirmed"]


def test_several_withdrawals_of_one_creator_in_one_batch_all_post_their_holds(settle: Settlement) -> None:
    """Each hold posting re-locks the creator's row: none may drop the previous one's change."""
    h = settle
    bob = h.creator()
    wallet = h.link(bob)
    _earn(h, bob, 20 * COIN)
    reqs = [h.withdrawal(bob, wallet, (i + 1) * COIN) for i in range(3)]
    for r in reqs:
        h.withdrawals.request(r)
    assert h.services.accounts.get(bob).balances.held == 6 * COIN
    h.drive(_confirmed(h, *(r.id for r in reqs)))
    views = [h.withdrawals.get(r.id) for r in reqs]
    assert {v.state for v in views} == {"confirmed"}
    assert len({v.tx_hash for v in views}) == 1  # one payout tx for the three
    acct = h.services.accounts.get(bob).balances
    assert (acct.earnings, acct.held) == (16 * COIN - 6 * COIN, 0)
    assert h.vault.paid_out(h.key_of(bob)) == 6 * COIN
    assert h.services.holds is not None
    assert {h.services.holds.get(f"withdrawal:{v.payout_id}").state for v in views} == {"posted"}
    totals = LedgerService(h.uow).totals()
    assert totals.cache_mismatches == ()
    assert totals.unbalanced_transfers == ()
    assert totals.external_chain == 6 * COIN


def test_payouts_wait_for_the_allowance_counting_unmined_ones_and_skip_what_does_not_fit(
    anvil: Anvil, fresh_db_url: str
) -> None:
    h = make_settlement(anvil, fresh_db_url, max_batch=1, params={"payout_limit": 5 * COIN})
    try:
        bob = h.creator()
        wallet = h.link(bob)
        _earn(h, bob, 20 * COIN)
        first, second, small = (h.withdrawal(bob, wallet, a) for a in (3 * COIN, 3 * COIN, COIN))
        for r in (first, second, small):
            h.withdrawals.request(r)
        # one step, nothing mined yet: 3 goes, the second 3 does not fit the 2 left, the 1 does
        report = h.withdrawals.step()
        assert report.submitted == 2
        states = {r.id: h.withdrawals.get(r.id).state for r in (first, second, small)}
        assert states == {first.id: "submitted", second.id: "requested", small.id: "submitted"}
        h.drive(_confirmed(h, first.id, small.id))
        assert {h.withdrawals.get(r.id).state for r in (first, small)} == {"confirmed"}
        view = h.withdrawals.get(second.id)
        assert (view.state, view.failure_reason) == ("requested", None)  # waiting, never failed
        h.advance(86_400)  # the rolling window refills
        h.drive(_confirmed(h, second.id))
        assert h.withdrawals.get(second.id).state == "confirmed"
        assert h.vault.balance_of(wallet.address) == 7 * COIN
        assert [t.state.value for t in h.txm.txs() if t.purpose == "payout"] == ["confirmed"] * 3
    finally:
        h.close()


def test_a_payout_reverted_by_the_allowance_is_queued_again_not_failed(anvil: Anvil, fresh_db_url: str) -> None:
    h = make_settlement(anvil, fresh_db_url, params={"payout_limit": 5 * COIN})
    try:
        bob = h.creator()
        wallet = h.link(bob)
        _earn(h, bob, 20 * COIN)
        req = h.withdrawal(bob, wallet, 3 * COIN)
        h.withdrawals.request(req)
        assert h.withdrawals.submit_batch()  # signed at 5 available, not yet sent
        h.vault.set_payout_limit(COIN, 86_400, account=h.admin)  # the window shrinks before it is mined
        for _ in range(6):
            h.txm.tick()
            h.withdrawals.handle_outcomes()
            h.mine()
        view = h.withdrawals.get(req.id)
        assert view.state == "requested"
        assert view.failure_reason is not None
        assert "CoinVaultPayoutAllowanceExceeded" in view.failure_reason
        assert h.services.accounts.get(bob).balances.held == 3 * COIN  # still reserved
        assert [t.state.value for t in h.txm.txs() if t.purpose == "payout"] == ["reverted"]
        assert not h.withdrawals.submit_batch()  # 1 available < 3: waits, no doomed tx
        h.vault.set_payout_limit(5 * COIN, 86_400, account=h.admin)
        h.advance(86_400)
        h.drive(_confirmed(h, req.id))
        assert h.withdrawals.get(req.id).state == "confirmed"
        assert h.vault.balance_of(wallet.address) == 3 * COIN
    finally:
        h.close()


def test_a_submitted_withdrawal_shows_its_payout_tx_hash(settle: Settlement) -> None:
    h = settle
    bob = h.creator()
    wallet = h.link(bob)
    _earn(h, bob, 10 * COIN)
    req = h.withdrawal(bob, wallet, 2 * COIN)
    h.withdrawals.request(req)
    assert h.withdrawals.get(req.id).tx_hash is None  # requested: nothing signed yet
    assert h.withdrawals.submit_batch()
    view = h.withdrawals.get(req.id)
    [payout] = [t for t in h.txm.txs() if t.purpose == "payout"]
    assert view.state == "submitted"
    assert view.tx_hash == payout.attempts[-1].tx_hash
    h.drive(_confirmed(h, req.id))
    assert h.withdrawals.get(req.id).tx_hash == view.tx_hash


def test_the_api_reads_of_the_vault_match_its_views(settle: Settlement) -> None:
    """`matured_and_paid` (one raw `creditOf` call, the API's credit snapshot) and `encode_payout`
    (eth-abi directly, the worker's batches) agree with the web3 contract views and encoder."""
    h = settle
    bob = h.creator()
    wallet = h.link(bob)
    key = h.key_of(bob)
    assert h.vault.matured_and_paid(key) == (0, 0)
    _earn(h, bob, 10 * COIN, mature=False)
    assert h.vault.matured_and_paid(key) == (h.vault.matured(key), h.vault.paid_out(key)) == (0, 0)
    h.advance(PAYOUT_DELAY + 1)
    req = h.withdrawal(bob, wallet, 3 * COIN)
    h.withdrawals.request(req)
    h.drive(_confirmed(h, req.id))
    assert h.vault.matured_and_paid(key) == (h.vault.matured(key), h.vault.paid_out(key)) == (8 * COIN, 3 * COIN)
    args = ([7, 8], [key, b"\x01" * 32], [wallet.address, Account.create().address.lower()], [COIN, 2])
    assert h.vault.encode_payout(*args) == h.vault.encode_call(
        "payout", args[0], args[1], [h.w3.to_checksum_address(a) for a in args[2]], args[3]
    )
