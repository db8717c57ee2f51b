"""Fixtures for the CoinVault/CreatorCoin tests: one deployment per session on the shared anvil,
and a snapshot/revert around every test (`chain_snapshot`) so each test starts from it.

Test deployment parameters (small numbers make the limits easy to hit):
creator share 80 %, split delay 1 day, payout delay 1 hour, maturity granularity 1 s (a credit
matures exactly payoutDelay after its block, as on devnet), mint limit 1e12 per day, payout limit
1e11 per day. `grid` is a second session deployment with the production granularity of 1 hour
(same other parameters) for the maturity-bucket rules.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from tokenbridge.adapters.chain.deploy import Deployment, VaultParams, deploy
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil
from tokenbridge.adapters.chain.vault import VaultClient, VaultRevertError

BPS = 8_000
SPLIT_DELAY = 86_400
PAYOUT_DELAY = 3_600
MATURITY_GRANULARITY = 1
GRID = 3_600  # the `grid` deployment's granularity
MINT_LIMIT = 10**12
MINT_PERIOD = 86_400
PAYOUT_LIMIT = 10**11
PAYOUT_PERIOD = 86_400

PARAMS = VaultParams(
    name="Creator Coin",
    symbol="CREATOR",
    creator_bps=BPS,
    split_delay=SPLIT_DELAY,
    payout_delay=PAYOUT_DELAY,
    maturity_granularity=MATURITY_GRANULARITY,
    mint_limit=MINT_LIMIT,
    mint_period=MINT_PERIOD,
    payout_limit=PAYOUT_LIMIT,
    payout_period=PAYOUT_PERIOD,
)
GRID_PARAMS = dataclasses.replace(PARAMS, maturity_granularity=GRID)


@dataclass(frozen=True)
class Actors:
    deployer: Any
    admin: Any
    bridge: Any
    pauser: Any
    alice: Any  # a token holder / creator wallet
    bob: Any
    stranger: Any  # holds no role


@dataclass
class Chain:
    """What a test needs: the client (signing as the bridge by default), the actors and the node."""

    vault: VaultClient
    actors: Actors
    anvil: Anvil
    deployment: Deployment
    _epoch: int = 1000

    @property
    def w3(self) -> Web3:
        return self.vault.w3

    def now(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> None:
        """Move chain time forward and mine a block."""
        self.anvil.rpc("evm_increaseTime", seconds)
        self.anvil.rpc("evm_mine")

    def at(self, timestamp: int) -> None:
        """Give the next block (e.g. the next transaction's) this timestamp."""
        self.anvil.rpc("evm_setNextBlockTimestamp", timestamp)

    def mine_at(self, timestamp: int) -> None:
        """Mine an empty block at `timestamp`: views then see that time."""
        self.at(timestamp)
        self.anvil.rpc("evm_mine")

    def block_time(self, block_number: int) -> int:
        return int(self.w3.eth.get_block(block_number)["timestamp"])

    def cell_start(self, offset: int = 0) -> int:
        """The start of a cell of this deployment's granularity at least a cell after now, plus `offset`."""
        g = self.params.granularity
        return (self.now() // g + 2) * g + offset

    def next_epoch(self) -> int:
        self._epoch += 1
        return self._epoch

    def credit(self, credits: dict[bytes, int], *, mature: bool = False) -> int:
        """Settle a one-chunk epoch giving each key its gross; optionally wait for maturity. Returns the epoch."""
        epoch = self.next_epoch()
        gross = list(credits.values())
        self.vault.settle_gifts(epoch, 0, os.urandom(32), len(gross), sum(gross), list(credits), gross)
        if mature:
            self.advance(self.params.payout_delay + self.params.granularity)
        return epoch

    params: VaultParams = PARAMS

    @staticmethod
    def key() -> bytes:
        """A fresh random bytes32 account key."""
        return os.urandom(32)

    def share(self, gross: int, bps: int | None = None) -> int:
        """The creator share of `gross` at `bps` (default: the deployment's rate)."""
        return gross * (self.params.creator_bps if bps is None else bps) // 10_000

    def platform_share(self, gross: int) -> int:
        return gross - self.share(gross)

    @staticmethod
    def reverts(name: str, call: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Run `call`, require a revert with custom error `name`; return the error's arguments."""
        with pytest.raises(VaultRevertError) as info:
            call(*args, **kwargs)
        assert info.value.revert == name, info.value.detail
        return info.value.revert_args

    def fund_vault(self, amount: int) -> None:
        """Mint `amount` into the vault under a fresh batch id."""
        self.vault.mint_for_recharges(int.from_bytes(os.urandom(8), "big"), amount, os.urandom(32), 1)


@pytest.fixture(scope="session")
def actors() -> Actors:
    keys = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
    return Actors(keys[0], keys[1], keys[2], keys[3], keys[6], keys[7], keys[8])


@pytest.fixture(scope="session")
def vault_deployment(anvil: Anvil, actors: Actors) -> Deployment:
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    return deploy(w3, actors.deployer, actors.admin.address, actors.bridge.address, actors.pauser.address, PARAMS)


@pytest.fixture
def chain(vault_deployment: Deployment, actors: Actors, chain_snapshot: Anvil) -> Chain:
    """A fresh view of the session deployment; every chain change is reverted after the test."""
    w3 = Web3(Web3.HTTPProvider(chain_snapshot.rpc_url))
    return Chain(VaultClient(w3, vault_deployment.vault, actors.bridge), actors, chain_snapshot, vault_deployment)


@pytest.fixture(scope="session")
def grid_deployment(anvil: Anvil, actors: Actors, vault_deployment: Deployment) -> Deployment:
    """A second session vault with the production maturity granularity (1 hour)."""
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    return deploy(w3, actors.deployer, actors.admin.address, actors.bridge.address, actors.pauser.address, GRID_PARAMS)


@pytest.fixture
def grid(grid_deployment: Deployment, actors: Actors, chain_snapshot: Anvil) -> Chain:
    """Like `chain`, on the 1-hour-granularity vault."""
    w3 = Web3(Web3.HTTPProvider(chain_snapshot.rpc_url))
    client = VaultClient(w3, grid_deployment.vault, actors.bridge)
    return Chain(client, actors, chain_snapshot, grid_deployment, params=GRID_PARAMS)


@pytest.fixture
def vault(chain: Chain) -> VaultClient:
    """The deployed vault's client, signing as the bridge."""
    return chain.vault
