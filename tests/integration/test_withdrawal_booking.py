"""Withdrawals booked set-based (`WithdrawalService._on_payout` -> `WithdrawalLedger`) and the
request path's credit snapshot, on SQLite and PostgreSQL, with a scripted vault and tx manager
(no chain: outcomes and `isPaidOut` answers are chosen by the test).

Covered: one payout tx whose withdrawals end differently (paid -> hold posted, not paid -> queued
again or failed with the hold voided), several withdrawals of one creator in one booking, booking
twice (no effect), a conflicting booking (refused, nothing written), the booked-payout marker the
API uses, a refusal re-checked against the chain, and the withdrawal batch-size setting."""

# ruff: noqa: F811  (the fixture imported from support_settlement)
from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import select

from support_ledger import LedgerHarness
from support_settlement import fresh_db_url, sign_typed  # noqa: F401  (fixture)
from tokenbridge.adapters.chain.txmanager import TxOutcome
from tokenbridge.adapters.chain.vault import Allowance
from tokenbridge.adapters.db.models import Hold, OutboxItem, Transfer
from tokenbridge.adapters.db.models_settlement import CreatorPayoutTotal
from tokenbridge.adapters.db.withdrawal_ledger import HoldFinish, WithdrawalLedger
from tokenbridge.config import load_settings
from tokenbridge.domain.errors import ChainError, ExceedsWithdrawable, IllegalTransition, SignatureExpired
from tokenbridge.domain.txstate import TxState
from tokenbridge.domain.withdrawal import MAX_PAYOUT_BATCH, WalletLinkMessage, WithdrawalMessage
from tokenbridge.services.ledger import LedgerService
from tokenbridge.services.views import PostGift
from tokenbridge.services.withdrawals import (
    ChainCreditCache,
    PayoutReport,
    RequestWithdrawal,
    WithdrawalService,
    build_settlement,
)

CHAIN_ID = 31337
VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@dataclass
class ScriptedVault:
    """The vault as the withdrawal service sees it; figures per creator key set by the test."""

    address: str = VAULT
    credits: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # key -> (matured, paid)
    paid_ids: set[int] = field(default_factory=set)
    reads: int = 0

    def encode_call(self, fn: str, *args: Any) -> str:
        return "0x" + fn.encode().hex() + "00" * 64

    def matured_and_paid(self, key: bytes) -> tuple[int, int]:
        self.reads += 1
        return self.credits.get(key, (0, 0))

    def matured(self, key: bytes) -> int:
        return self.credits.get(key, (0, 0))[0]

    def paid_out(self, key: bytes) -> int:
        return self.credits.get(key, (0, 0))[1]

    def is_paid_out(self, payout_id: int) -> bool:
        return payout_id in self.paid_ids

    def paused(self) -> bool:
        return False

    def payout_allowance(self) -> Allowance:
        return Allowance(10**15, 86_400, 10**15)


@dataclass
class ScriptedTxManager:
    """Hands out tx ids; outcomes are delivered by the test through `_on_payout`."""

    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    submitted: list[tuple[int, int]] = field(default_factory=list)  # (tx id, gas)

    def submit(self, session: Any, *, purpose: str, ref: str, to: str, data: bytes, gas: int) -> int:
        tx_id = next(self.ids)
        self.submitted.append((tx_id, gas))
        return tx_id

    def outcomes(self, session: Any, purpose: str) -> list[TxOutcome]:
        return []

    def mark_handled(self, session: Any, tx_id: int) -> None:
        pass


@dataclass
class Rig:
    h: LedgerHarness
    vault: ScriptedVault
    txm: ScriptedTxManager
    svc: WithdrawalService
    wallets: dict[str, Any] = field(default_factory=dict)

    def creator(self, earnings: int) -> str:
        """A creator with `earnings` (gross 10/7 of it at 70 %) and a linked wallet."""
        gross = earnings * 10 // 7
        alice, bob = self.h.user(gross), self.h.creator()
        self.h.services.gifts.post(PostGift(self.h.uid("g"), alice, bob, gross))
        wallet = Account.create()
        deadline = int(time.time()) + 600
        key = self.key_hex(bob)
        typed = WalletLinkMessage(bob, key, wallet.address, deadline).typed_data(CHAIN_ID, VAULT)
        self.svc.link_wallet(bob, wallet.address, deadline, sign_typed(wallet, typed))
        self.wallets[bob] = wallet
        return bob

    def key_hex(self, creator_id: str) -> str:
        return self.h.services.accounts.get(creator_id).account_key

    def key(self, creator_id: str) -> bytes:
        return bytes.fromhex(self.key_hex(creator_id)[2:])

    def request(self, creator_id: str, amount: int) -> str:
        wid, to, deadline = self.h.uid("w"), Account.create().address, int(time.time()) + 600
        typed = WithdrawalMessage(wid, self.key_hex(creator_id), to, amount, deadline).typed_data(CHAIN_ID, VAULT)
        sig = sign_typed(self.wallets[creator_id], typed)
        self.svc.request(RequestWithdrawal(wid, creator_id, to, amount, deadline, sig))
        return wid

    def outcome(self, tx_id: int, state: TxState) -> PayoutReport:
        report = PayoutReport()
        o = TxOutcome(tx_id, "payout", "payouts:x", state, 0, "0x" + "ab" * 32, 123, 21_000)
        with self.svc._uow.write() as uow:
            self.svc._on_payout(uow, o, report)
            uow.commit()
        return report

    def balances(self, creator_id: str) -> tuple[int, int]:
        b = self.h.services.accounts.get(creator_id).balances
        return b.earnings, b.held

    def posted_total(self, creator_id: str) -> int:
        assert self.h.services.uow is not None
        with self.h.services.uow.read() as uow:
            row = uow.session.get(CreatorPayoutTotal, creator_id)
            return 0 if row is None else row.posted

    def hold_states(self, *withdrawal_ids: str) -> list[str]:
        return [
            self._hold(f"withdrawal:{self.svc.get(w).payout_id}").state for w in withdrawal_ids
        ]  # fmt: skip

    def _hold(self, hold_id: str) -> Hold:
        assert self.h.services.uow is not None
        with self.h.services.uow.read() as uow:
            row = uow.session.get(Hold, hold_id)
            assert row is not None
            return row

    def outbox_state(self, withdrawal_id: str) -> str:
        assert self.h.services.uow is not None
        ref = f"withdrawal:{self.svc.get(withdrawal_id).payout_id}"
        with self.h.services.uow.read() as uow:
            return str(
                uow.session.execute(
                    select(OutboxItem.state).where(OutboxItem.kind == "payout", OutboxItem.ref_id == ref)
                ).scalar_one()
            )

    def audit(self) -> Any:
        assert self.h.services.uow is not None
        totals = LedgerService(self.h.services.uow).totals()
        assert totals.cache_mismatches == ()
        assert totals.unbalanced_transfers == ()
        return totals


@pytest.fixture
def rig(fresh_db_url: str) -> Iterator[Rig]:
    """A fresh database per test: the payout queue is global, so tests must not see each other's."""
    ledger = LedgerHarness(fresh_db_url)
    assert ledger.services.uow is not None
    vault, txm = ScriptedVault(), ScriptedTxManager()
    svc = WithdrawalService(
        ledger.services.uow, txm, vault, chain_id=CHAIN_ID, min_amount=1, daily_cap=10**12, max_attempts=3
    )
    try:
        yield Rig(ledger, vault, txm, svc)
    finally:
        ledger.close()


def test_one_payout_with_mixed_outcomes_is_booked_in_one_go(rig: Rig) -> None:
    bob, carol, dave = rig.creator(7_000), rig.creator(7_000), rig.creator(7_000)
    for c in (bob, carol, dave):
        rig.vault.credits[rig.key(c)] = (7_000, 0)
    chain_before = rig.audit().external_chain
    b1, b2, c1, d1 = rig.request(bob, 1_000), rig.request(bob, 2_000), rig.request(carol, 3_000), rig.request(dave, 500)
    assert rig.balances(bob) == (4_000, 3_000)
    assert rig.svc.submit_batch()
    [(tx_id, gas)] = rig.txm.submitted
    assert {rig.svc.get(w).state for w in (b1, b2, c1, d1)} == {"submitted"}
    assert {rig.outbox_state(w) for w in (b1, b2, c1, d1)} == {"submitted"}
    # the batch reverted, but b1 and c1 were paid (by an earlier send of the same ids)
    rig.vault.paid_ids |= {rig.svc.get(b1).payout_id, rig.svc.get(c1).payout_id}
    report = rig.outcome(tx_id, TxState.REVERTED)
    assert (report.confirmed, report.requeued, report.failed) == (2, 2, 0)
    views = {w: rig.svc.get(w) for w in (b1, b2, c1, d1)}
    assert {w: v.state for w, v in views.items()} == {
        b1: "confirmed",
        b2: "requested",
        c1: "confirmed",
        d1: "requested",
    }
    assert views[b1].finished_at is not None
    assert views[b1].failure_reason is None
    assert views[b2].failure_reason is not None
    assert "retrying alone" in views[b2].failure_reason
    assert rig.hold_states(b1, b2, c1, d1) == ["posted", "reserved", "posted", "reserved"]
    assert [rig.outbox_state(w) for w in (b1, b2, c1, d1)] == ["done", "submitted", "done", "submitted"]
    assert rig.balances(bob) == (4_000, 2_000)  # b1 left custody, b2 still held
    assert rig.balances(carol) == (4_000, 0)
    assert rig.balances(dave) == (6_500, 500)
    assert (rig.posted_total(bob), rig.posted_total(carol), rig.posted_total(dave)) == (1_000, 3_000, 0)
    assert rig.audit().external_chain - chain_before == 4_000

    # b2 and d1 are retried alone; b2 reverts again and fails for good (its hold voided), d1 is paid
    assert rig.svc.submit_batch()
    assert rig.svc.submit_batch()
    assert not rig.svc.submit_batch()
    (tx_b2, gas_b2), (tx_d1, _) = rig.txm.submitted[1:]
    assert gas_b2 < gas
    assert rig.outcome(tx_b2, TxState.REVERTED).failed == 1
    assert rig.outcome(tx_d1, TxState.CONFIRMED).confirmed == 1
    failed, paid = rig.svc.get(b2), rig.svc.get(d1)
    assert (failed.state, paid.state) == ("failed", "confirmed")
    assert failed.failure_reason is not None
    assert "reverted" in failed.failure_reason
    assert paid.tx_hash == "0x" + "ab" * 32
    assert rig.hold_states(b2, d1) == ["voided", "posted"]
    assert [rig.outbox_state(w) for w in (b2, d1)] == ["voided", "done"]
    assert rig.balances(bob) == (6_000, 0)  # the failed 2,000 came back
    assert rig.balances(dave) == (6_500, 0)
    assert (rig.posted_total(bob), rig.posted_total(dave)) == (1_000, 500)
    assert rig.audit().external_chain - chain_before == 4_500


def test_booking_is_once_only_and_a_conflicting_booking_changes_nothing(rig: Rig) -> None:
    bob = rig.creator(7_000)
    rig.vault.credits[rig.key(bob)] = (7_000, 0)
    ws = [rig.request(bob, 100 * (i + 1)) for i in range(5)]  # 1,500 in 5 withdrawals of one creator
    assert rig.svc.submit_batch()
    [(tx_id, _)] = rig.txm.submitted
    assert rig.outcome(tx_id, TxState.CONFIRMED).confirmed == 5
    assert {rig.svc.get(w).state for w in ws} == {"confirmed"}
    assert rig.balances(bob) == (5_500, 0)
    assert rig.posted_total(bob) == 1_500
    assert rig.outcome(tx_id, TxState.CONFIRMED).confirmed == 0  # nothing is submitted under it any more
    finishes = [
        HoldFinish(f"withdrawal:{rig.svc.get(w).payout_id}", bob, 100 * (i + 1), "posted") for i, w in enumerate(ws)
    ]
    uow_factory = rig.h.services.uow
    assert uow_factory is not None
    with uow_factory.write() as uow:
        assert WithdrawalLedger(uow.session).finish_holds(finishes, rig.svc._clock()) == 0
        uow.commit()
    voiding = [replace(finishes[0], to="voided"), *finishes[1:]]
    with uow_factory.write() as uow, pytest.raises(IllegalTransition):
        WithdrawalLedger(uow.session).finish_holds(voiding, rig.svc._clock())
    assert rig.balances(bob) == (5_500, 0)
    assert rig.posted_total(bob) == 1_500
    with uow_factory.read() as uow:
        caller_ids = set(
            uow.session.scalars(
                select(Transfer.caller_id).where(Transfer.caller_id.in_([f"hold:{f.hold_id}:posted" for f in finishes]))
            ).all()
        )
    assert caller_ids == {f"hold:{f.hold_id}:posted" for f in finishes}  # one posting per hold
    rig.audit()


def test_requests_use_the_snapshot_and_the_booked_payouts_since(rig: Rig) -> None:
    """No chain read while the snapshot is young; a payout booked after it counts as paid even
    though the snapshot says otherwise; a refusal on an old snapshot is checked against the chain."""
    bob = rig.creator(7_000)
    key = rig.key(bob)
    rig.vault.credits[key] = (3_000, 0)  # 3,000 matured on-chain of the 7,000 earned in the ledger
    rig.request(bob, 1_000)
    assert rig.vault.reads == 1  # the first request filled the snapshot
    w2 = rig.request(bob, 1_000)
    assert rig.vault.reads == 1  # the second used it
    assert rig.svc.submit_batch()
    [(tx_id, _)] = rig.txm.submitted
    rig.outcome(tx_id, TxState.CONFIRMED)
    rig.vault.credits[key] = (3_000, 2_000)  # the chain now shows them paid; the snapshot does not
    assert rig.svc.get(w2).state == "confirmed"
    assert rig.balances(bob) == (5_000, 0)
    assert rig.posted_total(bob) == 2_000
    # snapshot: matured 3,000, paid 0; booked since: 2,000 -> 1,000 left, not 3,000
    with pytest.raises(ExceedsWithdrawable):
        rig.request(bob, 1_001)
    assert rig.vault.reads == 2  # the refusal was re-checked against the chain (same answer)
    rig.request(bob, 1_000)
    assert rig.vault.reads == 2
    # more matures on-chain: a request above the snapshot's figure reads the chain and passes
    rig.vault.credits[key] = (6_000, 2_000)
    rig.request(bob, 2_500)
    assert rig.vault.reads == 3
    assert rig.balances(bob) == (1_500, 3_500)
    with pytest.raises(ExceedsWithdrawable):  # 6,000 - 2,000 - 3,500 = 500 left on-chain
        rig.request(bob, 501)
    rig.audit()


def test_a_request_above_the_folded_earnings_folds_first(rig: Rig) -> None:
    bob = rig.creator(7_000)  # the gift's credit is unfolded: the row's cache says 0
    rig.vault.credits[rig.key(bob)] = (7_000, 0)
    rig.request(bob, 7_000)  # exactly all of it
    assert rig.balances(bob) == (0, 7_000)
    with pytest.raises(ExceedsWithdrawable):
        rig.request(bob, 1)
    rig.audit()


def test_the_batch_size_setting_reaches_the_service() -> None:
    settings = load_settings(database_url="sqlite://", withdrawal_max_batch=7)
    built = build_settlement(settings, None, ScriptedTxManager(), ScriptedVault())  # type: ignore[arg-type]
    assert built.withdrawals.max_batch == 7
    capped = build_settlement(
        load_settings(database_url="sqlite://", withdrawal_max_batch=5_000),
        None,  # type: ignore[arg-type]
        ScriptedTxManager(),
        ScriptedVault(),
    )
    assert capped.withdrawals.max_batch == MAX_PAYOUT_BATCH  # never above what fits 2**24 gas
    assert isinstance(built.withdrawals.credits, ChainCreditCache)


def test_the_batch_size_setting_caps_a_payout(rig: Rig) -> None:
    assert rig.h.services.uow is not None
    svc = WithdrawalService(
        rig.h.services.uow, rig.txm, rig.vault, chain_id=CHAIN_ID, min_amount=1, daily_cap=10**12, max_batch=2
    )
    rig.svc = svc
    bob = rig.creator(7_000)
    rig.vault.credits[rig.key(bob)] = (7_000, 0)
    for _ in range(5):
        rig.request(bob, 100)
    report = svc.step()
    assert report.submitted == 5
    assert len(rig.txm.submitted) == 3  # 2 + 2 + 1


def _signed(rig: Rig, creator_id: str, amount: int) -> RequestWithdrawal:
    wid, to, deadline = rig.h.uid("w"), Account.create().address, int(time.time()) + 600
    typed = WithdrawalMessage(wid, rig.key_hex(creator_id), to, amount, deadline).typed_data(CHAIN_ID, VAULT)
    return RequestWithdrawal(wid, creator_id, to, amount, deadline, sign_typed(rig.wallets[creator_id], typed))


def _race(rig: Rig, requests: list[RequestWithdrawal]) -> tuple[int, list[str]]:
    """All requests at once from 8 threads; (accepted, names of the refusals)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(r: RequestWithdrawal) -> str:
        try:
            rig.svc.request(r)
        except Exception as exc:  # the refusal's type is the result
            return type(exc).__name__
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, requests))
    return results.count("ok"), sorted(r for r in results if r != "ok")


def test_concurrent_requests_of_one_creator_never_exceed_what_is_withdrawable(rig: Rig) -> None:
    bob = rig.creator(7_000)
    rig.vault.credits[rig.key(bob)] = (5_000, 0)  # the chain allows 5,000 of the ledger's 7,000
    accepted, refused = _race(rig, [_signed(rig, bob, 500) for _ in range(20)])
    assert accepted == 10
    assert set(refused) == {"ExceedsWithdrawable"}
    assert rig.balances(bob) == (2_000, 5_000)
    rig.audit()


def test_concurrent_requests_respect_the_daily_cap(rig: Rig) -> None:
    assert rig.h.services.uow is not None
    rig.svc = WithdrawalService(
        rig.h.services.uow, rig.txm, rig.vault, chain_id=CHAIN_ID, min_amount=1, daily_cap=3_000
    )
    bob = rig.creator(7_000)
    rig.vault.credits[rig.key(bob)] = (7_000, 0)
    accepted, refused = _race(rig, [_signed(rig, bob, 500) for _ in range(12)])
    assert accepted == 6
    assert set(refused) == {"WithdrawalCapExceeded"}
    assert rig.balances(bob) == (4_000, 3_000)
    rig.audit()


def test_the_same_request_sent_concurrently_is_placed_once(rig: Rig) -> None:
    bob = rig.creator(7_000)
    rig.vault.credits[rig.key(bob)] = (7_000, 0)
    same = _signed(rig, bob, 700)
    accepted, refused = _race(rig, [same] * 8)
    assert (accepted, refused) == (8, [])  # one created, seven replays of it
    assert rig.balances(bob) == (6_300, 700)
    rig.audit()


def _node_down(key: bytes) -> tuple[int, int]:
    raise ChainError("creditOf: node unreachable")


def _signed_at(rig: Rig, creator_id: str, amount: int, deadline: int) -> RequestWithdrawal:
    wid, to = rig.h.uid("w"), Account.create().address
    typed = WithdrawalMessage(wid, rig.key_hex(creator_id), to, amount, deadline).typed_data(CHAIN_ID, VAULT)
    return RequestWithdrawal(wid, creator_id, to, amount, deadline, sign_typed(rig.wallets[creator_id], typed))


def test_a_replay_is_answered_without_the_node(rig: Rig) -> None:
    bob = rig.creator(7_000)
    rig.vault.credits[rig.key(bob)] = (7_000, 0)
    cmd = _signed_at(rig, bob, 1_000, int(time.time()) + 600)
    first, created = rig.svc.request(cmd)
    assert created
    rig.svc.credits.invalidate()  # the snapshot expired ...
    rig.svc.credits._read = _node_down  # ... and the node is unreachable
    again, created = rig.svc.request(cmd)
    assert (again.id, again.payout_id, created) == (first.id, first.payout_id, False)


def test_a_client_mistake_is_refused_without_the_node(rig: Rig) -> None:
    bob = rig.creator(7_000)
    rig.svc.credits._read = _node_down
    with pytest.raises(SignatureExpired):
        rig.svc.request(_signed_at(rig, bob, 1_000, int(time.time()) - 10))
    with pytest.raises(ChainError):  # the amount check itself does need the chain: a clear 502
        rig.svc.request(_signed_at(rig, bob, 1_000, int(time.time()) + 600))
