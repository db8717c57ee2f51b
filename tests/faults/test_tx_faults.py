"""The transaction manager under faults, against a real anvil and a real database:

* a stuck low-fee tx is re-priced with the same nonce and the replacement is mined;
* the node accepts a tx but the RPC reply is lost (OpenZeppelin relayer #818/#843 style):
  no re-signing under a new nonce, the stored bytes are sent again, one effect;
* another process spends the bridge key's nonces: `superseded`, and the cursor follows;
* two managers share a key: only the lease holder sends; expiry hands over after a crash.
"""

from __future__ import annotations

import pytest
from eth_account import Account
from sqlalchemy import update

from faults.txkit import FakeClock, Key, RpcProxy, all_in, database, drive, manager, submit_transfers, web3_for
from tokenbridge.adapters.chain.devnet import Anvil
from tokenbridge.adapters.db.models_tx import ChainTxAttempt
from tokenbridge.domain.txstate import TxState, is_final

GWEI = 10**9


def test_stuck_low_fee_tx_is_replaced_with_the_same_nonce(tx_node: Anvil, db_url: str) -> None:
    w3 = web3_for(tx_node.rpc_url)
    key = Key(tx_node)
    start = w3.eth.get_transaction_count(key.address)
    to = Account.create().address
    clock = FakeClock()
    with database(db_url) as (_, sessions):
        m = manager(
            sessions, w3, key.signer(), clock=clock, reprice_after_s=30, fee_bump_pct=12, max_fee_per_gas=10**14
        )
        m.recover()
        tx_node.rpc("evm_setAutomine", False)
        [tx_id] = submit_transfers(m, sessions, to, [42], f"stuck-{key.address}")
        assert m.tick().sent == 1
        first = m.txs(ids=[tx_id])[0].attempts[0]
        # the market moves far above our cap: the next blocks cannot include the tx
        tx_node.rpc("anvil_setNextBlockBaseFeePerGas", hex(first.max_fee_per_gas * 20))
        tx_node.rpc("evm_mine")
        clock.advance(10)
        report = m.tick()
        assert report.repriced == 0  # not yet due
        assert w3.eth.get_transaction_count(key.address) == start  # still stuck
        clock.advance(25)
        report = m.tick()
        assert report.repriced == 1
        tx_node.rpc("evm_mine")
        drive(m, tx_node, all_in(m, [tx_id], "confirmed"))

        [view] = m.txs(ids=[tx_id])
        assert len(view.attempts) == 2
        old, new = view.attempts
        assert new.max_fee_per_gas * 100 >= old.max_fee_per_gas * 112
        assert new.max_priority_fee_per_gas * 100 >= old.max_priority_fee_per_gas * 112
        assert new.max_fee_per_gas > first.max_fee_per_gas * 20  # followed the market
        assert view.mined_hash == new.tx_hash  # the replacement was mined...
        mined = w3.eth.get_transaction(new.tx_hash)
        assert mined["nonce"] == view.nonce == start  # ...with the same nonce
        assert w3.eth.get_transaction_count(key.address) == start + 1
        assert w3.eth.get_balance(to) == 42  # one effect


def test_tx_priced_out_before_its_first_send_is_repriced(tx_node: Anvil, db_url: str) -> None:
    w3 = web3_for(tx_node.rpc_url)
    key = Key(tx_node)
    clock = FakeClock()
    with database(db_url) as (_, sessions):
        m = manager(sessions, w3, key.signer(), clock=clock, max_fee_per_gas=10**14)
        m.recover()
        tx_node.rpc("evm_setAutomine", False)
        [tx_id] = submit_transfers(m, sessions, Account.create().address, [3], f"priced-out-{key.address}")
        signed_fee = m.txs(ids=[tx_id])[0].attempts[0].max_fee_per_gas
        tx_node.rpc("anvil_setNextBlockBaseFeePerGas", hex(signed_fee * 10))
        tx_node.rpc("evm_mine")
        report = m.tick()
        assert report.sent == 0  # the node refuses it: max fee below the base fee
        assert report.errors
        clock.advance(31)
        report = m.tick()
        assert report.repriced == 1
        assert report.sent == 1
        tx_node.rpc("evm_mine")
        drive(m, tx_node, all_in(m, [tx_id], "confirmed"))
        [view] = m.txs(ids=[tx_id])
        assert view.mined_hash == view.attempts[-1].tx_hash
        assert view.attempts[-1].max_fee_per_gas > signed_fee * 10


def test_replacement_respects_the_max_fee_cap(tx_node: Anvil, db_url: str) -> None:
    w3 = web3_for(tx_node.rpc_url)
    key = Key(tx_node)
    clock = FakeClock()
    with database(db_url) as (_, sessions):
        base = int(w3.eth.get_block("latest")["baseFeePerGas"])
        cap = 2 * base + GWEI + 1  # room for the first price, not for a +12% bump
        m = manager(sessions, w3, key.signer(), clock=clock, max_fee_per_gas=cap)
        m.recover()
        tx_node.rpc("evm_setAutomine", False)
        [tx_id] = submit_transfers(m, sessions, Account.create().address, [1], f"cap-{key.address}")
        m.tick()
        clock.advance(60)
        assert m.tick().repriced == 0
        [view] = m.txs(ids=[tx_id])
        assert len(view.attempts) == 1
        assert view.last_error is not None
        assert "cap" in view.last_error
        tx_node.rpc("evm_setAutomine", True)
        tx_node.rpc("evm_mine")
        drive(m, tx_node, all_in(m, [tx_id], "confirmed"))


@pytest.mark.parametrize("automine", [False, True], ids=["pending", "mined-at-once"])
def test_lost_reply_after_the_node_accepted_never_resigns_and_ends_confirmed_once(
    tx_node: Anvil, db_url: str, automine: bool
) -> None:
    direct = web3_for(tx_node.rpc_url)
    proxy = RpcProxy(tx_node.rpc_url)
    key = Key(tx_node)
    start = direct.eth.get_transaction_count(key.address)
    to = Account.create().address
    try:
        with database(db_url) as (_, sessions):
            m = manager(sessions, web3_for(proxy.url), key.signer())
            m.recover()
            tx_node.rpc("evm_setAutomine", automine)
            [tx_id] = submit_transfers(m, sessions, to, [77], f"lost-{key.address}-{automine}")
            stored = m.txs(ids=[tx_id])[0].attempts[0]
            proxy.lose_reply["eth_sendRawTransaction"] = 1

            report = m.tick()
            assert report.sent == 0
            assert report.errors  # the manager saw a failure...
            assert tx_node.rpc("eth_getTransactionByHash", stored.tx_hash) is not None  # ...but the node has it
            assert m.txs(ids=[tx_id])[0].state is TxState.SIGNED

            if not automine:
                report = m.tick()  # same bytes again: "already imported" counts as sent
                assert report.sent == 1
                assert m.txs(ids=[tx_id])[0].state is TxState.BROADCAST
            drive(m, tx_node, all_in(m, [tx_id], "confirmed"))

            [view] = m.txs(ids=[tx_id])
            assert len(view.attempts) == 1  # never re-signed
            assert view.mined_hash == stored.tx_hash
            assert set(proxy.sent_raw()) == {"0x" + stored.raw.hex()}  # only the exact stored bytes
            if automine:
                assert len(proxy.sent_raw()) == 1  # mined at once: found by its receipt, not re-sent
            else:
                assert len(proxy.sent_raw()) >= 2  # re-sent (as stored) while it was pending
            assert direct.eth.get_transaction_count(key.address) == start + 1  # no nonce burned
            assert direct.eth.get_balance(to) == 77  # exactly one effect
            [nxt] = submit_transfers(m, sessions, to, [1], f"lost-next-{key.address}-{automine}")
            assert m.txs(ids=[nxt])[0].nonce == start + 1
    finally:
        proxy.close()


def test_nonce_spent_by_another_process_is_superseded_and_nonces_stay_correct(tx_node: Anvil, db_url: str) -> None:
    w3 = web3_for(tx_node.rpc_url)
    key = Key(tx_node)
    start = w3.eth.get_transaction_count(key.address)
    to = Account.create().address
    stranger = Account.create().address
    with database(db_url) as (_, sessions):
        m = manager(sessions, w3, key.signer())
        m.recover()
        [ours] = submit_transfers(m, sessions, to, [10], f"sup-a-{key.address}")
        assert m.txs(ids=[ours])[0].nonce == start
        key.send_direct(w3, nonce=start, to=stranger)  # another process, same key, same nonce
        [after] = submit_transfers(m, sessions, to, [20], f"sup-b-{key.address}")
        drive(m, tx_node, lambda: is_final(m.txs(ids=[ours])[0].state) and all_in(m, [after], "confirmed")())

        sup, ok = m.txs(ids=[ours, after])
        assert sup.state is TxState.SUPERSEDED
        assert sup.mined_hash is None
        assert ok.nonce == start + 1
        with sessions() as s, s.begin():
            [outcome] = [o for o in m.outcomes(s, "test") if o.tx_id == ours]
            assert outcome.state is TxState.SUPERSEDED
            # the caller re-submits the work under a fresh ref, then marks the old outcome handled
            redo = m.submit(s, purpose="test", ref=f"sup-a-{key.address}:redo", to=to, data=b"", gas=21_000, value=10)
            m.mark_handled(s, ours)

        # the other process strikes again, this time on nonces the manager has not used yet
        key.send_direct(w3, nonce=start + 3, to=stranger)
        key.send_direct(w3, nonce=start + 4, to=stranger)
        reports = drive(m, tx_node, all_in(m, [redo], "confirmed"))
        assert m.txs(ids=[redo])[0].nonce == start + 2
        assert start + 5 in [r.cursor_raised_to for r in reports]  # mined proof moved the cursor up
        assert m.cursor() == start + 5
        [last] = submit_transfers(m, sessions, to, [30], f"sup-c-{key.address}")
        assert m.txs(ids=[last])[0].nonce == start + 5
        drive(m, tx_node, all_in(m, [last], "confirmed"))
        assert w3.eth.get_balance(to) == 10 + 20 + 30  # the superseded work happened once, via the redo
        assert w3.eth.get_transaction_count(key.address) == start + 6


def test_reorg_before_confirmation_sends_the_same_bytes_again(tx_node: Anvil, db_url: str) -> None:
    w3 = web3_for(tx_node.rpc_url)
    key = Key(tx_node)
    start = w3.eth.get_transaction_count(key.address)
    to = Account.create().address
    with database(db_url) as (_, sessions):
        m = manager(sessions, w3, key.signer(), confirmations=3)
        m.recover()
        snapshot = tx_node.rpc("evm_snapshot")
        [tx_id] = submit_transfers(m, sessions, to, [9], f"reorg-{key.address}")
        m.tick()
        assert m.tick().mined == 1
        [before] = m.txs(ids=[tx_id])
        assert before.state is TxState.MINED
        tx_node.rpc("evm_revert", snapshot)  # the block holding it is gone (a reorg, on a devnet)
        assert w3.eth.get_transaction_count(key.address) == start
        report = m.tick()
        assert report.reorged == 1
        assert m.txs(ids=[tx_id])[0].state is TxState.BROADCAST
        drive(m, tx_node, all_in(m, [tx_id], "confirmed"))
        [after] = m.txs(ids=[tx_id])
        assert len(after.attempts) == 1
        assert after.mined_hash == before.mined_hash  # the very same signed tx, mined again
        assert w3.eth.get_balance(to) == 9
        assert w3.eth.get_transaction_count(key.address) == start + 1


def test_operator_cancel_fills_a_blocked_nonce_and_the_queue_drains(tx_node: Anvil, db_url: str) -> None:
    w3 = web3_for(tx_node.rpc_url)
    key = Key(tx_node)
    tx_node.rpc("anvil_setBalance", key.address, hex(10**18))
    start = w3.eth.get_transaction_count(key.address)
    to = Account.create().address
    with database(db_url) as (_, sessions):
        m = manager(sessions, w3, key.signer(), clock=FakeClock())
        m.recover()
        # the first tx can never be paid for (value = whole balance, plus gas): the node refuses it
        blocked, *later = submit_transfers(m, sessions, to, [10**18, 1, 1], f"cancel-{key.address}")
        for _ in range(2):
            assert m.tick().errors
            tx_node.rpc("evm_mine")
        assert w3.eth.get_transaction_count(key.address) == start  # everything waits behind the hole
        assert all_in(m, later, "broadcast")()

        assert m.cancel(blocked)
        assert not m.cancel(blocked)  # already cancelled
        drive(m, tx_node, lambda: all_in(m, [blocked], "superseded")() and all_in(m, later, "confirmed")())

        views = m.txs(ids=[blocked, *later])
        cancel = views[0].attempts[-1]
        assert cancel.kind == "cancel"
        assert views[0].last_error is not None
        assert "cancelled" in views[0].last_error
        mined_cancel = w3.eth.get_transaction(cancel.tx_hash)
        assert mined_cancel["nonce"] == start
        assert mined_cancel["to"] == key.address
        assert mined_cancel["value"] == 0
        assert [v.nonce for v in views] == [start, start + 1, start + 2]
        assert w3.eth.get_transaction_count(key.address) == start + 3  # no gap, no nonce reused
        assert w3.eth.get_balance(to) == 2
        assert not m.cancel(later[0])  # final txs cannot be cancelled


def test_stored_bytes_refused_for_good_are_cancelled_automatically(tx_node: Anvil, db_url: str) -> None:
    w3 = web3_for(tx_node.rpc_url)
    key = Key(tx_node)
    start = w3.eth.get_transaction_count(key.address)
    to = Account.create().address
    with database(db_url) as (_, sessions):
        m = manager(sessions, w3, key.signer())
        m.recover()
        bad, good = submit_transfers(m, sessions, to, [5, 6], f"refused-{key.address}")
        # corrupt the stored bytes of the first tx: same nonce, signed for another chain
        wrong = key.account.sign_transaction(
            {"type": 2, "chainId": 1, "nonce": start, "to": to, "value": 5, "gas": 21_000,
             "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9}
        )  # fmt: skip
        with sessions() as s, s.begin():
            s.execute(
                update(ChainTxAttempt)
                .where(ChainTxAttempt.tx_id == bad)
                .values(raw=bytes(wrong.raw_transaction), tx_hash="0x" + bytes(wrong.hash).hex())
            )
        report = m.tick()
        assert report.cancelled == 1
        drive(m, tx_node, lambda: all_in(m, [bad], "superseded")() and all_in(m, [good], "confirmed")())
        bad_view, good_view = m.txs(ids=[bad, good])
        assert [a.kind for a in bad_view.attempts] == ["call", "cancel"]
        assert good_view.nonce == start + 1
        assert w3.eth.get_balance(to) == 6
        assert w3.eth.get_transaction_count(key.address) == start + 2


def test_only_the_lease_holder_sends_and_expiry_hands_over(tx_node: Anvil, db_url: str) -> None:
    key = Key(tx_node)
    w3 = web3_for(tx_node.rpc_url)
    start = w3.eth.get_transaction_count(key.address)
    to = Account.create().address
    clock = FakeClock()
    proxy_a, proxy_b = RpcProxy(tx_node.rpc_url), RpcProxy(tx_node.rpc_url)
    try:
        with database(db_url) as (_, sessions):
            common = {"clock": clock, "lease_ttl_s": 10}
            a = manager(sessions, web3_for(proxy_a.url), key.signer(), lease_holder="a", **common)
            b = manager(sessions, web3_for(proxy_b.url), key.signer(), lease_holder="b", **common)
            assert a.recover().leader
            assert not b.recover().leader

            first = submit_transfers(b, sessions, to, [1, 2, 3], f"lease-b-{key.address}")  # b may queue work
            assert not b.tick().leader
            assert proxy_b.sent_raw() == []  # ...but never sends while a leads
            drive(a, tx_node, all_in(a, first, "confirmed"))
            assert len(proxy_a.sent_raw()) == 3

            second = submit_transfers(a, sessions, to, [4, 5], f"lease-a-{key.address}")
            # a crashes here: it never ticks (nor renews) again
            clock.advance(5)
            assert not b.tick().leader
            assert proxy_b.sent_raw() == []
            clock.advance(6)  # a's lease is over
            drive(b, tx_node, all_in(b, second, "confirmed"))
            assert len(proxy_b.sent_raw()) >= 2
            assert b.lease.info().holder == "b"
            assert not a.tick().leader  # a coming back finds b in charge

            views = b.txs(ids=first + second)
            assert [v.nonce for v in views] == list(range(start, start + 5))
            assert all(len(v.attempts) == 1 for v in views)
            assert w3.eth.get_balance(to) == 15
    finally:
        proxy_a.close()
        proxy_b.close()
