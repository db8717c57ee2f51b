"""The transaction manager against a real anvil and a real database (SQLite and PostgreSQL):
pipelining with gap-free nonces, atomic submit, restart without a second effect, reverts,
outcomes handled once."""

from __future__ import annotations

import pytest
from eth_account import Account
from sqlalchemy import select

from faults.txkit import Key, all_in, database, drive, manager, submit_transfers, web3_for
from tokenbridge.adapters.chain.devnet import Anvil
from tokenbridge.adapters.chain.txmanager import DuplicateTx, TxBackpressure
from tokenbridge.adapters.db.engine import session_factories
from tokenbridge.adapters.db.models_tx import ChainTx
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.domain.errors import Conflict, InvalidInput
from tokenbridge.domain.txstate import TxState

REVERTER = "0x60006000fd"  # runtime code: PUSH1 0 PUSH1 0 REVERT


def test_pipelined_txs_confirm_in_nonce_order_with_gap_free_nonces(anvil: Anvil, db_url: str) -> None:
    w3 = web3_for(anvil.rpc_url)
    key = Key(anvil)
    start = w3.eth.get_transaction_count(key.address)
    to = Account.create().address
    values = [1_000 + i for i in range(20)]
    with database(db_url) as (_, sessions):
        m = manager(sessions, w3, key.signer(), max_in_flight=20)
        m.recover()
        ids = submit_transfers(m, sessions, to, values, f"pipe-{key.address}")
        with pytest.raises(TxBackpressure), sessions() as s, s.begin():  # the 21st waits
            m.submit(s, purpose="test", ref=f"pipe-{key.address}:extra", to=to, data=b"", gas=21_000)

        first = m.tick()
        assert first.sent == 20  # all in flight at once, not one by one
        drive(m, anvil, all_in(m, ids, "confirmed"))

        views = m.txs(ids=ids)
        assert [v.nonce for v in views] == list(range(start, start + 20))
        assert [v.id for v in views] == ids  # nonces assigned in submit order
        blocks = [v.mined_block for v in views]
        assert all(b is not None for b in blocks)
        assert blocks == sorted(blocks)  # mined in nonce order
        for v in views:
            assert len(v.attempts) == 1
            assert v.mined_hash == v.attempts[0].tx_hash
            assert w3.eth.get_transaction(v.mined_hash)["nonce"] == v.nonce
        assert w3.eth.get_transaction_count(key.address) == start + 20
        assert w3.eth.get_balance(to) == sum(values)
        assert m.cursor() == start + 20

        with sessions() as s, s.begin():
            outcomes = [o for o in m.outcomes(s, "test") if o.tx_id in ids]
            assert {o.state for o in outcomes} == {TxState.CONFIRMED}
            assert len(outcomes) == 20
            for o in outcomes:
                m.mark_handled(s, o.tx_id)
        with sessions() as s, s.begin():
            assert not [o for o in m.outcomes(s, "test") if o.tx_id in ids]
            with pytest.raises(Conflict, match="already handled"):
                m.mark_handled(s, ids[0])


def test_submit_is_atomic_with_the_callers_transaction(anvil: Anvil, db_url: str) -> None:
    w3 = web3_for(anvil.rpc_url)
    key = Key(anvil)
    start = w3.eth.get_transaction_count(key.address)
    to = Account.create().address
    with database(db_url) as (_, sessions):
        m = manager(sessions, w3, key.signer())
        m.recover()
        ref = f"atomic-{key.address}"
        with sessions() as s:
            s.begin()
            m.submit(s, purpose="test", ref=ref, to=to, data=b"", gas=21_000, value=5)
            s.rollback()  # the caller's effect failed: the tx must vanish with it
        assert m.tick().sent == 0
        assert m.cursor() == start
        [tx_id] = submit_transfers(m, sessions, to, [7], ref)
        assert m.txs(ids=[tx_id])[0].nonce == start  # the rolled-back nonce is reused, no gap
        with pytest.raises(DuplicateTx), sessions() as s, s.begin():
            m.submit(s, purpose="test", ref=f"{ref}:0", to=to, data=b"", gas=21_000)
        with pytest.raises(InvalidInput, match="gas"), sessions() as s, s.begin():
            # below the calldata's intrinsic gas: every node would refuse it and block the nonce
            m.submit(s, purpose="test", ref=f"{ref}:low-gas", to=to, data=b"\x01" * 64, gas=21_000)
        assert m.cursor() == start + 1
        drive(m, anvil, all_in(m, [tx_id], "confirmed"))
        assert w3.eth.get_balance(to) == 7


def test_restart_resumes_from_the_database_without_a_second_effect(anvil: Anvil, db_url: str) -> None:
    w3 = web3_for(anvil.rpc_url)
    key = Key(anvil)
    start = w3.eth.get_transaction_count(key.address)
    to = Account.create().address
    with database(db_url) as (_, sessions):
        first = manager(sessions, w3, key.signer(), lease_holder="before-crash", lease_ttl_s=0.001)
        first.recover()
        early = submit_transfers(first, sessions, to, [100, 200], f"restart-a-{key.address}")
        assert first.tick().sent == 2  # these reached the node (automine: mined, not yet confirmed)
        late = submit_transfers(first, sessions, to, [300], f"restart-b-{key.address}")  # signed, never sent
        assert first.txs(ids=late)[0].state is TxState.SIGNED
        del first  # crash: no release, no further ticks

    with database(db_url) as (_, sessions):  # a new process: new engine, new manager
        second = manager(sessions, w3, key.signer(), lease_holder="after-crash")
        report = second.recover()
        assert report.leader
        ids = early + late
        drive(second, anvil, all_in(second, ids, "confirmed"))
        views = second.txs(ids=ids)
        assert [v.nonce for v in views] == [start, start + 1, start + 2]
        assert all(len(v.attempts) == 1 for v in views)  # nothing re-signed
        assert w3.eth.get_balance(to) == 600  # each effect exactly once
        assert w3.eth.get_transaction_count(key.address) == start + 3
        [more] = submit_transfers(second, sessions, to, [1], f"restart-c-{key.address}")
        assert second.txs(ids=[more])[0].nonce == start + 3


def test_a_reverted_call_is_final_and_reported(anvil: Anvil, db_url: str) -> None:
    w3 = web3_for(anvil.rpc_url)
    key = Key(anvil)
    target = Account.create().address
    anvil.rpc("anvil_setCode", target, REVERTER)
    with database(db_url) as (_, sessions):
        m = manager(sessions, w3, key.signer())
        m.recover()
        with sessions() as s, s.begin():
            tx_id = m.submit(s, purpose="revert-test", ref=f"r-{key.address}", to=target, data=b"\x01", gas=60_000)
        drive(m, anvil, all_in(m, [tx_id], "reverted", "confirmed"))
        [view] = m.txs(ids=[tx_id])
        assert view.state is TxState.REVERTED
        assert view.receipt_status == 0
        with sessions() as s, s.begin():
            [outcome] = [o for o in m.outcomes(s, "revert-test") if o.tx_id == tx_id]
            assert outcome.state is TxState.REVERTED
            assert outcome.tx_hash == view.attempts[0].tx_hash
            state = s.execute(select(ChainTx.state).where(ChainTx.id == tx_id)).scalar_one()
            assert state == "reverted"


def test_works_with_the_unit_of_work_factory_and_a_first_submit_before_recover(anvil: Anvil, db_url: str) -> None:
    w3 = web3_for(anvil.rpc_url)
    key = Key(anvil)
    start = w3.eth.get_transaction_count(key.address)
    to = Account.create().address
    with database(db_url) as (engine, _):
        uows = UnitOfWorkFactory(*session_factories(engine))
        m = manager(uows, w3, key.signer())
        with uows.write() as uow:  # the signer row does not exist yet: submit creates it
            tx_id = m.submit(
                uow.session, purpose="test", ref=f"uow-{key.address}", to=to, data=b"", gas=21_000, value=4
            )
            uow.commit()
        assert m.cursor() == start + 1
        drive(m, anvil, all_in(m, [tx_id], "confirmed"))
        with uows.write() as uow:
            [outcome] = [o for o in m.outcomes(uow.session, "test") if o.tx_id == tx_id]
            m.mark_handled(uow.session, outcome.tx_id)
            uow.commit()
        assert m.txs(ids=[tx_id])[0].handled
        assert w3.eth.get_balance(to) == 4


def test_a_fenced_manager_whose_lease_expired_cannot_submit(anvil: Anvil, db_url: str) -> None:
    from faults.txkit import FakeClock
    from tokenbridge.adapters.chain.txmanager import LeaseNotHeld

    w3 = web3_for(anvil.rpc_url)
    key = Key(anvil)
    to = Account.create().address
    clock = FakeClock()
    with database(db_url) as (_, sessions):
        a = manager(sessions, w3, key.signer(), lease_holder="a", lease_ttl_s=10, clock=clock, fence=True)
        b = manager(sessions, w3, key.signer(), lease_holder="b", lease_ttl_s=10, clock=clock, fence=True)
        assert a.recover().leader
        [ok] = submit_transfers(a, sessions, to, [1], f"fence-a-{key.address}")
        with pytest.raises(LeaseNotHeld):  # b is not the holder: its work is refused
            submit_transfers(b, sessions, to, [2], f"fence-b-{key.address}")
        clock.advance(11)  # a pauses past its lease
        with pytest.raises(LeaseNotHeld, match="not held by a"):
            submit_transfers(a, sessions, to, [3], f"fence-a-late-{key.address}")
        assert b.tick().leader  # b takes over
        with pytest.raises(LeaseNotHeld):
            submit_transfers(a, sessions, to, [4], f"fence-a-stale-{key.address}")
        [later] = submit_transfers(b, sessions, to, [5], f"fence-b-ok-{key.address}")
        drive(b, anvil, all_in(b, [ok, later], "confirmed"))
        assert w3.eth.get_balance(to) == 6  # only the live holder's work was written
        assert [v.ref for v in b.txs(ids=[ok, later])] == [f"fence-a-{key.address}:0", f"fence-b-ok-{key.address}:0"]


def test_the_worker_stops_at_start_up_when_a_step_cannot_be_built(
    anvil: Anvil, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wiring error (TypeError/AttributeError/ImportError) ends the start-up; it never silently
    drops the epochs or withdrawals step. Transient errors are still retried."""
    import tokenbridge.adapters.chain.vault as vault_module
    import tokenbridge.services.withdrawals as withdrawals_module
    from tokenbridge.adapters.chain.txmanager import GWEI
    from tokenbridge.config import load_settings
    from tokenbridge.entrypoints.worker import StartupError, Worker, WorkerMetrics, _chain_steps, _Parts

    w3 = web3_for(anvil.rpc_url)
    key = Key(anvil)
    settings = load_settings(
        database_url=db_url,
        chain_id=31337,
        tx_reprice_after_seconds=7,
        tx_fee_bump_pct=15,
        tx_max_fee_gwei=3,
        tx_max_in_flight=4,
        settlement_max_attempts=9,
    )
    monkeypatch.setattr(vault_module, "VaultClient", lambda *_args: object())
    with database(db_url) as (engine, _):
        uows = UnitOfWorkFactory(*session_factories(engine))

        def broken(*_args: object, **_kwargs: object) -> object:
            raise TypeError("EpochService.__init__() got an unexpected keyword argument 'policy'")

        monkeypatch.setattr(withdrawals_module, "build_settlement", broken)
        args = (settings, uows, w3, key.signer(), "h", key.address, 0, WorkerMetrics(), _Parts())
        with pytest.raises(StartupError, match="unexpected keyword"):
            _chain_steps(*args)

        built: dict[str, object] = {}

        def fake_build(settings: object, uow: object, txm: object, vault: object) -> object:
            built["txm"] = txm
            from types import SimpleNamespace

            return SimpleNamespace(
                epochs=SimpleNamespace(step=lambda: "e"), withdrawals=SimpleNamespace(step=lambda: "w")
            )

        monkeypatch.setattr(withdrawals_module, "build_settlement", fake_build)
        steps = _chain_steps(*args)
        assert {"txmanager", "epochs", "withdrawals", "deposits"} <= set(steps)
        txm = built["txm"]
        assert (txm.reprice_after.total_seconds(), txm.fee_bump_pct, txm.max_in_flight) == (7, 15, 4)  # type: ignore[attr-defined]
        assert txm.max_fee_per_gas == 3 * GWEI  # type: ignore[attr-defined]
        assert txm.fence  # type: ignore[attr-defined]

    class FakeLease:
        holder = "w"
        released = False

        def acquire(self) -> bool:
            return True

        def release(self) -> None:
            FakeLease.released = True

    calls: list[str] = []

    def connect_fatal() -> None:
        calls.append("connect")
        raise StartupError("cannot build the settlement steps: TypeError: boom")

    worker = Worker(lease=FakeLease(), steps=[], connect=connect_fatal, poll_s=0.001)
    with pytest.raises(StartupError):
        worker.run()
    assert calls == ["connect"]  # not retried
    assert FakeLease.released

    flaky: list[str] = []

    def connect_flaky() -> None:
        flaky.append("connect")
        if len(flaky) == 1:
            raise OSError("connection refused")  # a node hiccup: retried
        worker2.stop()

    worker2 = Worker(lease=FakeLease(), steps=[], connect=connect_flaky, poll_s=0.001, max_backoff_s=0.01)
    assert worker2.run() == 0
    assert flaky == ["connect", "connect"]


def test_settlement_settings_reach_the_services(db_url: str) -> None:
    from tokenbridge.config import load_settings
    from tokenbridge.services.withdrawals import build_settlement

    settings = load_settings(database_url=db_url, settlement_max_attempts=7)

    class Vault:
        address = "0x" + "11" * 20

    built = build_settlement(settings, object(), object(), Vault())  # type: ignore[arg-type]
    assert (built.epochs.max_attempts, built.withdrawals.max_attempts) == (7, 7)
