"""A dedicated anvil for the fault tests: they switch automine off and push the base fee up,
which must not leak into the session node other tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tokenbridge.adapters.chain.devnet import Anvil, start_anvil


@pytest.fixture(scope="module")
def tx_fault_anvil() -> Iterator[Anvil]:
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def tx_node(tx_fault_anvil: Anvil) -> Iterator[Anvil]:
    """The fault node with automine on and a 1 gwei base fee at the start of each test."""
    tx_fault_anvil.rpc("evm_setAutomine", True)
    tx_fault_anvil.rpc("anvil_setNextBlockBaseFeePerGas", hex(10**9))
    tx_fault_anvil.rpc("evm_mine")
    try:
        yield tx_fault_anvil
    finally:
        tx_fault_anvil.rpc("evm_setAutomine", True)
