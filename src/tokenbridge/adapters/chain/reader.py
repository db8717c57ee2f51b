"""Read-only vault views for verifiers (`tokenbridge.services.verify.ChainReader` over web3).

Only `eth_chainId`, `eth_getCode` and `eth_call`: no key, no transaction, no tokenbridge API.
Every node failure becomes a one-line `ChainError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from eth_utils.address import to_checksum_address
from web3 import Web3

from tokenbridge.adapters.chain.artifacts import load_artifact
from tokenbridge.domain.errors import ChainError, InvalidInput
from tokenbridge.domain.merkle import GiftLeaf
from tokenbridge.domain.merkle_sum import LiabilityProof
from tokenbridge.services.verify import EpochView, LiabilitiesView

T = TypeVar("T")


def _guard(action: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except Exception as exc:  # requests/web3 raise many unrelated types; the verifier needs one line
        raise ChainError(f"{action} failed: {type(exc).__name__}: {str(exc)[:200]}") from None


def connect(rpc_url: str, timeout: float = 20.0) -> Web3:
    """A Web3 over HTTP(S) that answered `eth_chainId`; InvalidInput for a non-HTTP URL, ChainError
    when the node does not answer."""
    if not rpc_url.startswith(("http://", "https://")):
        raise InvalidInput(f"RPC URL must start with http:// or https://, got {rpc_url!r}")
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    try:
        w3.eth.chain_id  # noqa: B018 (the probe)
    except Exception as exc:  # unreachable node: connection refused, DNS, timeout, HTTP error
        raise ChainError(f"cannot reach an Ethereum node at {rpc_url}: {type(exc).__name__}") from None
    return w3


class Web3ChainReader:
    """`ChainReader` for one vault on one node."""

    def __init__(self, w3: Web3, vault: str) -> None:
        try:
            checksum = to_checksum_address(vault)
        except ValueError:
            raise InvalidInput(f"vault {vault!r} is not an Ethereum address") from None
        self.vault: str = str(checksum)
        self.w3 = w3
        self._contract: Any = w3.eth.contract(address=checksum, abi=load_artifact("CoinVault").abi)

    @classmethod
    def connect(cls, rpc_url: str, vault: str, timeout: float = 20.0) -> Web3ChainReader:
        """A reader over HTTP(S); ChainError when the node does not answer `eth_chainId`."""
        return cls(connect(rpc_url, timeout), vault)

    def _view(self, fn: str, *args: Any) -> Any:
        return _guard(f"{fn}()", lambda: getattr(self._contract.functions, fn)(*args).call())

    def chain_id(self) -> int:
        return int(_guard("eth_chainId", lambda: self.w3.eth.chain_id))

    def vault_has_code(self) -> bool:
        return len(_guard("eth_getCode", lambda: self.w3.eth.get_code(self.vault))) > 0  # type: ignore[arg-type]

    def epoch(self, epoch_id: int) -> EpochView:
        root, count, gross_total, _settled_gross, bps, settled_at, _chunks = self._view("epoch", epoch_id)
        return EpochView(bytes(root), int(count), int(gross_total), int(bps), int(settled_at))

    def verify_gift(self, epoch_id: int, leaf: GiftLeaf, proof: Sequence[bytes]) -> bool:
        return bool(self._view("verifyGift", epoch_id, *leaf.values(), list(proof)))

    def liabilities(self, epoch_id: int) -> LiabilitiesView:
        root, total, committed_at = self._view("liabilities", epoch_id)
        return LiabilitiesView(epoch_id, bytes(root), int(total), int(committed_at))

    def latest_liabilities(self) -> LiabilitiesView:
        epoch_id, root, total, committed_at = self._view("latestLiabilities")
        return LiabilitiesView(int(epoch_id), bytes(root), int(total), int(committed_at))

    def verify_liability(self, epoch_id: int, proof: LiabilityProof) -> bool:
        return bool(
            self._view(
                "verifyLiability",
                epoch_id,
                proof.account_key,
                proof.balance,
                proof.index,
                list(proof.sibling_hashes),
                list(proof.sibling_sums),
            )
        )

    def reserve(self) -> int:
        return int(self._view("reserve"))

    def solvent(self) -> bool:
        return bool(self._view("solvent"))
