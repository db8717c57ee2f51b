"""pause: the pauser halts mint, settle, payout, deposit and burn; only the admin resumes; views,
voids and liability commitments keep working. The coin has its own pause switch, same rights."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from tokenbridge.adapters.chain.vault import DEFAULT_ADMIN_ROLE, PAUSER_ROLE, PayoutItem

if TYPE_CHECKING:
    from tests.contracts.conftest import Chain

pytestmark = pytest.mark.chain


CREATOR = b"\x42" * 32  # credited and matured by the `ready` fixture


@pytest.fixture
def ready(chain: Chain) -> Chain:
    """Funded vault, CREATOR credited and matured, alice holding tokens."""
    chain.fund_vault(10**9)
    chain.credit({CREATOR: 10**7}, mature=True)
    chain.vault.payout([PayoutItem(1, CREATOR, chain.actors.alice.address, 10**6)])
    return chain


def _halted(chain: Chain) -> dict[str, Callable[[], Any]]:
    vault, a = chain.vault, chain.actors
    k = CREATOR
    return {
        "mint": lambda: vault.mint_for_recharges(99, 1, os.urandom(32), 1),
        "settle": lambda: vault.settle_gifts(99, 0, os.urandom(32), 1, 10, [k], [10]),
        "payout": lambda: vault.payout([PayoutItem(99, k, a.bob.address, 1)]),
        "burn": lambda: vault.burn_for_refunds(99, 1),
        "deposit": lambda: vault.deposit(os.urandom(32), 1, account=a.alice),
        "depositWithPermit": lambda: vault.deposit_with_permit(os.urandom(32), 1, account=a.alice),
        "payoutPlatform": lambda: vault.payout_platform(a.bob.address, 1, account=a.admin),
    }


HALTED = ["mint", "settle", "payout", "burn", "deposit", "depositWithPermit", "payoutPlatform"]


@pytest.mark.parametrize("op", HALTED)
def test_pause_halts_operation_until_admin_unpauses(ready: Chain, op: str) -> None:
    vault, a = ready.vault, ready.actors
    vault.pause(account=a.pauser)
    assert vault.paused()
    ready.reverts("EnforcedPause", _halted(ready)[op])
    vault.unpause(account=a.admin)
    assert not vault.paused()
    _halted(ready)[op]()  # works again


def test_views_keep_working_while_paused(ready: Chain) -> None:
    vault, a = ready.vault, ready.actors
    k = CREATOR
    before = (vault.creator_bps(), vault.earned(k), vault.matured(k), vault.reserve(), vault.is_paid_out(1))
    vault.pause(account=a.pauser)
    assert (vault.creator_bps(), vault.earned(k), vault.matured(k), vault.reserve(), vault.is_paid_out(1)) == before
    assert vault.mint_allowance().limit == ready.params.mint_limit
    assert vault.epoch(ready._epoch).settled
    assert not vault.verify_gift(ready._epoch, b"\1" * 32, b"\2" * 32, k, 10, 8, 2, [])


def test_admin_can_void_and_bridge_can_commit_while_paused(ready: Chain) -> None:
    vault, a = ready.vault, ready.actors
    fake = ready.key()
    ready.credit({fake: 10**6})
    vault.pause(account=a.pauser)
    vault.void_credit(fake, ready.share(10**6), account=a.admin)
    assert vault.earned(fake) == 0
    vault.commit_liabilities(1, os.urandom(32), 1)
    assert vault.solvent()


def test_pauser_cannot_unpause(ready: Chain) -> None:
    vault, a = ready.vault, ready.actors
    vault.pause(account=a.pauser)
    args = ready.reverts("AccessControlUnauthorizedAccount", vault.unpause, account=a.pauser)
    assert args == (a.pauser.address.lower(), DEFAULT_ADMIN_ROLE)
    assert vault.paused()


def test_admin_cannot_pause_without_pauser_role(ready: Chain) -> None:
    args = ready.reverts("AccessControlUnauthorizedAccount", ready.vault.pause, account=ready.actors.admin)
    assert args == (ready.actors.admin.address.lower(), PAUSER_ROLE)


def test_pause_twice_and_unpause_when_running_revert(ready: Chain) -> None:
    vault, a = ready.vault, ready.actors
    ready.reverts("ExpectedPause", vault.unpause, account=a.admin)
    vault.pause(account=a.pauser)
    ready.reverts("EnforcedPause", vault.pause, account=a.pauser)


def test_coin_pause_stops_every_transfer_and_only_admin_resumes(ready: Chain) -> None:
    vault, a = ready.vault, ready.actors
    k = CREATOR
    result = vault.pause_coin(account=a.pauser)
    assert vault.coin_paused()
    assert not vault.paused()
    (event,) = vault.events("CoinPaused", result.block_number, result.block_number)
    assert event["args"]["account"] == a.pauser.address
    ready.reverts("EnforcedPause", vault.transfer, a.bob.address, 1, account=a.alice)
    ready.reverts("EnforcedPause", vault.payout, [PayoutItem(50, k, a.bob.address, 1)])
    ready.reverts("EnforcedPause", vault.mint_for_recharges, 50, 1, os.urandom(32), 1)
    args = ready.reverts("AccessControlUnauthorizedAccount", vault.unpause_coin, account=a.pauser)
    assert args == (a.pauser.address.lower(), DEFAULT_ADMIN_ROLE)
    vault.unpause_coin(account=a.admin)
    assert not vault.coin_paused()
    vault.transfer(a.bob.address, 1, account=a.alice)
    assert vault.balance_of(a.bob.address) == 1
