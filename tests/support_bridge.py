"""Helpers for the deposits / reconcile / worker tests: a fresh vault on a real anvil, wallets
that hold tokens, and the deposits service wired to a real database.

Importable as `support_bridge` (pytest's `pythonpath` includes tests/).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from web3 import Web3

from tokenbridge.adapters.chain.deploy import Deployment, VaultParams, deploy
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil
from tokenbridge.adapters.chain.indexer import Web3DepositSource
from tokenbridge.adapters.chain.vault import PayoutItem, TxResult, VaultClient
from tokenbridge.adapters.db.engine import make_engine, session_factories
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.services.deposits import DepositService

# creator share 100 % and no maturity delay, so funding a wallet is mint + settle + payout
PARAMS = VaultParams(creator_bps=10_000, payout_delay=0, mint_limit=10**15, payout_limit=10**15)
KEYS = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
ADMIN, BRIDGE, PAUSER = KEYS[1], KEYS[2], KEYS[3]
WALLETS = KEYS[5:9]


@dataclass
class Bed:
    """One freshly deployed vault on `anvil`; `vault` signs as the bridge."""

    anvil: Anvil
    w3: Web3
    vault: VaultClient
    deployment: Deployment
    _ids: list[int] = field(default_factory=lambda: [0])

    def next_id(self) -> int:
        self._ids[0] += 1
        return int.from_bytes(os.urandom(6), "big") * 1000 + self._ids[0]

    def head(self) -> int:
        return int(self.w3.eth.block_number)

    def mine(self, blocks: int = 1) -> None:
        self.anvil.rpc("anvil_mine", hex(blocks))

    def fund(self, wallet: Any, amount: int) -> None:
        """Give `wallet` `amount` tokens the only way tokens leave the vault: mint, settle, pay out."""
        key = os.urandom(32)
        self.vault.mint_for_recharges(self.next_id(), amount, os.urandom(32), 1)
        self.vault.settle_gifts(self.next_id(), 0, os.urandom(32), 1, amount, [key], [amount])
        self.vault.payout([PayoutItem(self.next_id(), key, wallet.address, amount)])

    def deposit(self, wallet: Any, key: bytes | str, amount: int) -> TxResult:
        raw = bytes.fromhex(key[2:]) if isinstance(key, str) else key
        return self.vault.deposit(raw, amount, account=wallet)


def deploy_bed(anvil: Anvil, params: VaultParams = PARAMS) -> Bed:
    """Deploy from a fresh random deployer, so every vault has its own address even across anvil
    instances (the shared test database keys the indexer's state by vault address)."""
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    deployer = Account.create()
    anvil.rpc("anvil_setBalance", deployer.address, hex(10**20))
    deployment = deploy(w3, deployer, ADMIN.address, BRIDGE.address, PAUSER.address, params)
    return Bed(anvil, w3, VaultClient(w3, deployment.vault, BRIDGE), deployment)


def uow_factory(url: str) -> tuple[UnitOfWorkFactory, Any]:
    engine = make_engine(url)
    return UnitOfWorkFactory(*session_factories(engine)), engine


@contextmanager
def bridge_uow(url: str) -> Iterator[UnitOfWorkFactory]:
    """A unit-of-work factory on `url`, its engine disposed afterwards."""
    factory, engine = uow_factory(url)
    try:
        yield factory
    finally:
        engine.dispose()


def deposit_service(
    uow: UnitOfWorkFactory, bed: Bed, *, confirmations: int = 2, source: Any = None, **kwargs: Any
) -> DepositService:
    return DepositService(
        uow,
        source or Web3DepositSource(bed.w3, bed.deployment.vault),
        vault=bed.deployment.vault,
        confirmations=confirmations,
        start_block=bed.deployment.deploy_block,
        **kwargs,
    )
