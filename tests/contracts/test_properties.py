"""Stateful property test of CoinVault: random sequences of mint / settle / time / payout /
deposit / burn (and refused over-payouts) keep the money conserved:

- totalSupply == vault reserve + tokens held by the wallets outside it
- totalSupply == minted - burned (nothing appears or vanishes)
- paidOut(k) <= earned(k) and withdrawable(k) == matured(k) - paidOut(k) for every creator
- the vault's totals equal a plain Python model of the same operations

Each example runs inside an evm_snapshot that is reverted afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from eth_account import Account
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tokenbridge.adapters.chain.deploy import Deployment
from tokenbridge.adapters.chain.devnet import Anvil
from tokenbridge.adapters.chain.vault import PayoutItem, VaultClient
from tokenbridge.domain.errors import ChainError
from tokenbridge.domain.keys import account_key
from tokenbridge.domain.merkle import GiftLeaf, gift_tree
from tokenbridge.domain.split import split

if TYPE_CHECKING:
    from tests.contracts.conftest import Actors

pytestmark = pytest.mark.chain

HOUR = 3_600
BPS = 8_000  # the conftest deployment's rate and payout delay; `env` checks both
COIN = 10**6
CREATORS = [account_key(f"creator:{i}:earnings", bytes([i + 1]) * 32) for i in range(3)]


@dataclass
class Env:
    client: VaultClient
    anvil: Anvil
    bridge: Any
    holders: list[Any]


@pytest.fixture
def env(vault_deployment: Deployment, actors: Actors, anvil: Anvil) -> Env:
    """The session vault of tests/contracts/conftest.py; every example snapshots and reverts itself."""
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    client = VaultClient(w3, vault_deployment.vault, account=actors.bridge)
    assert (client.creator_bps(), client.payout_delay()) == (BPS, HOUR)
    holders = [Account.create() for _ in range(2)]
    return Env(client, anvil, actors.bridge, holders)


class VaultMachine(RuleBasedStateMachine):
    env: Env  # set by the test before running

    def __init__(self) -> None:
        super().__init__()
        self.snapshot = self.env.anvil.rpc("evm_snapshot")
        for h in self.env.holders:
            self.env.anvil.rpc("anvil_setBalance", h.address, hex(10**20))  # gas for deposits
        self.client = self.env.client
        self.minted = 0
        self.burned = 0
        self.earned = dict.fromkeys(CREATORS, 0)
        self.paid = dict.fromkeys(CREATORS, 0)
        self.next_id = 1
        self.next_epoch = 1

    def teardown(self) -> None:
        self.env.anvil.rpc("evm_revert", self.snapshot)

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    @initialize(amount=st.integers(1, 5 * 10**4 * COIN))
    def seed_reserve(self, amount: int) -> None:
        self.mint(amount)

    @rule(amount=st.integers(1, 5 * 10**4 * COIN))
    def mint(self, amount: int) -> None:
        self.client.mint_for_recharges(self._id(), amount, b"\x00" * 32, 1)
        self.minted += amount

    @rule(gifts=st.lists(st.tuples(st.sampled_from(range(3)), st.integers(1, 10**5 * COIN)), min_size=1, max_size=4))
    def settle(self, gifts: list[tuple[int, int]]) -> None:
        epoch = self.next_epoch
        self.next_epoch += 1
        leaves = [
            GiftLeaf.of(f"g{epoch}-{i}", b"\x01" * 32, CREATORS[c], split(g, BPS)) for i, (c, g) in enumerate(gifts)
        ]
        per_creator: dict[bytes, int] = {}
        for leaf in leaves:
            per_creator[leaf.creator_key] = per_creator.get(leaf.creator_key, 0) + leaf.gross
        tree = gift_tree(leaves)
        gross = sum(leaf.gross for leaf in leaves)
        self.client.settle_gifts(epoch, 0, tree.root, len(leaves), gross, list(per_creator), list(per_creator.values()))
        for key, creator_gross in per_creator.items():
            self.earned[key] += creator_gross * BPS // 10_000

    @rule(seconds=st.sampled_from([1, 60, HOUR // 2, HOUR + 1, 3 * HOUR]))
    def advance_time(self, seconds: int) -> None:
        self.env.anvil.rpc("evm_increaseTime", seconds)
        self.env.anvil.rpc("evm_mine")

    @rule(creator=st.sampled_from(range(3)), holder=st.sampled_from(range(2)), fraction=st.fractions(0, 1))
    def payout(self, creator: int, holder: int, fraction: Any) -> None:
        key = CREATORS[creator]
        cap = min(self.client.withdrawable(key), self.client.reserve(), self.client.payout_allowance().available)
        amount = int(cap * fraction)
        if amount == 0:
            return
        self.client.payout([PayoutItem(self._id(), key, self.env.holders[holder].address, amount)])
        self.paid[key] += amount

    @rule(creator=st.sampled_from(range(3)), extra=st.integers(1, 10**6))
    def payout_above_matured_is_refused(self, creator: int, extra: int) -> None:
        key = CREATORS[creator]
        amount = self.client.withdrawable(key) + extra
        payout_id = self._id()
        with pytest.raises(ChainError) as info:
            self.client.payout([PayoutItem(payout_id, key, self.env.holders[0].address, amount)])
        assert info.value.revert in {"CoinVaultPayoutExceedsMatured", "CoinVaultPayoutAllowanceExceeded"}
        assert not self.client.is_paid_out(payout_id)

    @rule(holder=st.sampled_from(range(2)), fraction=st.fractions(0, 1), permit=st.booleans())
    def deposit(self, holder: int, fraction: Any, permit: bool) -> None:
        wallet = self.env.holders[holder]
        amount = int(self.client.balance_of(wallet.address) * fraction)
        if amount == 0:
            return
        key = account_key(f"user:holder{holder}:coins", bytes([9]) * 32)
        if permit:
            self.client.deposit_with_permit(key, amount, account=wallet)
        else:
            self.client.deposit(key, amount, account=wallet)

    @precondition(lambda self: self.minted > self.burned)
    @rule(fraction=st.fractions(0, 1))
    def burn(self, fraction: Any) -> None:
        amount = int(min(self.client.reserve(), self.client.payout_allowance().available) * fraction)
        if amount == 0:
            return
        self.client.burn_for_refunds(self._id(), amount)
        self.burned += amount

    @invariant()
    def supply_is_reserve_plus_outside(self) -> None:
        supply = self.client.total_supply()
        outside = sum(self.client.balance_of(h.address) for h in self.env.holders)
        assert supply == self.client.reserve() + outside
        assert supply == self.minted - self.burned

    @invariant()
    def paid_never_exceeds_earned(self) -> None:
        for key in CREATORS:
            credit = self.client.credit_of(key)
            assert credit.paid <= credit.earned
            assert (credit.earned, credit.paid) == (self.earned[key], self.paid[key])
            assert self.client.withdrawable(key) == self.client.matured(key) - credit.paid


def test_vault_conserves_money_under_random_operations(env: Env) -> None:
    VaultMachine.env = env
    run_state_machine_as_test(
        VaultMachine,
        settings=settings(
            max_examples=8,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
