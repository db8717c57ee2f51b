"""Fixtures shared by every test package: a real anvil node per session (free port,
killed by pid) and a snapshot/revert per test so chain tests stay isolated and fast."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tokenbridge.adapters.chain.devnet import Anvil, start_anvil


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def chain_snapshot(anvil: Anvil) -> Iterator[Anvil]:
    """Revert every chain change a test makes (evm_snapshot / evm_revert)."""
    snapshot = anvil.rpc("evm_snapshot")
    try:
        yield anvil
    finally:
        anvil.rpc("evm_revert", snapshot)
