"""Load the committed contract artifacts (ABI + bytecode) at run time.

The JSON files under `artifacts/` are produced by `scripts/compile_contracts.py` and shipped as
package data, so neither node nor a Solidity compiler is needed to deploy or talk to the vault.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from tokenbridge.domain.errors import ConfigurationError

CONTRACT_NAMES: tuple[str, ...] = ("CoinVault", "CreatorCoin")


@dataclass(frozen=True, slots=True)
class Artifact:
    """One compiled contract as committed: ABI, creation and runtime bytecode, and provenance."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    settings: dict[str, Any]
    source_hashes: dict[str, str]
    sha256: str  # of the artifact file's bytes, recorded by deployments


@cache
def load_artifact(name: str) -> Artifact:
    """Return the artifact of contract `name` ("CoinVault" or "CreatorCoin"); cached."""
    if name not in CONTRACT_NAMES:
        raise ConfigurationError(f"unknown contract artifact {name!r}; expected one of {CONTRACT_NAMES}")
    resource = resources.files("tokenbridge.adapters.chain").joinpath("artifacts", f"{name}.json")
    try:
        raw = resource.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigurationError(f"artifact {name}.json missing: run `make compile`") from exc
    data = json.loads(raw)
    return Artifact(
        name=name,
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler_version=data["compiler"]["version"],
        settings=data["settings"],
        source_hashes=data["sourceHashes"],
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def artifact_hashes() -> dict[str, str]:
    """sha256 of every committed artifact file, by contract name."""
    return {name: load_artifact(name).sha256 for name in CONTRACT_NAMES}


def combined_error_abi() -> list[dict[str, Any]]:
    """The custom-error ABI entries of all contracts (vault, coin and inherited OpenZeppelin errors)."""
    seen: dict[str, dict[str, Any]] = {}
    for name in CONTRACT_NAMES:
        for entry in load_artifact(name).abi:
            if entry.get("type") == "error":
                signature = entry["name"] + "(" + ",".join(_abi_type(i) for i in entry["inputs"]) + ")"
                seen.setdefault(signature, entry)
    return [seen[k] for k in sorted(seen)]


def _abi_type(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + kind[len("tuple") :]
    return kind
