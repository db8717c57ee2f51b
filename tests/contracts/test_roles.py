"""Who may call what: every bridge, admin and pauser entry point refuses the other keys, and the
coin only obeys its vault. Also checks the deploy result (roles, coin link, metadata)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from tokenbridge.adapters.chain.artifacts import artifact_hashes, load_artifact
from tokenbridge.adapters.chain.deploy import Deployment, VaultParams, deploy
from tokenbridge.adapters.chain.vault import (
    BRIDGE_ROLE,
    DEFAULT_ADMIN_ROLE,
    PAUSER_ROLE,
    PayoutItem,
    VaultClient,
    send_transaction,
)

if TYPE_CHECKING:
    from tests.contracts.conftest import Chain

pytestmark = pytest.mark.chain

Z32 = b"\x00" * 32


def test_deploy_assigns_each_role_to_its_key_only(chain: Chain) -> None:
    vault, a = chain.vault, chain.actors
    assert vault.has_role("admin", a.admin.address)
    assert vault.has_role("bridge", a.bridge.address)
    assert vault.has_role("pauser", a.pauser.address)
    for role in ("admin", "bridge", "pauser"):
        assert not vault.has_role(role, a.deployer.address)
        assert not vault.has_role(role, a.stranger.address)
    assert not vault.has_role("admin", a.bridge.address)
    assert not vault.has_role("bridge", a.admin.address)
    assert not vault.has_role("pauser", a.admin.address)


def test_deploy_links_coin_and_records_metadata(chain: Chain) -> None:
    vault, d = chain.vault, chain.deployment
    assert vault.coin.functions.vault().call() == vault.address
    assert vault.coin.functions.decimals().call() == 6
    assert vault.coin.functions.symbol().call() == "CREATOR"
    p = chain.params
    assert vault.creator_bps() == p.creator_bps
    assert vault.split_delay() == p.split_delay
    assert vault.payout_delay() == p.payout_delay
    assert d.coin == vault.coin_address
    assert d.chain_id == chain.w3.eth.chain_id
    receipt = chain.w3.eth.get_transaction_receipt(d.tx_hashes["CoinVault"])
    assert receipt["blockNumber"] == d.deploy_block
    assert receipt["contractAddress"] == d.vault
    assert d.artifact_hashes == artifact_hashes()
    assert Deployment.from_json(d.to_json()) == d


def _bridge_calls(vault: VaultClient, to: str) -> dict[str, Callable[[Any], Any]]:
    k = os.urandom(32)
    return {
        "mintForRecharges": lambda acct: vault.mint_for_recharges(1, 1, Z32, 1, account=acct),
        "settleGifts": lambda acct: vault.settle_gifts(1, 0, Z32, 1, 10, [k], [10], account=acct),
        "payout": lambda acct: vault.payout([PayoutItem(1, k, to, 1)], account=acct),
        "burnForRefunds": lambda acct: vault.burn_for_refunds(1, 1, account=acct),
        "commitLiabilities": lambda acct: vault.commit_liabilities(1, Z32, 0, account=acct),
    }


def _admin_calls(vault: VaultClient, to: str) -> dict[str, Callable[[Any], Any]]:
    return {
        "proposeCreatorBps": lambda acct: vault.propose_creator_bps(5000, account=acct),
        "applyCreatorBps": lambda acct: vault.apply_creator_bps(account=acct),
        "cancelCreatorBps": lambda acct: vault.cancel_creator_bps(account=acct),
        "setPayoutDelay": lambda acct: vault.set_payout_delay(0, account=acct),
        "setMintLimit": lambda acct: vault.set_mint_limit(10**20, 60, account=acct),
        "setPayoutLimit": lambda acct: vault.set_payout_limit(10**20, 60, account=acct),
        "voidCredit": lambda acct: vault.void_credit(os.urandom(32), 1, account=acct),
        "voidPlatformCredit": lambda acct: vault.void_platform_credit(1, account=acct),
        "payoutPlatform": lambda acct: vault.payout_platform(to, 1, account=acct),
        "unpause": lambda acct: vault.unpause(account=acct),
        "unpauseCoin": lambda acct: vault.unpause_coin(account=acct),
        "grantRole": lambda acct: vault.grant_role("bridge", to, account=acct),
        "revokeRole": lambda acct: vault.revoke_role("bridge", to, account=acct),
    }


BRIDGE_FNS = ["mintForRecharges", "settleGifts", "payout", "burnForRefunds", "commitLiabilities"]
ADMIN_FNS = [
    "proposeCreatorBps",
    "applyCreatorBps",
    "cancelCreatorBps",
    "setPayoutDelay",
    "setMintLimit",
    "setPayoutLimit",
    "voidCredit",
    "voidPlatformCredit",
    "payoutPlatform",
    "unpause",
    "unpauseCoin",
    "grantRole",
    "revokeRole",
]


@pytest.mark.parametrize("fn", BRIDGE_FNS)
@pytest.mark.parametrize("who", ["admin", "pauser", "stranger"])
def test_bridge_functions_refuse_other_keys(chain: Chain, fn: str, who: str) -> None:
    caller = getattr(chain.actors, who)
    call = _bridge_calls(chain.vault, chain.actors.alice.address)[fn]
    args = chain.reverts("AccessControlUnauthorizedAccount", call, caller)
    assert args == (caller.address.lower(), BRIDGE_ROLE)


@pytest.mark.parametrize("fn", ADMIN_FNS)
@pytest.mark.parametrize("who", ["bridge", "pauser", "stranger"])
def test_admin_functions_refuse_other_keys(chain: Chain, fn: str, who: str) -> None:
    caller = getattr(chain.actors, who)
    call = _admin_calls(chain.vault, chain.actors.alice.address)[fn]
    args = chain.reverts("AccessControlUnauthorizedAccount", call, caller)
    assert args == (caller.address.lower(), DEFAULT_ADMIN_ROLE)


@pytest.mark.parametrize("fn", ["pause", "pauseCoin"])
@pytest.mark.parametrize("who", ["admin", "bridge", "stranger"])
def test_pause_functions_refuse_other_keys(chain: Chain, fn: str, who: str) -> None:
    caller = getattr(chain.actors, who)
    call = chain.vault.pause if fn == "pause" else chain.vault.pause_coin
    args = chain.reverts("AccessControlUnauthorizedAccount", call, account=caller)
    assert args == (caller.address.lower(), PAUSER_ROLE)


@pytest.mark.parametrize("fn", ["mint", "burn", "pause", "unpause", "vaultTransferBatch"])
def test_coin_obeys_only_its_vault(chain: Chain, fn: str) -> None:
    vault, a = chain.vault, chain.actors
    args: dict[str, list[Any]] = {
        "mint": [a.stranger.address, 1],
        "burn": [1],
        "pause": [],
        "unpause": [],
        "vaultTransferBatch": [[a.stranger.address], [1]],
    }
    for caller in (a.admin, a.bridge, a.pauser, a.stranger):
        reverted = chain.reverts(
            "CreatorCoinUnauthorized", vault._send, fn, *args[fn], account=caller, contract=vault.coin
        )
        assert reverted == (caller.address.lower(),)
    assert vault.total_supply() == 0


def test_admin_rotates_the_bridge_key(chain: Chain) -> None:
    vault, a = chain.vault, chain.actors
    new_bridge = a.bob
    vault.grant_role("bridge", new_bridge.address, account=a.admin)
    vault.revoke_role("bridge", a.bridge.address, account=a.admin)
    chain.reverts("AccessControlUnauthorizedAccount", vault.mint_for_recharges, 7, 100, Z32, 1)
    vault.mint_for_recharges(7, 100, Z32, 1, account=new_bridge)
    assert vault.reserve() == 100
    assert vault.is_minted(7)


@pytest.mark.parametrize(
    ("overrides", "error", "args"),
    [
        ({"creator_bps": 10_000}, None, None),
        ({"mint_limit": 2**96}, "CoinVaultInvalidLimit", (2**96, 2**96 - 1)),
        ({"payout_limit": 2**200}, "CoinVaultInvalidLimit", (2**200, 2**96 - 1)),
        ({"mint_period": 0}, "CoinVaultInvalidPeriod", (0,)),
        ({"payout_period": 2**24}, "CoinVaultInvalidPeriod", (2**24,)),
    ],
)
def test_constructor_validates_parameters(
    chain: Chain, overrides: dict[str, int], error: str | None, args: Any
) -> None:
    params = dataclasses.replace(VaultParams(), **overrides)
    a = chain.actors
    if error is None:
        d = deploy(chain.w3, a.deployer, a.admin.address, a.bridge.address, a.pauser.address, params)
        assert VaultClient(chain.w3, d.vault).creator_bps() == 10_000
    else:
        assert (
            chain.reverts(
                error, deploy, chain.w3, a.deployer, a.admin.address, a.bridge.address, a.pauser.address, params
            )
            == args
        )


def test_constructor_refuses_bps_above_10000_and_zero_addresses(chain: Chain) -> None:
    a = chain.actors
    factory = chain.w3.eth.contract(abi=chain.vault.vault.abi, bytecode=load_artifact("CoinVault").bytecode)
    bad_bps = (*VaultParams().as_tuple()[:2], 10_001, *VaultParams().as_tuple()[3:])
    data = factory.constructor(a.admin.address, a.bridge.address, a.pauser.address, bad_bps).data_in_transaction
    assert chain.reverts("CoinVaultInvalidBps", send_transaction, chain.w3, a.deployer, {"data": data}, "deploy") == (
        10_001,
    )
    zero = "0x" + "00" * 20
    for roles in ((zero, a.bridge.address, a.pauser.address), (a.admin.address, zero, a.pauser.address)):
        data = factory.constructor(*roles, VaultParams().as_tuple()).data_in_transaction
        chain.reverts("CoinVaultZeroAddress", send_transaction, chain.w3, a.deployer, {"data": data}, "deploy")


def test_renounced_admin_cannot_act_again(chain: Chain) -> None:
    vault, a = chain.vault, chain.actors
    vault._send("renounceRole", DEFAULT_ADMIN_ROLE, a.admin.address, account=a.admin)
    chain.reverts("AccessControlUnauthorizedAccount", vault.propose_creator_bps, 1, account=a.admin)
    assert not vault.has_role("admin", a.admin.address)


def test_constructor_refuses_zero_maturity_granularity(chain: Chain) -> None:
    a = chain.actors
    factory = chain.w3.eth.contract(abi=chain.vault.vault.abi, bytecode=load_artifact("CoinVault").bytecode)
    params = VaultParams().as_tuple()
    zero_g = (*params[:5], 0, *params[6:])
    data = factory.constructor(a.admin.address, a.bridge.address, a.pauser.address, zero_g).data_in_transaction
    assert chain.reverts(
        "CoinVaultInvalidGranularity", send_transaction, chain.w3, a.deployer, {"data": data}, "deploy"
    ) == (0,)
    with pytest.raises(ValueError, match="maturity_granularity"):
        dataclasses.replace(VaultParams(), maturity_granularity=0).as_tuple()


def test_an_unreachable_node_is_a_chain_error_not_a_crash() -> None:
    """A read against a dead RPC becomes ChainError (API: 502 problem), never a raw transport error."""
    from web3 import Web3

    from tokenbridge.adapters.chain.devnet import free_port
    from tokenbridge.adapters.chain.vault import VaultClient
    from tokenbridge.domain.errors import ChainError

    dead = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    client = VaultClient(dead, "0x" + "11" * 20)
    with pytest.raises(ChainError, match="unreachable"):
        client.creator_bps()
