"""`tokenbridge reconcile`: clean after a consistent run (recharge, mint, deposits, settled
creator credits, each in flight and done), and every drift reported when the chain and the
ledger disagree (a mint nobody recorded, a creator credited on-chain only)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from support_bridge import WALLETS, Bed, bridge_uow, deploy_bed, deposit_service
from support_ledger import LedgerHarness, fresh_database
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil, start_anvil
from tokenbridge.adapters.db.models import OutboxItem
from tokenbridge.adapters.db.models_settlement import ChainBatch, ChainBatchItem, Epoch, EpochCredit
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.config import load_settings
from tokenbridge.entrypoints.cli import app
from tokenbridge.entrypoints.worker import build_worker
from tokenbridge.services.reconcile import ReconcileReport, ReconcileService
from tokenbridge.services.status import StatusService
from tokenbridge.services.views import PostGift

pytestmark = pytest.mark.chain

RECHARGE = 50_000_000
DEPOSIT = 4_000_000


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    with start_anvil() as anvil:
        yield anvil


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of its own: reconcile totals the whole ledger, so no other test may share it."""
    with fresh_database(request.param, tmp_path_factory.mktemp("reconcile"), "tbrec") as url:
        yield url


@pytest.fixture
def ledger(fresh_db: str) -> Iterator[LedgerHarness]:
    harness = LedgerHarness(fresh_db)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def uow(fresh_db: str) -> Iterator[UnitOfWorkFactory]:
    with bridge_uow(fresh_db) as factory:
        yield factory


@pytest.fixture
def bed(node: Anvil) -> Bed:
    b = deploy_bed(node)
    b.fund(WALLETS[2], 10 * DEPOSIT)  # mint + pay out the same amount: the reserve is back to 0
    assert b.vault.reserve() == 0
    return b


def check(uow: UnitOfWorkFactory, bed: Bed) -> ReconcileReport:
    return ReconcileService(uow, bed.vault).run()


def record_mint(uow: UnitOfWorkFactory, bed: Bed, account_id: str, state: str) -> int:
    """Do what the epochs step does for a pending mint: one batch on-chain, recorded with its outbox row."""
    with uow.write() as u:
        item = u.session.scalars(
            select(OutboxItem).where(OutboxItem.kind == "mint", OutboxItem.account_id == account_id)
        ).one()
        batch_id = bed.next_id()
        bed.vault.mint_for_recharges(batch_id, item.amount, os.urandom(32), 1)
        now = datetime.now(UTC)
        batch = ChainBatch(
            kind="mint", onchain_id=batch_id, amount=item.amount, count=1, state=state, created_at=now, updated_at=now
        )
        u.session.add(batch)
        u.session.flush()
        u.session.add(ChainBatchItem(outbox_id=item.id, batch_id=batch.id))
        u.commit()
        return item.amount


def record_settled_credit(uow: UnitOfWorkFactory, bed: Bed, creator_id: str, key: str, amount: int) -> None:
    """An epoch whose one chunk credits `creator_id`, recorded in the ledger and settled on-chain."""
    epoch_id = bed.next_id()
    with uow.write() as u:
        u.session.add(Epoch(id=epoch_id, state="submitted", bps=10_000, gift_count=1, gross_total=amount))
        u.session.flush()
        u.session.add(
            EpochCredit(
                epoch_id=epoch_id,
                creator_key=key,
                creator_id=creator_id,
                chunk_index=0,
                gross=amount,
                ledger_credit=amount,
                chain_credit=amount,
                adjustment=0,
            )
        )
        u.commit()
    bed.vault.settle_gifts(epoch_id, 0, os.urandom(32), 1, amount, [bytes.fromhex(key[2:])], [amount])


def test_clean_after_a_consistent_run(
    bed: Bed, uow: UnitOfWorkFactory, ledger: LedgerHarness, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, creator = ledger.uid("u"), ledger.uid("c")
    user_view, _ = ledger.services.accounts.open(user, "user")
    creator_view, _ = ledger.services.accounts.open(creator, "creator")
    ledger.recharge(user, RECHARGE)

    report = check(uow, bed)  # the mint is queued, not executed: explained
    assert report.ok, report.differences
    assert report.in_flight["mints_not_executed"] == RECHARGE
    assert report.reserve == 0

    record_mint(uow, bed, user, state="submitted")  # mined, not yet confirmed: the vault is asked
    report = check(uow, bed)
    assert report.ok, report.differences
    assert report.in_flight["mints_not_executed"] == 0
    assert report.reserve == RECHARGE

    deposits = deposit_service(uow, bed, confirmations=6)
    bed.deposit(WALLETS[2], user_view.account_key, DEPOSIT)
    bed.deposit(WALLETS[2], "0x" + "cd" * 32, 1_234)  # nobody's key: suspense
    assert deposits.step().seen == 2
    report = check(uow, bed)
    assert report.ok, report.differences
    assert report.in_flight["deposits_seen_not_credited"] == DEPOSIT + 1_234
    bed.mine(6)
    assert deposits.step().credited == 2
    ledger.services.gifts.post(PostGift(ledger.uid("g"), user, creator, 1_000_000))  # coins -> earnings
    record_settled_credit(uow, bed, creator, creator_view.account_key, 700_000)

    report = check(uow, bed)
    assert report.ok, report.differences
    assert report.reserve == report.expected_reserve == RECHARGE + DEPOSIT + 1_234
    assert report.liabilities["suspense"] == 1_234
    assert report.in_flight["deposits_seen_not_credited"] == 0
    assert report.creators_checked == 1
    solvency = StatusService(uow, chain=bed.vault).report().solvency
    assert (solvency.reserve, solvency.liabilities) == (report.reserve, sum(report.liabilities.values()))

    monkeypatch.setenv("TOKENBRIDGE_DATABASE_URL", fresh_db)
    monkeypatch.setenv("TOKENBRIDGE_RPC_URL", bed.anvil.rpc_url)
    monkeypatch.setenv("TOKENBRIDGE_VAULT_ADDRESS", bed.deployment.vault)
    result = CliRunner().invoke(app, ["reconcile", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True


def test_drift_is_detected_and_every_difference_reported(
    bed: Bed, uow: UnitOfWorkFactory, ledger: LedgerHarness, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, honest, stranger = ledger.uid("u"), ledger.uid("c"), ledger.uid("c")
    ledger.services.accounts.open(user, "user")
    ledger.services.accounts.open(honest, "creator")
    stranger_view, _ = ledger.services.accounts.open(stranger, "creator")
    ledger.recharge(user, RECHARGE)
    record_mint(uow, bed, user, state="confirmed")
    assert check(uow, bed).ok

    bed.vault.mint_for_recharges(bed.next_id(), 777, os.urandom(32), 1)  # a mint nobody recorded
    key = bytes.fromhex(stranger_view.account_key[2:])
    bed.vault.settle_gifts(bed.next_id(), 0, os.urandom(32), 1, 300, [key], [300])  # credited on-chain only

    report = check(uow, bed)
    assert not report.ok
    found = {(d.check, d.subject): (d.expected, d.actual, d.delta) for d in report.differences}
    assert found == {
        ("reserve", bed.deployment.vault): (RECHARGE, RECHARGE + 777, 777),
        ("creator.earned", stranger): (0, 300, 300),
    }

    monkeypatch.setenv("TOKENBRIDGE_DATABASE_URL", fresh_db)
    monkeypatch.setenv("TOKENBRIDGE_RPC_URL", bed.anvil.rpc_url)
    monkeypatch.setenv("TOKENBRIDGE_VAULT_ADDRESS", bed.deployment.vault)
    result = CliRunner().invoke(app, ["reconcile"])
    assert result.exit_code == 1, result.output
    drift_lines = [line for line in result.stdout.splitlines() if line.startswith("DRIFT")]
    assert len(drift_lines) == 2
    assert any("reserve" in line and "+777" in line for line in drift_lines)
    assert any(f"creator.earned {stranger}" in line and "+300" in line for line in drift_lines)
    as_json = CliRunner().invoke(app, ["reconcile", "--json"])
    assert as_json.exit_code == 1
    assert {d["check"] for d in json.loads(as_json.stdout)["differences"]} == {"reserve", "creator.earned"}


def test_worker_round_trip_reconciles_clean(bed: Bed, uow: UnitOfWorkFactory, fresh_db: str, tmp_path: Path) -> None:
    """The real worker loop (tx manager, epochs, withdrawals, deposits) in a thread: recharge, gift,
    deposit; once it has minted, settled and credited, the ledger and the chain agree."""
    ledger = LedgerHarness(fresh_db, creator_bps=10_000)  # the vault's rate: gifts are not re-split
    try:
        user, creator = ledger.uid("u"), ledger.uid("c")
        user_view, _ = ledger.services.accounts.open(user, "user")
        creator_view, _ = ledger.services.accounts.open(creator, "creator")
        ledger.recharge(user, RECHARGE)
        ledger.services.gifts.post(PostGift(ledger.uid("g"), user, creator, 4_000_000))
        bed.deposit(WALLETS[2], user_view.account_key, DEPOSIT)
        settings = load_settings(
            database_url=fresh_db,
            rpc_url=bed.anvil.rpc_url,
            vault_address=bed.deployment.vault,
            deposit_start_block=bed.deployment.deploy_block,
            deployments_dir=tmp_path,
            bridge_private_key=DEV_PRIVATE_KEYS[2],
            confirmations=1,
            worker_poll_seconds=0.05,
            worker_fold_seconds=0.2,
            epoch_max_age_seconds=0.2,
        )
        worker = build_worker(settings)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        key = bytes.fromhex(creator_view.account_key[2:])

        def settled() -> bool:
            bed.mine(1)  # confirmations need blocks on top; nothing else mines here
            status = StatusService(uow).report()
            return (
                bed.vault.earned(key) == 4_000_000
                and bed.vault.reserve() == RECHARGE + DEPOSIT
                and status.in_flight == 0
                and not status.indexers[0].unconfirmed_deposits
                and ledger.services.accounts.get(user).balances.coins == RECHARGE - 4_000_000 + DEPOSIT
            )

        try:
            deadline = time.monotonic() + 45
            while not settled():
                assert thread.is_alive()
                assert time.monotonic() < deadline, "the worker did not mint, settle and credit in time"
                time.sleep(0.05)
            status = StatusService(uow, chain=bed.vault).report()  # while the worker runs
            assert status.worker is not None
            assert status.worker.live
            (signer,) = status.worker.signers
            assert signer.bridge_role is True
            assert signer.heartbeat_age_s is not None
            assert signer.heartbeat_age_s < settings.worker_lease_ttl_seconds
            # the worker keeps going (a commitment may be signed right now): the fields must agree
            assert (status.oldest_in_flight is None) == (status.in_flight == 0)
            assert status.ok, status.problems
        finally:
            worker.stop()
            thread.join(timeout=30)
        assert not thread.is_alive()
        report = check(uow, bed)
        assert report.ok, report.differences
        assert report.creators_checked == 1
        assert report.in_flight == {
            "mints_not_executed": 0,
            "burns_not_executed": 0,
            "payouts_executed_not_posted": 0,
            "deposits_seen_not_credited": 0,
        }
    finally:
        ledger.close()
