"""burnForRefunds (unique ids, burns from the reserve, bounded by the payout allowance) and the
reserve / liabilities / solvency views."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.contracts.conftest import Chain

pytestmark = pytest.mark.chain


def test_burn_reduces_reserve_and_supply(chain: Chain) -> None:
    vault = chain.vault
    chain.fund_vault(1_000_000)
    result = vault.burn_for_refunds(5, 400_000)
    assert vault.reserve() == 600_000
    assert vault.total_supply() == 600_000
    assert vault.is_burned(5)
    assert not vault.is_burned(6)
    (event,) = vault.events("RefundsBurned", result.block_number, result.block_number)
    assert dict(event["args"]) == {"burnId": 5, "amount": 400_000}


def test_replayed_burn_id_reverts(chain: Chain) -> None:
    vault = chain.vault
    chain.fund_vault(1_000_000)
    vault.burn_for_refunds(5, 1)
    assert chain.reverts("CoinVaultBurnAlreadyExecuted", vault.burn_for_refunds, 5, 1) == (5,)
    assert vault.reserve() == 999_999


def test_burn_zero_or_beyond_reserve_reverts(chain: Chain) -> None:
    vault = chain.vault
    chain.fund_vault(100)
    chain.reverts("CoinVaultZeroAmount", vault.burn_for_refunds, 1, 0)
    args = chain.reverts("ERC20InsufficientBalance", vault.burn_for_refunds, 1, 101)
    assert args == (vault.address.lower(), 100, 101)
    assert not vault.is_burned(1)


def test_burns_consume_the_payout_allowance(chain: Chain) -> None:
    vault = chain.vault
    vault.set_payout_limit(1_000, 2**24 - 1, account=chain.actors.admin)  # refills ~1 unit per 4.6 h
    chain.fund_vault(10_000)
    vault.burn_for_refunds(1, 900)
    assert chain.reverts("CoinVaultPayoutAllowanceExceeded", vault.burn_for_refunds, 2, 101) == (100, 101)
    assert vault.payout_allowance().available == 100


# ------------------------------------------------------------------ liabilities and solvency


def test_no_commitment_means_not_solvent(chain: Chain) -> None:
    vault = chain.vault
    chain.fund_vault(1_000)
    assert vault.latest_liabilities().committed_at == 0
    assert not vault.solvent()


def test_solvent_compares_reserve_with_latest_commitment(chain: Chain) -> None:
    vault = chain.vault
    chain.fund_vault(1_000)
    root = os.urandom(32)
    result = vault.commit_liabilities(1, root, 1_000)
    latest = vault.latest_liabilities()
    assert (latest.epoch_id, latest.root, latest.total) == (1, root, 1_000)
    assert latest.committed_at == int(chain.w3.eth.get_block(result.block_number)["timestamp"])
    (event,) = vault.events("LiabilitiesCommitted", result.block_number, result.block_number)
    assert dict(event["args"]) == {"epochId": 1, "root": root, "total": 1_000}
    assert vault.solvent()
    vault.burn_for_refunds(1, 1)
    assert vault.reserve() == 999
    assert not vault.solvent()
    vault.commit_liabilities(2, os.urandom(32), 999)
    assert vault.solvent()
    assert vault.liabilities(1).total == 1_000  # history is kept
    assert vault.liabilities(2).total == 999


def test_liability_epochs_must_increase(chain: Chain) -> None:
    vault = chain.vault
    vault.commit_liabilities(7, os.urandom(32), 10)
    assert chain.reverts("CoinVaultLiabilityEpochNotIncreasing", vault.commit_liabilities, 7, b"\1" * 32, 0) == (7, 7)
    assert chain.reverts("CoinVaultLiabilityEpochNotIncreasing", vault.commit_liabilities, 3, b"\1" * 32, 0) == (3, 7)
    vault.commit_liabilities(8, os.urandom(32), 10)
    assert vault.latest_liabilities().epoch_id == 8


def test_first_commitment_may_use_epoch_zero(chain: Chain) -> None:
    vault = chain.vault
    vault.commit_liabilities(0, os.urandom(32), 0)
    assert vault.latest_liabilities().committed_at > 0
    assert vault.solvent()
    chain.reverts("CoinVaultLiabilityEpochNotIncreasing", vault.commit_liabilities, 0, os.urandom(32), 0)


def test_liability_total_must_fit_storage(chain: Chain) -> None:
    args = chain.reverts("CoinVaultAmountTooLarge", chain.vault.commit_liabilities, 1, os.urandom(32), 2**192)
    assert args == (2**192, 2**192 - 1)
