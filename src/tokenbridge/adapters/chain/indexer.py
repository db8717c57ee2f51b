"""Read the vault's `Deposited` logs from a node: block ranges that adapt to the provider's
limits, reads that are consistent with one chain, and the block-hash checks that notice a
reorganisation.

The node is reached through a `DepositSource` (a `Web3DepositSource` in production; tests
wrap it to play a provider with tight limits). Nothing here touches the database:
`services/deposits.py` stores what is read and decides what a reorganisation means.

Rules:
* `eth_getLogs` over [a, b]; when the node refuses the range (too many results, range too
  wide, response too large, timeout) the range is halved and retried, down to one block;
  after a success it grows back (doubling) up to `max_size`.
* A chunk counts only if the chain did not move under it: the hash of its last block is read
  before and after the logs, and the previous cursor's hash after, and all must agree. A
  chain that moved is simply read again on the next pass.
* Fork location: the highest stored (number, hash) checkpoint that is still on the chain;
  everything above it is read again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import requests
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import BlockNotFound, Web3Exception, Web3RPCError

from tokenbridge.domain.errors import ChainError, LogRangeTooLarge

log = logging.getLogger(__name__)

DEPOSITED_TOPIC = "0x" + bytes(keccak(text="Deposited(bytes32,address,uint256)")).hex()

# Substrings of the errors providers return for an eth_getLogs range they will not serve
# (geth "query returned more than 10000 results", Alchemy/Infura "block range too large",
# "exceed maximum block range", "Log response size exceeded", anvil/erigon "limit", ...).
_RANGE_ERROR_MARKERS = (
    "more than",
    "too many",
    "too large",
    "range",
    "limit",
    "exceed",
    "response size",
    "timeout",
    "timed out",
)


@dataclass(frozen=True, slots=True)
class DepositLog:
    """One `Deposited(accountKey, from, amount)` log."""

    tx_hash: str  # 0x lowercase
    log_index: int
    block_number: int
    block_hash: str  # 0x lowercase
    account_key: str  # 0x lowercase bytes32
    sender: str  # checksummed
    amount: int


class DepositSource(Protocol):
    """What the indexer needs from a node."""

    def chain_id(self) -> int: ...

    def head(self) -> int: ...

    def block_hash(self, number: int) -> str | None:
        """Hash of block `number` on the node's chain now; None above the head."""
        ...

    def deposit_logs(self, from_block: int, to_block: int) -> list[DepositLog]:
        """Deposited logs in [from_block, to_block]; LogRangeTooLarge when the node refuses the range."""
        ...


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


def is_range_error(exc: BaseException) -> bool:
    """Whether a failed eth_getLogs means "ask for less" rather than "the node is unwell"."""
    if isinstance(exc, requests.exceptions.Timeout | TimeoutError):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        return False
    message = str(exc)
    if isinstance(exc, Web3RPCError):
        response = exc.rpc_response or {}
        error = response.get("error") if isinstance(response, dict) else None
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
    lowered = message.lower()
    return any(marker in lowered for marker in _RANGE_ERROR_MARKERS)


def decode_deposit(raw: Any) -> DepositLog:
    """A raw `eth_getLogs` entry of the vault's Deposited event as a DepositLog."""
    topics = raw["topics"]
    if len(topics) != 3 or _hex(topics[0]) != DEPOSITED_TOPIC:
        raise ChainError(f"not a Deposited log: {raw!r}"[:300])
    data = raw["data"]
    data_bytes = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
    sender_topic = _hex(topics[2])
    return DepositLog(
        tx_hash=_hex(raw["transactionHash"]),
        log_index=int(raw["logIndex"]),
        block_number=int(raw["blockNumber"]),
        block_hash=_hex(raw["blockHash"]),
        account_key=_hex(topics[1]),
        sender=to_checksum_address("0x" + sender_topic[-40:]),
        amount=int.from_bytes(data_bytes[:32], "big"),
    )


class Web3DepositSource:
    """A `DepositSource` over web3.py for one vault address."""

    def __init__(self, w3: Web3, vault_address: str) -> None:
        self.w3 = w3
        self.vault = to_checksum_address(vault_address)

    def chain_id(self) -> int:
        try:
            return int(self.w3.eth.chain_id)
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainError(f"eth_chainId failed: {type(exc).__name__}: {exc}") from exc

    def head(self) -> int:
        try:
            return int(self.w3.eth.block_number)
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainError(f"eth_blockNumber failed: {type(exc).__name__}: {exc}") from exc

    def block_hash(self, number: int) -> str | None:
        try:
            block = self.w3.eth.get_block(number)
        except BlockNotFound:
            return None
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainError(f"eth_getBlockByNumber {number} failed: {type(exc).__name__}: {exc}") from exc
        if block is None:
            return None
        return _hex(block["hash"])

    def deposit_logs(self, from_block: int, to_block: int) -> list[DepositLog]:
        params = {
            "address": self.vault,
            "topics": [DEPOSITED_TOPIC],
            "fromBlock": from_block,
            "toBlock": to_block,
        }
        try:
            raw = self.w3.eth.get_logs(cast(Any, params))
        except (Web3Exception, OSError, ValueError) as exc:
            detail = f"eth_getLogs [{from_block}, {to_block}] failed: {type(exc).__name__}: {exc}"
            if is_range_error(exc):
                raise LogRangeTooLarge(detail) from exc
            raise ChainError(detail) from exc
        return [decode_deposit(entry) for entry in raw if not entry.get("removed", False)]


class AdaptiveRange:
    """The eth_getLogs block span: halved on refusal, doubled back on success, in [1, max_size]."""

    def __init__(self, max_size: int, size: int | None = None) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.max_size = max_size
        self.size = max(1, min(max_size, size if size is not None else max_size))

    def shrink(self) -> bool:
        """Halve; False when already one block (nothing smaller to try)."""
        if self.size <= 1:
            return False
        self.size = max(1, self.size // 2)
        return True

    def grow(self) -> None:
        self.size = min(self.max_size, self.size * 2)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Logs of [from_block, to_block], read while `to_block` had hash `to_hash`."""

    from_block: int
    to_block: int
    to_hash: str
    logs: tuple[DepositLog, ...]

    def block_hashes(self) -> dict[int, str]:
        """Checkpoints this chunk proves: its last block and every block holding a deposit."""
        out = {log.block_number: log.block_hash for log in self.logs}
        out[self.to_block] = self.to_hash
        return out


class ChainMoved(Exception):
    """The chain changed while a chunk was read; the caller re-checks for a reorg and reads again."""


def read_chunk(source: DepositSource, from_block: int, to_block: int, cursor: tuple[int, str] | None) -> Chunk:
    """Read one range consistently with a single chain (see the module rules)."""
    before = source.block_hash(to_block)
    logs = source.deposit_logs(from_block, to_block)
    after = source.block_hash(to_block)
    if before is None or before != after:
        raise ChainMoved(f"block {to_block} changed while reading [{from_block}, {to_block}]")
    if cursor is not None and source.block_hash(cursor[0]) != cursor[1]:
        raise ChainMoved(f"cursor block {cursor[0]} changed while reading [{from_block}, {to_block}]")
    for entry in logs:
        if entry.block_number == to_block and entry.block_hash != after:
            raise ChainMoved(f"log of block {to_block} has hash {entry.block_hash}, the chain {after}")
        if not from_block <= entry.block_number <= to_block:
            raise ChainError(f"node returned a log of block {entry.block_number} outside [{from_block}, {to_block}]")
    return Chunk(from_block, to_block, after, tuple(sorted(logs, key=lambda d: (d.block_number, d.log_index))))


def scan(
    source: DepositSource,
    span: AdaptiveRange,
    from_block: int,
    to_block: int,
    cursor: tuple[int, str] | None,
    max_chunks: int = 50,
) -> Iterator[Chunk]:
    """Yield consecutive chunks covering [from_block, to_block] (at most `max_chunks` of them).

    The caller stores each chunk before asking for the next; `cursor` is the (number, hash)
    the first chunk continues from. Raises LogRangeTooLarge when even one block is refused.
    """
    start = from_block
    done = 0
    while start <= to_block and done < max_chunks:
        end = min(to_block, start + span.size - 1)
        try:
            chunk = read_chunk(source, start, end, cursor)
        except LogRangeTooLarge:
            if not span.shrink():
                raise
            log.info("eth_getLogs refused [%d, %d]; range now %d blocks", start, end, span.size)
            continue
        span.grow()
        yield chunk
        cursor = (chunk.to_block, chunk.to_hash)
        start = end + 1
        done += 1


def find_fork(source: DepositSource, stored_desc: Sequence[tuple[int, str]]) -> int | None:
    """The highest stored checkpoint still on the node's chain (stored_desc is number-descending)."""
    for number, block_hash in stored_desc:
        if source.block_hash(number) == block_hash:
            return number
    return None
