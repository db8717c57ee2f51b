"""`read_ahead`: the next eth_getLogs chunk is read in a thread while the current one is
stored, without changing what the caller sees (order, errors, when reading stops)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing

import pytest

from tokenbridge.adapters.chain.indexer import ChainMoved, Chunk, read_ahead


def chunk(n: int) -> Chunk:
    return Chunk(n, n, f"0x{n:064x}", ())


def test_chunks_arrive_in_order_and_the_next_is_read_meanwhile() -> None:
    reads: list[int] = []
    may_read_2 = threading.Event()

    def source() -> Iterator[Chunk]:
        for n in range(4):
            if n == 2:
                assert may_read_2.wait(5)
            reads.append(n)
            yield chunk(n)

    got = []
    for c in read_ahead(source()):
        got.append(c.from_block)
        if c.from_block == 1:
            may_read_2.set()  # chunk 2 is read while chunk 1 is in use
    assert got == [0, 1, 2, 3]
    assert reads == [0, 1, 2, 3]


def test_an_error_reading_the_next_chunk_comes_after_this_one_is_used() -> None:
    def source() -> Iterator[Chunk]:
        yield chunk(0)
        raise ChainMoved("block 1 changed while reading")

    ahead = read_ahead(source())
    assert next(ahead).from_block == 0
    with pytest.raises(ChainMoved):
        next(ahead)


def test_closing_stops_reading_after_the_chunk_in_flight() -> None:
    reads: list[int] = []

    def source() -> Iterator[Chunk]:
        for n in range(100):
            reads.append(n)
            yield chunk(n)

    with closing(read_ahead(source())) as ahead:
        for c in ahead:
            if c.from_block == 2:
                break
    assert reads == [0, 1, 2, 3]  # chunk 3 was being read ahead; nothing after it
