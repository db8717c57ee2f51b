"""Blast radius of a stolen bridge key (DESIGN.md section 4): the attacker holds only the
bridge role. It cannot mint past the rolling allowance, cannot pay out a fake settlement
before it matures, is stopped by the pauser, and the admin voids the fake credit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from eth_account import Account

from tokenbridge.adapters.chain.devnet import Anvil
from tokenbridge.adapters.chain.vault import PayoutItem, VaultClient
from tokenbridge.domain.errors import ChainError
from tokenbridge.domain.keys import account_key
from tokenbridge.domain.merkle import GiftLeaf, gift_tree
from tokenbridge.domain.split import split

if TYPE_CHECKING:
    from tests.contracts.conftest import Chain

pytestmark = pytest.mark.chain

HOUR = 3_600
# The conftest deployment's parameters; the `env` fixture checks them.
BPS = 8_000
WINDOW = HOUR  # payoutDelay: the admin's challenge window
MINT_LIMIT = 10**12  # per day
PAYOUT_LIMIT = 10**11  # per day
DAY = 86_400


@dataclass
class Env:
    client: VaultClient  # signs as the bridge, i.e. as the attacker
    anvil: Anvil
    admin: Any
    attacker: Any  # holds BRIDGE_ROLE and nothing else
    pauser: Any


@pytest.fixture
def env(chain: Chain) -> Env:
    p = chain.params
    assert (p.creator_bps, p.payout_delay, p.mint_limit, p.mint_period, p.payout_limit, p.payout_period) == (
        BPS,
        WINDOW,
        MINT_LIMIT,
        DAY,
        PAYOUT_LIMIT,
        DAY,
    )
    a = chain.actors
    return Env(chain.vault, chain.anvil, a.admin, a.bridge, a.pauser)


def _advance(env: Env, seconds: int) -> None:
    env.anvil.rpc("evm_increaseTime", seconds)
    env.anvil.rpc("evm_mine")


def _reverts(name: str, call: Any, *args: Any, **kwargs: Any) -> ChainError:
    with pytest.raises(ChainError) as info:
        call(*args, **kwargs)
    assert info.value.revert == name, info.value.detail
    return info.value


ATTACKER_KEY = account_key("creator:mallory:earnings", b"\x66" * 32)
FAKE_GROSS = 50_000 * 10**6  # 50k coins: within the payout allowance, so only maturity stands in the way


def _fake_settlement(env: Env, epoch_id: int = 1, gross: int = FAKE_GROSS) -> int:
    """The attacker settles an epoch of invented gifts that credits its own creator key."""
    leaf = GiftLeaf.of(f"fake-{epoch_id}", b"\x01" * 32, ATTACKER_KEY, split(gross, BPS))
    tree = gift_tree([leaf])
    env.client.settle_gifts(epoch_id, 0, tree.root, 1, gross, [ATTACKER_KEY], [gross])
    return leaf.creator_amount


def _fund_vault(env: Env, amount: int, batch_id: int = 1) -> None:
    env.client.mint_for_recharges(batch_id, amount, b"\x00" * 32, 1)


def test_cannot_mint_past_the_rolling_allowance(env: Env) -> None:
    env.client.mint_for_recharges(1, MINT_LIMIT, b"\x11" * 32, 1)  # everything available at once
    assert env.client.total_supply() == MINT_LIMIT
    available = env.client.mint_allowance().available
    assert available < MINT_LIMIT // 1_000  # only what refilled over a second or two
    err = _reverts(
        "CoinVaultMintAllowanceExceeded", env.client.mint_for_recharges, 2, MINT_LIMIT // 100, b"\x11" * 32, 1
    )
    assert getattr(err, "revert_args", ())[1:] == (MINT_LIMIT // 100,)
    assert env.client.total_supply() == MINT_LIMIT
    assert not env.client.is_minted(2)


def test_mint_allowance_refills_linearly_not_at_once(env: Env) -> None:
    env.client.mint_for_recharges(1, MINT_LIMIT, b"\x11" * 32, 1)
    _advance(env, DAY // 4)
    available = env.client.mint_allowance().available
    assert MINT_LIMIT // 4 <= available < MINT_LIMIT // 4 + MINT_LIMIT // 1_000
    _reverts("CoinVaultMintAllowanceExceeded", env.client.mint_for_recharges, 2, MINT_LIMIT // 2, b"\x11" * 32, 1)


def test_fake_settlement_cannot_be_paid_out_before_it_matures(env: Env) -> None:
    _fund_vault(env, FAKE_GROSS)
    credit = _fake_settlement(env)
    assert env.client.earned(ATTACKER_KEY) == credit
    assert env.client.withdrawable(ATTACKER_KEY) == 0
    thief = Account.create().address
    _reverts("CoinVaultPayoutExceedsMatured", env.client.payout, [PayoutItem(1, ATTACKER_KEY, thief, credit)])
    _advance(env, WINDOW - 60)  # most of the window, not all of it
    _reverts("CoinVaultPayoutExceedsMatured", env.client.payout, [PayoutItem(1, ATTACKER_KEY, thief, 1)])
    assert env.client.balance_of(thief) == 0
    assert not env.client.is_paid_out(1)


def test_a_second_fake_credit_keeps_its_own_window(env: Env) -> None:
    """The first credit matures on its own time; the second stays pending (and voidable) for its full window."""
    _fund_vault(env, 2 * FAKE_GROSS)
    first = _fake_settlement(env, 1)
    _advance(env, WINDOW - 60)
    second = _fake_settlement(env, 2)
    _advance(env, 120)  # the first credit's window has passed, the second's has not
    assert env.client.pending(ATTACKER_KEY) == second
    assert env.client.withdrawable(ATTACKER_KEY) == first
    _reverts(
        "CoinVaultPayoutExceedsMatured",
        env.client.payout,
        [PayoutItem(1, ATTACKER_KEY, Account.create().address, first + 1)],
    )
    env.client.void_credit(ATTACKER_KEY, second, account=env.admin)
    assert env.client.pending(ATTACKER_KEY) == 0


def test_admin_voids_the_fake_credit_during_the_window(env: Env) -> None:
    _fund_vault(env, FAKE_GROSS)
    credit = _fake_settlement(env)
    assert env.client.pending(ATTACKER_KEY) == credit
    # the attacker cannot void or grant itself anything
    _reverts("AccessControlUnauthorizedAccount", env.client.void_credit, ATTACKER_KEY, credit)
    _reverts("AccessControlUnauthorizedAccount", env.client.grant_role, "admin", env.attacker.address)
    env.client.void_credit(ATTACKER_KEY, credit, account=env.admin)
    assert env.client.earned(ATTACKER_KEY) == 0
    _advance(env, WINDOW + 1)
    assert env.client.withdrawable(ATTACKER_KEY) == 0
    _reverts(
        "CoinVaultPayoutExceedsMatured", env.client.payout, [PayoutItem(1, ATTACKER_KEY, Account.create().address, 1)]
    )


def test_matured_credit_can_no_longer_be_voided(env: Env) -> None:
    """The window is the admin's only chance: a matured credit belongs to the creator."""
    _fund_vault(env, FAKE_GROSS)
    credit = _fake_settlement(env)
    _advance(env, WINDOW + 1)
    _reverts("CoinVaultVoidExceedsPending", env.client.void_credit, ATTACKER_KEY, credit, account=env.admin)


def test_pause_stops_the_attacker_and_only_the_admin_resumes(env: Env) -> None:
    _fund_vault(env, FAKE_GROSS)
    credit = _fake_settlement(env)
    env.client.pause(account=env.pauser)
    assert env.client.paused()
    _reverts("EnforcedPause", env.client.mint_for_recharges, 9, 1, b"\x00" * 32, 1)
    _reverts("EnforcedPause", env.client.settle_gifts, 2, 0, b"\x01" * 32, 1, 5, [ATTACKER_KEY], [5])
    _advance(env, WINDOW + 1)  # even once matured, nothing leaves while paused
    _reverts("EnforcedPause", env.client.payout, [PayoutItem(1, ATTACKER_KEY, Account.create().address, credit)])
    _reverts("EnforcedPause", env.client.burn_for_refunds, 1, 1)
    _reverts("AccessControlUnauthorizedAccount", env.client.unpause)  # the attacker
    _reverts("AccessControlUnauthorizedAccount", env.client.unpause, account=env.pauser)
    # views keep working for verifiers
    assert env.client.reserve() == FAKE_GROSS
    env.client.unpause(account=env.admin)
    assert not env.client.paused()


def test_admin_voids_while_paused(env: Env) -> None:
    _fund_vault(env, FAKE_GROSS)
    credit = _fake_settlement(env)
    env.client.pause(account=env.pauser)
    env.client.void_credit(ATTACKER_KEY, credit, account=env.admin)
    env.client.void_platform_credit(env.client.platform_pending(), account=env.admin)
    assert env.client.earned(ATTACKER_KEY) == 0
    assert env.client.platform_earned() == 0


def test_payout_allowance_caps_what_even_a_matured_fake_credit_moves(env: Env) -> None:
    big = 4 * PAYOUT_LIMIT
    _fund_vault(env, big)
    credit = _fake_settlement(env, gross=big)
    _advance(env, WINDOW + 1)  # the admin missed the window
    assert env.client.withdrawable(ATTACKER_KEY) == credit > PAYOUT_LIMIT
    thief = Account.create().address
    _reverts("CoinVaultPayoutAllowanceExceeded", env.client.payout, [PayoutItem(1, ATTACKER_KEY, thief, credit)])
    env.client.payout([PayoutItem(1, ATTACKER_KEY, thief, PAYOUT_LIMIT)])
    _reverts("CoinVaultPayoutAllowanceExceeded", env.client.payout, [PayoutItem(2, ATTACKER_KEY, thief, PAYOUT_LIMIT)])
    assert env.client.balance_of(thief) == PAYOUT_LIMIT


def test_attacker_cannot_change_limits_delays_or_split(env: Env) -> None:
    _reverts("AccessControlUnauthorizedAccount", env.client.set_mint_limit, 2**90, 1)
    _reverts("AccessControlUnauthorizedAccount", env.client.set_payout_limit, 2**90, 1)
    _reverts("AccessControlUnauthorizedAccount", env.client.set_payout_delay, 0)
    _reverts("AccessControlUnauthorizedAccount", env.client.propose_creator_bps, 10_000)
    assert env.client.payout_delay() == WINDOW
    assert env.client.creator_bps() == BPS
