"""Epochs against a real anvil and a real database (SQLite; PostgreSQL when configured): close,
settle, receipts that verify through the vault, chunked epochs, the rounding adjustment
(ledger == vault), mint and burn batches, the liabilities commitment with `solvent()`, a
chunk that reverts because it is already on-chain, and a rate change before settlement."""

# ruff: noqa: F811  (pytest fixtures imported from support_settlement)
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import select

from support_settlement import (  # noqa: F401  (fixtures)
    BPS,
    COIN,
    Settlement,
    fresh_db_url,
    make_settlement,
    settle,
)
from tokenbridge.adapters.chain.devnet import Anvil
from tokenbridge.adapters.chain.vault import BRIDGE_ROLE
from tokenbridge.adapters.db.models import OutboxItem
from tokenbridge.adapters.db.models_settlement import ChainBatch
from tokenbridge.domain.epoch import settle_gas
from tokenbridge.domain.keys import id_hash
from tokenbridge.domain.merkle import RechargeLeaf, recharge_tree
from tokenbridge.services.epochs import PLATFORM_KEY
from tokenbridge.services.ledger import LedgerService


def _verify_receipt(h: Settlement, doc: dict[str, Any]) -> bool:
    g = doc["gift"]
    return h.vault.verify_gift(
        doc["epoch_id"],
        bytes.fromhex(g["gift_id_hash"][2:]),
        bytes.fromhex(g["from_key"][2:]),
        bytes.fromhex(g["creator_key"][2:]),
        int(g["gross"]),
        int(g["creator_amount"]),
        int(g["platform_amount"]),
        [bytes.fromhex(p[2:]) for p in doc["proof"]],
    )


def _ledger_clean(h: Settlement) -> None:
    totals = LedgerService(h.uow).totals()
    assert totals.unbalanced_transfers == ()
    assert totals.negative_accounts == ()
    assert totals.cache_mismatches == ()


def test_close_settle_and_receipts_verify_through_the_vault(settle: Settlement) -> None:
    h = settle
    alice, bob, carol = h.user(100 * COIN), h.creator(), h.creator()
    gifts = [h.gift(alice, bob, 3 * COIN + i) for i in range(3)] + [h.gift(alice, carol, 7 * COIN)]
    assert h.epochs.reason_to_close() is None  # young epoch, few gifts, same rate
    epoch_id = h.settle_all()

    epoch = h.epochs.get(epoch_id)
    assert epoch.state == "settled"
    assert epoch.gift_count == 4
    assert epoch.gross_total == 16 * COIN + 3
    assert epoch.bps == BPS
    assert epoch.settle_tx_hash is not None
    assert epoch.settled_block is not None
    onchain = h.vault.epoch(epoch_id)
    assert "0x" + onchain.gift_root.hex() == epoch.root
    assert (onchain.gift_count, onchain.gross_total, onchain.bps) == (4, 16 * COIN + 3, BPS)
    for gift_id in gifts:
        receipt = h.services.gifts.get(gift_id)
        assert (receipt.status, receipt.epoch_id) == ("settled", epoch_id)
        doc = h.epochs.gift_proof(gift_id)
        assert doc["format"] == "tokenbridge-gift-receipt/v1"
        assert doc["gift"]["gift_id_hash"] == "0x" + id_hash(gift_id).hex()
        assert _verify_receipt(h, doc)
    tampered = h.epochs.gift_proof(gifts[0])
    tampered["gift"]["gross"] = str(int(tampered["gift"]["gross"]) + 1)
    assert not _verify_receipt(h, tampered)
    for creator in (bob, carol):
        assert h.earnings(creator) == h.vault.earned(h.key_of(creator))
    # the next gift opens a new epoch; nothing closes without gifts
    assert h.epochs.close() is None
    h.gift(alice, bob, COIN)
    assert h.epochs.close() == epoch_id + 1
    _ledger_clean(h)


def test_an_epoch_with_more_creators_than_a_chunk_settles_in_order(anvil: Anvil, fresh_db_url: str) -> None:
    h = make_settlement(anvil, fresh_db_url, chunk_size=2)
    try:
        alice = h.user(1_000 * COIN)
        creators = [h.creator() for _ in range(5)]
        for i, c in enumerate(creators):
            h.gift(alice, c, (i + 1) * COIN + 1)
        epoch_id = h.settle_all()
        epoch = h.epochs.get(epoch_id)
        assert epoch.chunk_count == 3
        assert [c.creators for c in epoch.chunks] == [2, 2, 1]
        assert all(c.state == "confirmed" and c.tx_hash for c in epoch.chunks)
        blocks = [c.block for c in epoch.chunks]
        assert blocks == sorted(blocks)  # chunk order on-chain = nonce order
        assert h.vault.epoch(epoch_id).chunks_settled == 3
        assert h.vault.epoch(epoch_id).settled_gross == epoch.gross_total
        for c in creators:
            assert h.earnings(c) == h.vault.earned(h.key_of(c))
        for chunk in epoch.chunks:  # each settle tx used less gas than the formula sized it for
            receipt = h.w3.eth.get_transaction_receipt(chunk.tx_hash)  # type: ignore[arg-type]
            assert receipt["gasUsed"] <= settle_gas(chunk.creators)
    finally:
        h.close()


def test_rounding_adjustment_makes_ledger_earnings_equal_the_vault(settle: Settlement) -> None:
    h = settle
    alice, bob = h.user(100 * COIN), h.creator()
    # at 80 %: per-gift floors 0 + 0 + 0 + 1 = 1, the vault credits floor(5 * 0.8) = 4
    for amount in (1, 1, 1, 2):
        h.gift(alice, bob, amount)
    revenue_before = LedgerService(h.uow).totals().platform_revenue
    assert h.earnings(bob) == 1
    epoch_id = h.settle_all()
    epoch = h.epochs.get(epoch_id)
    assert epoch.rounding_total == 3
    assert h.vault.earned(h.key_of(bob)) == 4
    assert h.earnings(bob) == 4
    assert LedgerService(h.uow).totals().platform_revenue == revenue_before - 3
    assert h.vault.platform_earned() == 1  # 5 - 4, the chain's own split
    _ledger_clean(h)


def test_recharges_are_minted_in_one_batch_with_a_real_recharge_root(settle: Settlement) -> None:
    h = settle
    users = [h.user() for _ in range(3)]
    payments = [h.recharge(u, (i + 1) * 10 * COIN) for i, u in enumerate(users)]
    h.gift(users[0], h.creator(), COIN)
    h.settle_all()
    assert h.vault.reserve() == 60 * COIN
    with h.uow.read() as uow:
        batches = uow.session.scalars(select(ChainBatch).where(ChainBatch.kind == "mint")).all()
        states = set(uow.session.scalars(select(OutboxItem.state).where(OutboxItem.kind == "mint")).all())
    assert len(batches) == 1
    batch = batches[0]
    assert (batch.state, batch.count, batch.amount) == ("confirmed", 3, 60 * COIN)
    assert states == {"done"}
    assert h.vault.is_minted(batch.onchain_id)
    expected = recharge_tree(
        RechargeLeaf.of(p, h.key_of(u), (i + 1) * 10 * COIN)
        for i, (p, u) in enumerate(zip(payments, users, strict=True))
    )
    [event] = h.vault.events("RechargesMinted", 0)
    assert event["args"]["batchId"] == batch.onchain_id
    assert bytes(event["args"]["rechargeRoot"]) == expected.root
    # a second round gets a new, unique batch id
    h.recharge(users[1], 5 * COIN)
    h.gift(users[0], h.creator(), COIN)
    h.settle_all()
    with h.uow.read() as uow:
        ids = sorted(uow.session.scalars(select(ChainBatch.onchain_id).where(ChainBatch.kind == "mint")).all())
    assert len(ids) == 2
    assert ids[0] != ids[1]
    assert all(h.vault.is_minted(i) for i in ids)
    assert h.vault.reserve() == 65 * COIN


def test_refunds_are_burned_with_unique_ids(settle: Settlement) -> None:
    h = settle
    alice = h.user()
    pay = h.recharge(alice, 50 * COIN)
    h.gift(alice, h.creator(), COIN)
    h.settle_all()
    assert h.vault.reserve() == 50 * COIN
    h.refund(alice, 20 * COIN, pay)
    h.gift(alice, h.creator(), COIN)
    h.settle_all()
    with h.uow.read() as uow:
        [burn] = uow.session.scalars(select(ChainBatch).where(ChainBatch.kind == "burn")).all()
    assert (burn.state, burn.amount) == ("confirmed", 20 * COIN)
    assert h.vault.is_burned(burn.onchain_id)
    assert h.vault.reserve() == 30 * COIN
    assert h.vault.solvent()


def test_liabilities_commitment_matches_the_ledger_and_the_vault_is_solvent(settle: Settlement) -> None:
    h = settle
    alice, bob = h.user(40 * COIN), h.creator()
    h.gift(alice, bob, 10 * COIN + 7)
    epoch_id = h.settle_all()
    epoch = h.epochs.get(epoch_id)
    totals = LedgerService(h.uow).totals()
    assert epoch.liabilities_total == totals.liabilities == 40 * COIN
    committed = h.vault.latest_liabilities()
    assert committed.epoch_id == epoch_id
    assert committed.total == 40 * COIN
    assert "0x" + committed.root.hex() == epoch.liabilities_root
    assert h.vault.solvent()
    reserve = h.epochs.reserve()
    assert (reserve.reserve, reserve.liabilities_total, reserve.solvent) == (40 * COIN, 40 * COIN, True)
    for account in (alice, bob):  # every account can prove its balance against the chain
        doc = h.epochs.balance_proof(account)
        assert doc["format"] == "tokenbridge-balance-proof/v1"
        assert h.vault.verify_liability(
            epoch_id,
            bytes.fromhex(doc["account"]["account_key"][2:]),
            int(doc["balance"]),
            int(doc["index"]),
            [bytes.fromhex(x[2:]) for x in doc["sibling_hashes"]],
            [int(x) for x in doc["sibling_sums"]],
        )
    assert int(h.epochs.balance_proof(bob)["balance"]) == h.earnings(bob)
    assert int(h.epochs.balance_proof(alice)["balance"]) == 30 * COIN - 7
    lying = h.epochs.balance_proof(alice)
    assert not h.vault.verify_liability(
        epoch_id,
        bytes.fromhex(lying["account"]["account_key"][2:]),
        int(lying["balance"]) - 1,
        int(lying["index"]),
        [bytes.fromhex(x[2:]) for x in lying["sibling_hashes"]],
        [int(x) for x in lying["sibling_sums"]],
    )
    with h.uow.read() as uow:
        balances = h.epochs.balances(uow)
    assert balances["0x" + PLATFORM_KEY.hex()][1] == totals.platform_revenue


def test_a_reverted_chunk_that_is_already_on_chain_counts_as_settled(settle: Settlement) -> None:
    h = settle
    alice, bob = h.user(10 * COIN), h.creator()
    h.gift(alice, bob, 3 * COIN)
    epoch_id = h.epochs.close()
    assert epoch_id is not None
    h.epochs.submit_closed()  # signed, not yet broadcast
    # another bridge process got there first with the same chunk
    other = Account.create()
    h.anvil.rpc("anvil_setBalance", other.address, hex(10**20))
    h.vault.grant_role(BRIDGE_ROLE, other.address, account=h.admin)
    epoch = h.epochs.get(epoch_id)
    assert epoch.root is not None
    h.vault.settle_gifts(
        epoch_id, 0, bytes.fromhex(epoch.root[2:]), 1, 3 * COIN, [h.key_of(bob)], [3 * COIN], account=other
    )
    h.drive(lambda: h.epochs.get(epoch_id).state == "settled")
    [chunk] = h.epochs.get(epoch_id).chunks
    assert chunk.state == "confirmed"
    assert chunk.tx_hash is not None
    assert h.w3.eth.get_transaction_receipt(chunk.tx_hash)["status"] == 0  # type: ignore[arg-type]  # ours reverted
    assert h.vault.earned(h.key_of(bob)) == h.earnings(bob)  # credited once


def test_a_rate_change_closes_the_epoch_and_gifts_settle_at_the_enforced_rate(settle: Settlement) -> None:
    h = settle
    alice, bob = h.user(100 * COIN), h.creator()
    old = h.gift(alice, bob, 10 * COIN + 3)
    assert h.services.gifts.get(old).creator_bps == BPS
    h.vault.propose_creator_bps(7_000, account=h.admin)
    assert h.epochs.reason_to_close() is None  # proposed: applicable only in a day, beyond the lead time
    h.advance(h.vault.split_delay() + 1)
    h.vault.apply_creator_bps(account=h.admin)
    assert "7000" in (h.epochs.reason_to_close() or "")
    new = h.gift(alice, bob, 2 * COIN)
    assert h.services.gifts.get(new).creator_bps == 7_000
    epoch_id = h.settle_all()
    assert h.vault.epoch(epoch_id).bps == 7_000
    resplit = h.services.gifts.get(old)
    assert (resplit.creator_bps, resplit.creator_amount) == (7_000, (10 * COIN + 3) * 7_000 // 10_000)
    for gift_id in (old, new):
        assert _verify_receipt(h, h.epochs.gift_proof(gift_id))
    assert h.earnings(bob) == h.vault.earned(h.key_of(bob)) == (12 * COIN + 3) * 7_000 // 10_000
    _ledger_clean(h)


def test_public_epoch_listing_pages_newest_first(settle: Settlement) -> None:
    h = settle
    alice, bob = h.user(10 * COIN), h.creator()
    ids = []
    for _ in range(3):
        h.gift(alice, bob, COIN)
        ids.append(h.epochs.close())
    first = h.epochs.list(limit=2)
    assert [e.id for e in first.items] == [ids[2], ids[1]]
    assert first.next_cursor is not None
    second = h.epochs.list(limit=2, cursor=first.next_cursor)
    assert [e.id for e in second.items] == [ids[0]]
    assert second.next_cursor is None


def test_recharges_without_gifts_are_minted_once_the_outbox_is_old_enough(anvil: Anvil, fresh_db_url: str) -> None:
    from tokenbridge.domain.epoch import EpochPolicy

    h = make_settlement(anvil, fresh_db_url, policy=EpochPolicy(max_age_s=0.001))
    try:
        alice = h.user(7 * COIN)
        assert h.epochs.reason_to_close() is None  # no gifts: no epoch
        h.drive(lambda: h.vault.reserve() == 7 * COIN)
        assert h.epochs.list().items == []  # minted without closing an epoch
        assert h.services.accounts.get(alice).balances.coins == 7 * COIN
    finally:
        h.close()


def test_build_settlement_wires_the_settings(settle: Settlement) -> None:
    from tokenbridge.config import load_settings
    from tokenbridge.services.withdrawals import build_settlement

    settings = load_settings(
        database_url=settle.url,
        epoch_max_age_seconds=42,
        epoch_max_gifts=7,
        withdrawal_min_amount=3,
        withdrawal_daily_cap=99,
        chain_rate_cache_seconds=1,
    )
    built = build_settlement(settings, settle.uow, settle.txm, settle.vault)
    assert (built.epochs.policy.max_age_s, built.epochs.policy.max_gifts) == (42, 7)
    assert (built.withdrawals.min_amount, built.withdrawals.daily_cap) == (3, 99)
    assert built.rate.creator_bps() == BPS
    assert built.epochs.vault_address == settle.vault.address


def test_two_epochs_settled_together_get_one_commitment_for_the_newer(settle: Settlement) -> None:
    h = settle
    alice, bob = h.user(10 * COIN), h.creator()
    h.gift(alice, bob, COIN)
    first = h.epochs.close()
    h.gift(alice, bob, 2 * COIN)
    second = h.epochs.close()
    assert first is not None
    assert second == first + 1
    h.drive(lambda: h.epochs.get(second).liabilities_state == "committed")
    assert h.epochs.get(first).state == "settled"
    assert h.epochs.get(first).liabilities_state == "skipped"
    assert h.vault.latest_liabilities().epoch_id == second
    assert h.vault.liabilities(first).committed_at == 0
    assert h.vault.solvent()


def test_deposits_waiting_in_suspense_are_committed_as_a_liability(settle: Settlement) -> None:
    """Tokens deposited for a key no user holds are still owed: the commitment counts them."""
    from tokenbridge.domain import ledger as lg
    from tokenbridge.services.deposits import SUSPENSE
    from tokenbridge.services.epochs import SUSPENSE_KEY

    h = settle
    alice, bob = h.user(10 * COIN), h.creator()
    h.gift(alice, bob, COIN)
    with h.uow.write() as uow:
        posting = lg.Posting.of("deposit", lg.debit(lg.EXTERNAL_CHAIN, 3 * COIN), lg.credit(SUSPENSE, 3 * COIN))
        uow.ledger.apply(posting, "deposit:0xfeed:0", lg.request_hash({"t": "suspense"}), {}, datetime.now(UTC))
        uow.commit()
    with h.uow.read() as uow:
        balances = h.epochs.balances(uow)
    assert balances["0x" + SUSPENSE_KEY.hex()] == (SUSPENSE, 3 * COIN)
    assert sum(balance for _, balance in balances.values()) == 13 * COIN


def test_an_epoch_with_more_chunks_than_the_tx_manager_takes_settles_over_several_steps(
    anvil: Anvil, fresh_db_url: str
) -> None:
    h = make_settlement(anvil, fresh_db_url, chunk_size=1, max_in_flight=2)
    try:
        alice = h.user(100 * COIN)
        creators = [h.creator() for _ in range(5)]
        for c in creators:
            h.gift(alice, c, COIN)
        epoch_id = h.epochs.close()
        assert epoch_id is not None
        report = h.epochs.step()  # room for 2: chunks 0 and 1 go, 2..4 wait
        assert report.waiting is not None
        assert "in flight" in report.waiting
        epoch = h.epochs.get(epoch_id)
        assert epoch.state == "submitted"
        assert [c.state for c in epoch.chunks] == ["submitted"] * 2 + ["pending"] * 3
        h.drive(lambda: h.epochs.get(epoch_id).liabilities_state == "committed", rounds=40)
        epoch = h.epochs.get(epoch_id)
        assert epoch.state == "settled"
        assert all(c.state == "confirmed" for c in epoch.chunks)
        blocks = [c.block for c in epoch.chunks]
        assert blocks == sorted(blocks)
        assert h.vault.epoch(epoch_id).chunks_settled == 5
        for c in creators:
            assert h.earnings(c) == h.vault.earned(h.key_of(c))
        assert h.vault.solvent()
    finally:
        h.close()


def _open_alarms(h: Settlement) -> list[Any]:
    from tokenbridge.adapters.db.models_deposits import DepositStore

    with h.uow.read() as uow:
        return list(DepositStore(uow.session).open_alarms())


def _clear_alarms(h: Settlement) -> None:
    from tokenbridge.adapters.db.models_deposits import DepositStore

    with h.uow.write() as uow:
        store = DepositStore(uow.session)
        for alarm in store.open_alarms():
            store.clear_alarm(alarm.id, datetime.now(UTC))
        uow.commit()


def test_recharges_not_yet_minted_are_left_out_of_the_commitment(anvil: Anvil, fresh_db_url: str) -> None:
    h = make_settlement(anvil, fresh_db_url, params={"mint_limit": 50 * COIN})
    try:
        alice, bob = h.user(40 * COIN), h.creator()
        h.gift(alice, bob, 10 * COIN)
        h.settle_all()  # mints 40 of the day's 50
        carol = h.user(30 * COIN)  # 40 + 30 > 50: this mint waits for the window
        h.gift(alice, bob, 5 * COIN)
        epoch_id = h.settle_all()
        epoch = h.epochs.get(epoch_id)
        assert epoch.liabilities_total == 40 * COIN  # carol's unminted 30 is not in the tree
        assert h.vault.reserve() == 40 * COIN
        assert h.vault.solvent()
        with h.uow.read() as uow:
            committed = h.vault.latest_liabilities()
            assert committed.total == 40 * COIN
            assert uow.session.scalars(select(OutboxItem.state).where(OutboxItem.account_id == carol)).all() == [
                "pending"
            ]
        doc = h.epochs.balance_proof(carol)
        assert int(doc["balance"]) == 0  # her coins are owed, but not backed on-chain yet
        assert _open_alarms(h) == []
        # the window refills, the mint goes, the next commitment counts her coins
        h.advance(86_400)
        h.gift(alice, bob, COIN)
        later = h.settle_all()
        assert h.epochs.get(later).liabilities_total == 70 * COIN
        assert h.vault.reserve() == 70 * COIN
        assert h.vault.solvent()
    finally:
        h.close()


def test_a_commitment_above_the_reserve_waits_with_an_alarm(anvil: Anvil, fresh_db_url: str) -> None:
    h = make_settlement(anvil, fresh_db_url, params={"mint_limit": 50 * COIN})
    try:
        alice, bob = h.user(40 * COIN), h.creator()
        h.gift(alice, bob, 10 * COIN)
        h.settle_all()
        carol = h.user(30 * COIN)  # not mintable today
        h.gift(carol, bob, 5 * COIN)  # ...and partly spent: 5 of it now sits in bob's earnings
        epoch_id = h.epochs.close()
        assert epoch_id is not None
        h.drive(lambda: h.epochs.get(epoch_id).state == "settled")
        for _ in range(3):
            h.txm.tick()
            h.epochs.step()
            h.mine()
        epoch = h.epochs.get(epoch_id)
        assert epoch.liabilities_state == "none"  # 45 owed, 40 held: never committed
        assert h.vault.latest_liabilities().epoch_id != epoch_id
        assert [(a.kind, a.scope) for a in _open_alarms(h)] == [("liabilities_unbacked", "liabilities")]
        h.advance(86_400)  # the mint can go: the commitment follows and the alarm closes itself
        h.drive(lambda: h.epochs.get(epoch_id).liabilities_state == "committed")
        assert h.epochs.get(epoch_id).liabilities_total == 70 * COIN
        assert h.vault.solvent()
        assert _open_alarms(h) == []
    finally:
        h.close()


def test_an_outbox_larger_than_one_batch_is_minted_in_several_before_the_commitment(
    anvil: Anvil, fresh_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tokenbridge.services.epochs as epochs_module

    monkeypatch.setattr(epochs_module, "MAX_OUTBOX_BATCH", 2)
    h = make_settlement(anvil, fresh_db_url)
    try:
        users = [h.user((i + 1) * COIN) for i in range(5)]
        h.gift(users[4], h.creator(), COIN)
        epoch_id = h.settle_all()
        with h.uow.read() as uow:
            counts = sorted(uow.session.scalars(select(ChainBatch.count).where(ChainBatch.kind == "mint")).all())
        assert counts == [1, 2, 2]
        assert h.epochs.get(epoch_id).liabilities_total == 15 * COIN
        assert h.vault.reserve() == 15 * COIN
        assert h.vault.solvent()
    finally:
        h.close()


def test_a_chunk_that_keeps_reverting_stops_with_an_alarm_and_resumes_when_cleared(
    anvil: Anvil, fresh_db_url: str
) -> None:
    h = make_settlement(anvil, fresh_db_url, max_attempts=2)
    try:
        alice, bob = h.user(10 * COIN), h.creator()
        h.gift(alice, bob, 3 * COIN)
        bridge = h.vault.account.address
        h.vault.revoke_role(BRIDGE_ROLE, bridge, account=h.admin)  # every bridge call now reverts
        epoch_id = h.epochs.close()
        assert epoch_id is not None
        h.drive(lambda: h.epochs.get(epoch_id).chunks[0].state == "stuck", rounds=30)
        settles = [t for t in h.txm.txs() if t.purpose == "settle"]
        assert [t.state.value for t in settles] == ["reverted", "reverted"]  # max_attempts, then it stops
        [alarm] = _open_alarms(h)
        assert (alarm.kind, alarm.scope) == ("settle_stuck", f"epoch:{epoch_id}")
        assert "AccessControlUnauthorizedAccount" in alarm.detail
        assert h.epochs.stuck()["settle"] == [f"epoch:{epoch_id}:chunk:0"]
        for _ in range(3):  # nothing more is sent while the alarm is open
            h.txm.tick()
            h.epochs.step()
            h.mine()
        assert len([t for t in h.txm.txs() if t.purpose == "settle"]) == 2
        from tokenbridge.services.status import StatusService

        assert not StatusService(h.uow).report().ok  # `tokenbridge status` shows it
        # the operator fixes the cause and clears the alarm: the chunk is sent again
        h.vault.grant_role(BRIDGE_ROLE, bridge, account=h.admin)
        _clear_alarms(h)
        h.drive(lambda: h.epochs.get(epoch_id).liabilities_state == "committed")
        assert h.epochs.get(epoch_id).state == "settled"
        assert h.vault.earned(h.key_of(bob)) == h.earnings(bob)
    finally:
        h.close()


def test_a_mint_batch_that_keeps_reverting_stops_with_an_alarm(anvil: Anvil, fresh_db_url: str) -> None:
    from tokenbridge.domain.epoch import EpochPolicy

    h = make_settlement(anvil, fresh_db_url, max_attempts=2, policy=EpochPolicy(max_age_s=0.001))
    try:
        alice = h.user(7 * COIN)
        h.vault.revoke_role(BRIDGE_ROLE, h.vault.account.address, account=h.admin)
        h.drive(lambda: h.epochs.stuck()["outbox"] != [], rounds=30)
        with h.uow.read() as uow:
            states = uow.session.scalars(select(ChainBatch.state).where(ChainBatch.kind == "mint")).all()
        assert list(states) == ["failed", "failed"]
        assert [(a.kind, a.scope) for a in _open_alarms(h)] == [("mint_stuck", "outbox:mint")]
        h.vault.grant_role(BRIDGE_ROLE, h.vault.account.address, account=h.admin)
        _clear_alarms(h)
        h.drive(lambda: h.vault.reserve() == 7 * COIN)
        assert h.services.accounts.get(alice).balances.coins == 7 * COIN
    finally:
        h.close()
