"""The settlement harness: a fresh database and a fresh vault per test, the ledger services on a
chain-backed rate, the tx manager with a throwaway bridge key, the epoch and withdrawal services,
and a bounded `drive()` loop (tick, step, mine; never timed).

A fresh database per test: epochs take every open gift of the database, so tests must not see
each other's gifts. SQLite always; PostgreSQL when TOKENBRIDGE_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from pydantic import SecretStr
from web3 import Web3

from support_ledger import LEDGER_WEBHOOK_SECRETS
from tokenbridge.adapters.chain.deploy import VaultParams, deploy
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, Anvil
from tokenbridge.adapters.chain.keystore import signer_from_private_key
from tokenbridge.adapters.chain.txmanager import TxManager
from tokenbridge.adapters.chain.vault import VaultClient
from tokenbridge.adapters.db.engine import make_engine, session_factories
from tokenbridge.adapters.db.uow import UnitOfWorkFactory
from tokenbridge.bootstrap import Services, build_services
from tokenbridge.config import load_settings
from tokenbridge.domain.epoch import EpochPolicy
from tokenbridge.domain.withdrawal import WalletLinkMessage, WithdrawalMessage
from tokenbridge.services.chain_rate import ChainRate
from tokenbridge.services.epochs import EpochService
from tokenbridge.services.views import PostGift
from tokenbridge.services.withdrawals import RequestWithdrawal, WithdrawalService

CHAIN_ID = 31337
BPS = 8_000
PAYOUT_DELAY = 3_600
COIN = 10**6


def sign_typed(account: Any, typed: dict[str, Any]) -> str:
    message = encode_typed_data(
        domain_data=typed["domain"], message_types=typed["types"], message_data=typed["message"]
    )
    return "0x" + bytes(Account.sign_message(message, account.key).signature).hex()


@dataclass
class Settlement:
    anvil: Anvil
    url: str
    w3: Web3
    vault: VaultClient  # signs as the bridge
    admin: Any
    services: Services
    uow: UnitOfWorkFactory
    txm: TxManager
    rate: ChainRate
    epochs: EpochService
    withdrawals: WithdrawalService
    closers: list[Callable[[], None]] = field(default_factory=list)

    # -- ledger helpers ----------------------------------------------------------------------

    def uid(self, prefix: str = "t") -> str:
        return f"{prefix}-{secrets.token_hex(5)}"

    def recharge(self, account_id: str, amount: int) -> str:
        import json

        from tokenbridge.domain.recharge import signature_header

        payment_id = self.uid("pay")
        body = json.dumps(
            {
                "id": self.uid("evt"),
                "type": "recharge.succeeded",
                "data": {"payment_id": payment_id, "account_id": account_id, "amount": amount},
            }
        ).encode()
        header = signature_header([LEDGER_WEBHOOK_SECRETS[0].encode()], int(time.time()), body)
        self.services.payments.handle_webhook(body, header)
        return payment_id

    def refund(self, account_id: str, amount: int, payment_id: str) -> None:
        import json

        from tokenbridge.domain.recharge import signature_header

        body = json.dumps(
            {
                "id": self.uid("evt"),
                "type": "recharge.refunded",
                "data": {"payment_id": payment_id, "account_id": account_id, "amount": amount},
            }
        ).encode()
        header = signature_header([LEDGER_WEBHOOK_SECRETS[0].encode()], int(time.time()), body)
        self.services.payments.handle_webhook(body, header)

    def user(self, coins: int = 0) -> str:
        account_id = self.uid("u")
        self.services.accounts.open(account_id, "user")
        if coins:
            self.recharge(account_id, coins)
        return account_id

    def creator(self) -> str:
        account_id = self.uid("c")
        self.services.accounts.open(account_id, "creator")
        return account_id

    def gift(self, sender: str, creator: str, amount: int) -> str:
        gift_id = self.uid("g")
        self.services.gifts.post(PostGift(gift_id, sender, creator, amount))
        return gift_id

    def key_of(self, account_id: str) -> bytes:
        return bytes.fromhex(self.services.accounts.get(account_id).account_key[2:])

    def earnings(self, account_id: str) -> int:
        return self.services.accounts.get(account_id).balances.earnings

    # -- chain helpers -----------------------------------------------------------------------

    def mine(self, n: int = 1) -> None:
        for _ in range(n):
            self.anvil.rpc("evm_mine")

    def advance(self, seconds: int) -> None:
        self.anvil.rpc("evm_increaseTime", seconds)
        self.anvil.rpc("evm_mine")

    def chain_now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def drive(self, done: Callable[[], bool], rounds: int = 30) -> None:
        """tx manager tick + epoch step + withdrawal step + mine, until `done()`; bounded."""
        for _ in range(rounds):
            self.txm.tick()
            self.epochs.step()
            self.withdrawals.step()
            if done():
                return
            self.mine()
        raise AssertionError(f"not done after {rounds} rounds")

    def settle_all(self) -> int:
        """Close the open epoch now and drive it to settled + liabilities committed; its id."""
        epoch_id = self.epochs.close()
        assert epoch_id is not None
        self.drive(lambda: self.epochs.get(epoch_id).liabilities_state == "committed")
        return epoch_id

    # -- wallets -----------------------------------------------------------------------------

    def link(self, creator_id: str, wallet: Any | None = None, deadline: int | None = None) -> Any:
        wallet = wallet or Account.create()
        deadline = deadline or int(time.time()) + 600
        key = self.services.accounts.get(creator_id).account_key
        typed = WalletLinkMessage(creator_id, key, wallet.address, deadline).typed_data(CHAIN_ID, self.vault.address)
        self.withdrawals.link_wallet(creator_id, wallet.address, deadline, sign_typed(wallet, typed))
        return wallet

    def withdrawal(
        self,
        creator_id: str,
        wallet: Any,
        amount: int,
        *,
        to: str | None = None,
        withdrawal_id: str | None = None,
        deadline: int | None = None,
    ) -> RequestWithdrawal:
        withdrawal_id = withdrawal_id or self.uid("w")
        to = to or wallet.address
        deadline = deadline or int(time.time()) + 600
        key = self.services.accounts.get(creator_id).account_key
        typed = WithdrawalMessage(withdrawal_id, key, to, amount, deadline).typed_data(CHAIN_ID, self.vault.address)
        return RequestWithdrawal(withdrawal_id, creator_id, to, amount, deadline, sign_typed(wallet, typed))

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()


def make_settlement(
    anvil: Anvil,
    url: str,
    *,
    payout_delay: int = PAYOUT_DELAY,
    chunk_size: int | None = None,
    policy: EpochPolicy | None = None,
    min_amount: int = COIN,
    daily_cap: int = 1_000 * COIN,
    max_batch: int | None = None,
    params: dict[str, Any] | None = None,
    max_in_flight: int = 64,
    max_attempts: int = 5,
) -> Settlement:
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 30}))
    deployer, admin, pauser = (Account.from_key(k) for k in DEV_PRIVATE_KEYS[:3])
    bridge = Account.create()
    anvil.rpc("anvil_setBalance", bridge.address, hex(10**21))
    vault_params = VaultParams(creator_bps=BPS, payout_delay=payout_delay, **(params or {}))
    deployment = deploy(w3, deployer, admin.address, bridge.address, pauser.address, vault_params)
    vault = VaultClient(w3, deployment.vault, bridge)
    rate = ChainRate(vault, ttl_s=0)
    settings = load_settings(
        database_url=url, webhook_secrets=",".join(LEDGER_WEBHOOK_SECRETS), creator_bps=BPS, chain_id=CHAIN_ID
    )
    services = build_services(settings, rate=rate)
    engine = make_engine(url)
    uow = UnitOfWorkFactory(*session_factories(engine))
    signer = signer_from_private_key(SecretStr(bridge.key.hex()))
    txm = TxManager(
        uow,
        w3,
        signer,
        chain_id=CHAIN_ID,
        confirmations=1,
        reprice_after_s=600,
        max_in_flight=max_in_flight,
        fence=True,
    )
    txm.recover()
    epochs = EpochService(
        uow,
        txm,
        vault,
        rate,
        chain_id=CHAIN_ID,
        policy=policy or EpochPolicy(max_age_s=3600),
        chunk_size=chunk_size,
        max_attempts=max_attempts,
    )
    withdrawals = WithdrawalService(
        uow,
        txm,
        vault,
        chain_id=CHAIN_ID,
        min_amount=min_amount,
        daily_cap=daily_cap,
        max_batch=max_batch,
        max_attempts=max_attempts,
    )
    h = Settlement(anvil, url, w3, vault, admin, services, uow, txm, rate, epochs, withdrawals)
    h.closers += [services.close, engine.dispose]
    return h


# --- fixtures (imported by the settlement test modules) ---------------------------------------

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from support_ledger import fresh_database  # noqa: E402


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new, migrated database for this test only (SQLite file; PostgreSQL `tb_settle_*`)."""
    with fresh_database(request.param, tmp_path_factory.mktemp("settle-db"), "tb_settle") as url:
        yield url


@pytest.fixture
def settle(anvil: Anvil, fresh_db_url: str) -> Iterator[Settlement]:
    h = make_settlement(anvil, fresh_db_url)
    try:
        yield h
    finally:
        h.close()
