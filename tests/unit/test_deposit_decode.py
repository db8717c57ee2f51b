"""Decoding `Deposited` logs from the node's JSON-RPC hex (no web3 formatting), and the
eth_getLogs range that scales down when a response holds too many logs."""

from __future__ import annotations

import gc
import threading

import pytest
from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes

from tokenbridge.adapters.chain.indexer import DEPOSITED_TOPIC, AdaptiveRange, decode_deposit
from tokenbridge.domain.errors import ChainError
from tokenbridge.gc_pause import GcPause, gc_paused

KEY = "0x" + "3c" * 32
SENDER = "0x" + "ab" * 19 + "cd"
TX = "0x" + "12" * 32
BLOCK = "0x" + "9f" * 32


def raw_log(amount: int = 1_234_567, **overrides: object) -> dict[str, object]:
    """An eth_getLogs entry exactly as the node sends it (JSON: hex strings)."""
    entry: dict[str, object] = {
        "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
        "topics": [DEPOSITED_TOPIC, KEY, "0x" + "00" * 12 + SENDER[2:]],
        "data": "0x" + encode(["uint256"], [amount]).hex(),
        "blockNumber": "0x1a4",
        "transactionHash": TX.upper().replace("0X", "0x"),
        "transactionIndex": "0x0",
        "blockHash": BLOCK,
        "logIndex": "0x11",
        "removed": False,
    }
    entry.update(overrides)
    return entry


def test_json_rpc_log_is_decoded_by_slicing_the_hex() -> None:
    d = decode_deposit(raw_log())
    assert (d.tx_hash, d.log_index, d.block_number, d.block_hash) == (TX, 17, 420, BLOCK)
    assert d.account_key == KEY
    assert d.sender == to_checksum_address(SENDER)
    assert d.amount == 1_234_567


def test_web3_formatted_log_decodes_to_the_same() -> None:
    raw = raw_log(amount=2**63 + 5)
    formatted = {
        **raw,
        "topics": [HexBytes(t) for t in raw["topics"]],  # type: ignore[attr-defined]
        "data": HexBytes(str(raw["data"])),
        "blockNumber": 420,
        "logIndex": 17,
        "transactionHash": HexBytes(TX),
        "blockHash": HexBytes(BLOCK),
    }
    assert decode_deposit(formatted) == decode_deposit(raw)
    assert decode_deposit(raw).amount == 2**63 + 5  # no silent truncation: the service refuses it


def test_other_events_and_short_data_are_refused() -> None:
    with pytest.raises(ChainError):
        decode_deposit(raw_log(topics=["0x" + "00" * 32, KEY, "0x" + "00" * 32]))
    with pytest.raises(ChainError):
        decode_deposit(raw_log(topics=[DEPOSITED_TOPIC, KEY]))
    with pytest.raises(ChainError):
        decode_deposit(raw_log(data="0x1234"))


def test_range_scales_down_after_a_dense_answer_and_grows_back() -> None:
    span = AdaptiveRange(2_000)
    span.fit(20_000, 5_000)  # 2,000 blocks held 20,000 logs: the next range should hold ~5,000
    assert span.size == 500
    span.fit(100, 5_000)
    assert span.size == 1_000
    span.fit(10**9, 5_000)
    assert span.size == 1  # never below one block
    span.fit(5_000, None)  # no cap: plain doubling
    assert span.size == 2


def test_gc_pause_nests_across_threads_and_restores_the_collector() -> None:
    assert gc.isenabled()
    inner_started, release = threading.Event(), threading.Event()

    def reader() -> None:  # the read-ahead thread pausing while the main thread does too
        with gc_paused():
            inner_started.set()
            release.wait(5)

    thread = threading.Thread(target=reader)
    with gc_paused():
        assert not gc.isenabled()
        thread.start()
        inner_started.wait(5)
    assert not gc.isenabled()  # the other thread still holds its pause
    release.set()
    thread.join(5)
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("a failed read")
    assert gc.isenabled()


def test_gc_pause_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_gc_pauses_still_collect_a_backlog_of_cycles() -> None:
    """Pauses that never all close at once (concurrent batches back to back) must not let
    cyclic garbage grow without bound: an exit that leaves another pause open collects once
    more than `backlog` objects are waiting."""
    import weakref

    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the cyclic collector frees it

    pause = GcPause(backlog=5_000)
    with pause():  # held open throughout, as a long batch beside the others
        canary = Node()
        ref = weakref.ref(canary)
        del canary
        for _ in range(20):
            with pause():
                junk = [Node() for _ in range(1_000)]
                del junk
        assert not gc.isenabled()
        assert ref() is None  # collected although a pause was open the whole time
    assert gc.isenabled()
    small = GcPause(backlog=10**9)
    with small():
        canary = Node()
        ref = weakref.ref(canary)
        del canary
        with small():
            pass
        assert ref() is not None  # under the backlog: left for after the pause
    gc.collect()
    assert ref() is None
