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
HOUR = 3_600
# Production maturity granularity G (CoinVault.maturityGranularity): credits of one hour share a maturity
# time, so a credit waits between payoutDelay and payoutDelay + 1 h - 1 s.
DEFAULT_MATURITY_GRANULARITY = HOUR
# Below this payout delay the auto granularity is 1 s (devnet, demos, tests: maturity exactly payoutDelay
# after settlement, as before); 2**16 s so the 16-bit bucket gap never saturates at that delay.
EXACT_MATURITY_BELOW = 2**16


def auto_maturity_granularity(payout_delay: int) -> int:
    """G when none is given: 1 s for short (devnet/test) delays, `DEFAULT_MATURITY_GRANULARITY` otherwise."""
    return 1 if payout_delay < EXACT_MATURITY_BELOW else DEFAULT_MATURITY_GRANULARITY


@dataclass(frozen=True, slots=True)
class VaultParams:
    """Constructor parameters of CoinVault (see ICoinVault.InitParams). Amounts in base units."""

    name: str = "Creator Coin"
    symbol: str = "CREATOR"
    creator_bps: int = 8_000
    split_delay: int = DAY
    payout_delay: int = DAY
    # None: `auto_maturity_granularity(payout_delay)`, i.e. 3600 s for the production delay of a day and 1 s
    # for devnet/test delays; resolved at construction, so `maturity_granularity` is always an int afterwards.
    maturity_granularity: int | None = None
    mint_limit: int = 10**15  # 1e9 coins per period
    mint_period: int = DAY
    payout_limit: int = 10**14  # 1e8 coins per period
    payout_period: int = DAY

    def __post_init__(self) -> None:
        if self.maturity_granularity is None:
            object.__setattr__(self, "maturity_granularity", auto_maturity_granularity(self.payout_delay))

    @property
    def granularity(self) -> int:
        """The resolved maturity granularity G in seconds."""
        g = self.maturity_granularity
        return auto_maturity_granularity(self.payout_delay) if g is None else g

    def as_tuple(self) -> tuple[Any, ...]:
        """The InitParams struct as an ABI tuple."""
        validate_bps(self.creator_bps)
        if not 1 <= self.granularity < 2**32:
            raise ValueError(f"maturity_granularity must be in [1, 2**32), got {self.granularity}")
        return (
            self.name,
            self.symbol,
            self.creator_bps,
            self.split_delay,
            self.payout_delay,
            self.granularity,
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
