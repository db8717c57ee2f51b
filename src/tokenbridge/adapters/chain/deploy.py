"""Deploy CoinVault (which deploys its CreatorCoin) from the committed artifacts.

`deploy()` returns a `Deployment`: addresses, deploy block, transaction hashes, artifact hashes
and chain id, serialisable with `to_json()` / `Deployment.from_json()` so the CLI can write it to
a file that the API, worker and verifiers read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3

from tokenbridge.adapters.chain.artifacts import artifact_hashes, load_artifact
from tokenbridge.adapters.chain.vault import VaultClient, send_transaction
from tokenbridge.domain.errors import ChainError
from tokenbridge.domain.split import validate_bps

DAY = 86_400


@dataclass(frozen=True, slots=True)
class VaultParams:
    """Constructor parameters of CoinVault (see ICoinVault.InitParams). Amounts in base units."""

    name: str = "Creator Coin"
    symbol: str = "CREATOR"
    creator_bps: int = 8_000
    split_delay: int = DAY
    payout_delay: int = DAY
    mint_limit: int = 10**15  # 1e9 coins per period
    mint_period: int = DAY
    payout_limit: int = 10**14  # 1e8 coins per period
    payout_period: int = DAY

    def as_tuple(self) -> tuple[Any, ...]:
        """The InitParams struct as an ABI tuple."""
        validate_bps(self.creator_bps)
        return (
            self.name,
            self.symbol,
            self.creator_bps,
            self.split_delay,
            self.payout_delay,
            self.mint_limit,
            self.mint_period,
            self.payout_limit,
            self.payout_period,
        )


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where the contracts live and how they got there."""

    chain_id: int
    vault: str
    coin: str
    admin: str
    bridge: str
    pauser: str
    deployer: str
    deploy_block: int
    tx_hashes: dict[str, str]
    artifact_hashes: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Stable JSON text (sorted keys) of this deployment."""
        return json.dumps(asdict(self), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        """Parse what `to_json` wrote."""
        return cls(**json.loads(text))


def deploy(
    w3: Web3,
    deployer_account: Any,
    admin: str,
    bridge: str,
    pauser: str,
    params: VaultParams | None = None,
) -> Deployment:
    """Deploy CoinVault + CreatorCoin signed by `deployer_account` (an eth-account LocalAccount).

    The roles go to `admin`, `bridge` and `pauser`; the deployer keeps none. Checks that the roles
    and the coin link are in place before returning.
    """
    params = params or VaultParams()
    artifact = load_artifact("CoinVault")
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    admin, bridge, pauser = (to_checksum_address(a) for a in (admin, bridge, pauser))
    data = factory.constructor(admin, bridge, pauser, params.as_tuple()).data_in_transaction
    tx_hash, receipt = send_transaction(w3, deployer_account, {"data": data}, "deploy CoinVault")
    vault_address = receipt.get("contractAddress")
    if not vault_address:
        raise ChainError(f"deploy CoinVault: no contract address in receipt of {tx_hash}")
    client = VaultClient(w3, vault_address)
    for role, holder in (("admin", admin), ("bridge", bridge), ("pauser", pauser)):
        if not client.has_role(role, holder):
            raise ChainError(f"deploy CoinVault: {role} role not held by {holder}")
    return Deployment(
        chain_id=int(w3.eth.chain_id),
        vault=client.address,
        coin=client.coin_address,
        admin=admin,
        bridge=bridge,
        pauser=pauser,
        deployer=to_checksum_address(deployer_account.address),
        deploy_block=int(receipt["blockNumber"]),
        tx_hashes={"CoinVault": tx_hash, "CreatorCoin": tx_hash},
        artifact_hashes=artifact_hashes(),
        params=asdict(params),
    )
