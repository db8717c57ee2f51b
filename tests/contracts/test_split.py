"""The split rate changes only through propose -> wait splitDelay -> apply, and an epoch keeps the
rate that was in force when its first chunk settled."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.contracts.conftest import Chain

pytestmark = pytest.mark.chain


def test_propose_records_pending_change_and_effective_time(chain: Chain) -> None:
    vault, admin = chain.vault, chain.actors.admin
    result = vault.propose_creator_bps(6_500, account=admin)
    block_time = int(chain.w3.eth.get_block(result.block_number)["timestamp"])
    pending = vault.pending_creator_bps()
    assert pending.exists
    assert pending.bps == 6_500
    assert pending.effective_at == block_time + chain.params.split_delay
    assert vault.creator_bps() == chain.params.creator_bps  # nothing changes yet
    (event,) = vault.events("CreatorBpsProposed", result.block_number, result.block_number)
    assert dict(event["args"]) == {
        "currentBps": chain.params.creator_bps,
        "proposedBps": 6_500,
        "effectiveAt": pending.effective_at,
    }


def test_apply_before_delay_reverts_with_times(chain: Chain) -> None:
    vault, admin = chain.vault, chain.actors.admin
    vault.propose_creator_bps(6_500, account=admin)
    effective_at = vault.pending_creator_bps().effective_at
    chain.advance(chain.params.split_delay - 100)
    args = chain.reverts("CoinVaultBpsNotReady", vault.apply_creator_bps, account=admin)
    assert args[0] == effective_at
    assert args[1] < effective_at
    assert vault.creator_bps() == chain.params.creator_bps


def test_apply_after_delay_changes_rate_and_clears_proposal(chain: Chain) -> None:
    vault, admin = chain.vault, chain.actors.admin
    vault.propose_creator_bps(6_500, account=admin)
    chain.advance(chain.params.split_delay)
    result = vault.apply_creator_bps(account=admin)
    assert vault.creator_bps() == 6_500
    assert not vault.pending_creator_bps().exists
    (event,) = vault.events("CreatorBpsApplied", result.block_number, result.block_number)
    assert dict(event["args"]) == {"previousBps": chain.params.creator_bps, "newBps": 6_500}
    chain.reverts("CoinVaultNoPendingBps", vault.apply_creator_bps, account=admin)


def test_apply_or_cancel_without_proposal_reverts(chain: Chain) -> None:
    admin = chain.actors.admin
    chain.reverts("CoinVaultNoPendingBps", chain.vault.apply_creator_bps, account=admin)
    chain.reverts("CoinVaultNoPendingBps", chain.vault.cancel_creator_bps, account=admin)


def test_cancel_drops_proposal(chain: Chain) -> None:
    vault, admin = chain.vault, chain.actors.admin
    vault.propose_creator_bps(1_000, account=admin)
    result = vault.cancel_creator_bps(account=admin)
    assert not vault.pending_creator_bps().exists
    (event,) = vault.events("CreatorBpsProposalCancelled", result.block_number, result.block_number)
    assert event["args"]["cancelledBps"] == 1_000
    chain.advance(chain.params.split_delay + 1)
    chain.reverts("CoinVaultNoPendingBps", vault.apply_creator_bps, account=admin)
    assert vault.creator_bps() == chain.params.creator_bps


def test_new_proposal_replaces_old_and_restarts_wait(chain: Chain) -> None:
    vault, admin = chain.vault, chain.actors.admin
    vault.propose_creator_bps(1_000, account=admin)
    chain.advance(chain.params.split_delay // 2)
    vault.propose_creator_bps(9_000, account=admin)
    chain.advance(chain.params.split_delay // 2 + 10)  # the first proposal's time has passed
    chain.reverts("CoinVaultBpsNotReady", vault.apply_creator_bps, account=admin)
    chain.advance(chain.params.split_delay // 2)
    vault.apply_creator_bps(account=admin)
    assert vault.creator_bps() == 9_000


@pytest.mark.parametrize("bps", [10_001, 65_535])
def test_rate_above_10000_is_refused(chain: Chain, bps: int) -> None:
    assert chain.reverts("CoinVaultInvalidBps", chain.vault.propose_creator_bps, bps, account=chain.actors.admin) == (
        bps,
    )


@pytest.mark.parametrize("bps", [0, 10_000])
def test_rate_bounds_are_accepted_and_applied_to_settlement(chain: Chain, bps: int) -> None:
    vault, admin = chain.vault, chain.actors.admin
    vault.propose_creator_bps(bps, account=admin)
    chain.advance(chain.params.split_delay)
    vault.apply_creator_bps(account=admin)
    creator = chain.key()
    platform_before = vault.platform_earned()
    chain.credit({creator: 1_000_003})
    assert vault.earned(creator) == 1_000_003 * bps // 10_000
    assert vault.platform_earned() - platform_before == 1_000_003 - 1_000_003 * bps // 10_000


def test_epoch_keeps_rate_of_its_first_chunk(chain: Chain) -> None:
    vault, admin = chain.vault, chain.actors.admin
    a, b = chain.key(), chain.key()
    root = os.urandom(32)
    vault.settle_gifts(77, 0, root, 2, 2_000_000, [a], [1_000_000])
    vault.propose_creator_bps(5_000, account=admin)
    chain.advance(chain.params.split_delay)
    vault.apply_creator_bps(account=admin)
    vault.settle_gifts(77, 1, root, 2, 2_000_000, [b], [1_000_000])
    assert vault.epoch(77).bps == chain.params.creator_bps
    assert vault.earned(b) == chain.share(1_000_000)  # old rate, as the epoch records
    c = chain.key()
    epoch = chain.credit({c: 1_000_000})
    assert vault.epoch(epoch).bps == 5_000
    assert vault.earned(c) == 500_000
