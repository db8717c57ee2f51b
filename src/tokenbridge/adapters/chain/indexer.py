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
import re
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple, Protocol, cast

import requests
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import Web3Exception, Web3RPCError
from web3.types import RPCEndpoint

from tokenbridge.domain.errors import ChainError, LogRangeTooLarge
from tokenbridge.gc_pause import gc_paused

log = logging.getLogger(__name__)

DEPOSITED_TOPIC = "0x" + bytes(keccak(text="Deposited(bytes32,address,uint256)")).hex()
_THREE_WORDS = re.compile(r"(?:0x[0-9a-f]{64}){3}")  # tx hash, block hash, key as the indexer stores them

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


class DepositLog(NamedTuple):
    """One `Deposited(accountKey, from, amount)` log (a named tuple: immutable, and the
    cheapest record to build tens of thousands of per eth_getLogs answer)."""

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
    return _is_range_message(message)


def _is_range_message(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _RANGE_ERROR_MARKERS)


def decode_deposit(raw: Any) -> DepositLog:
    """A raw `eth_getLogs` entry of the vault's Deposited event as a DepositLog.

    Accepts the JSON-RPC form (hex strings, as the node sends it) and web3's formatted form
    (HexBytes, ints). The JSON form is decoded by slicing the hex: the key is topic 1, the
    sender the last 20 bytes of topic 2, the amount the first 32-byte word of the data.
    """
    topics = raw["topics"]
    data = raw["data"]
    if type(data) is str and len(topics) == 3 and type(topics[0]) is type(topics[1]) is type(topics[2]) is str:
        return _decode_json(raw, topics, data)
    if len(topics) != 3 or _hex(topics[0]) != DEPOSITED_TOPIC:
        raise ChainError(f"not a Deposited log: {raw!r}"[:300])
    if isinstance(data, str):
        word = data[2:66] if data.startswith("0x") else data[:64]
        if len(word) != 64:
            raise ChainError(f"Deposited log without an amount: {raw!r}"[:300])
        amount = int(word, 16)
    else:
        amount = int.from_bytes(bytes(data)[:32], "big")
    return DepositLog(
        tx_hash=_hex(raw["transactionHash"]),
        log_index=_int(raw["logIndex"]),
        block_number=_int(raw["blockNumber"]),
        block_hash=_hex(raw["blockHash"]),
        account_key=_hex(topics[1]),
        sender=_checksummed(_hex(topics[2])[-40:]),
        amount=amount,
    )


def _decode_json(raw: Any, topics: list[str], data: str) -> DepositLog:
    """The JSON-RPC form (the hot path: thousands of logs per response), by slicing the hex."""
    if topics[0].lower() != DEPOSITED_TOPIC:
        raise ChainError(f"not a Deposited log: {raw!r}"[:300])
    word = data[2:66] if data.startswith("0x") else data[:64]
    try:
        tx_hash, block_hash, key = raw["transactionHash"].lower(), raw["blockHash"].lower(), topics[1].lower()
        if len(word) != 64 or not _THREE_WORDS.fullmatch(tx_hash + block_hash + key):
            raise ValueError("hashes, key and amount must be 32-byte 0x-hex")
        return DepositLog(
            tx_hash=tx_hash,
            log_index=int(raw["logIndex"], 16),
            block_number=int(raw["blockNumber"], 16),
            block_hash=block_hash,
            account_key=key,
            sender=_checksummed(topics[2][-40:].lower()),
            amount=int(word, 16),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ChainError(f"malformed Deposited log ({exc}): {raw!r}"[:300]) from exc


def _int(value: Any) -> int:
    """A JSON-RPC quantity ("0x1a") or an int."""
    return int(value, 16) if isinstance(value, str) else int(value)


@lru_cache(maxsize=4096)
def _checksummed(address_hex: str) -> str:
    """EIP-55 form of a 40-hex-digit address (cached: depositors repeat, keccak per log does not)."""
    return to_checksum_address("0x" + address_hex)


class Web3DepositSource:
    """A `DepositSource` over web3.py for one vault address.

    Block hashes and logs are asked through the provider directly (`provider.make_request`):
    no middleware (web3's validation would ask `eth_chainId` around calls) and no result
    formatting (an AttributeDict of HexBytes per log cost more than storing the log); the
    logs are decoded from the JSON-RPC hex by `decode_deposit`.
    """

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

    def _call(self, method: str, params: list[Any]) -> dict[str, Any]:
        """The raw JSON-RPC response; transport errors (requests' are OSErrors) propagate."""
        response = self.w3.provider.make_request(RPCEndpoint(method), params)
        return cast(dict[str, Any], response)

    def block_hash(self, number: int) -> str | None:
        what = f"eth_getBlockByNumber {number}"
        try:
            response = self._call("eth_getBlockByNumber", [hex(number), False])
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
        error = response.get("error")
        if error is not None:
            raise ChainError(f"{what} failed: {_error_message(error)}")
        block = response.get("result")
        if not block:
            return None  # above the head
        return _hex(block["hash"])

    def block_hashes(self, numbers: Sequence[int]) -> dict[int, str | None]:
        """Hashes of several blocks, `_BATCH` per JSON-RPC batch (one HTTP round trip each)."""
        out: dict[int, str | None] = {}
        for start in range(0, len(numbers), _BATCH):
            part = list(numbers[start : start + _BATCH])
            what = f"eth_getBlockByNumber x{len(part)} ({part[0]}..{part[-1]})"
            provider = cast(Any, self.w3.provider)  # JSONBaseProvider: HTTP and the other JSON-RPC providers
            try:
                responses = provider.make_batch_request(
                    [(RPCEndpoint("eth_getBlockByNumber"), [hex(n), False]) for n in part]
                )
            except (Web3Exception, OSError, ValueError) as exc:
                raise ChainError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
            if not isinstance(responses, list) or len(responses) != len(part):
                raise ChainError(f"{what}: unexpected batch response {responses!r}"[:300])
            for number, response in zip(part, responses, strict=True):
                error = response.get("error")
                if error is not None:
                    raise ChainError(f"{what} failed: {_error_message(error)}")
                block = response.get("result")
                out[number] = _hex(block["hash"]) if block else None
        return out

    def deposit_logs(self, from_block: int, to_block: int) -> list[DepositLog]:
        params = {
            "address": self.vault,
            "topics": [DEPOSITED_TOPIC],
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
        }
        what = f"eth_getLogs [{from_block}, {to_block}]"
        with gc_paused():  # the answer's dicts and the logs made from them: see tokenbridge.gc_pause
            return self._deposit_logs(params, what)

    def _deposit_logs(self, params: dict[str, Any], what: str) -> list[DepositLog]:
        try:
            response = self._call("eth_getLogs", [params])
        except (Web3Exception, OSError, ValueError) as exc:
            detail = f"{what} failed: {type(exc).__name__}: {exc}"
            if is_range_error(exc):
                raise LogRangeTooLarge(detail) from exc
            raise ChainError(detail) from exc
        error = response.get("error")
        if error is not None:
            message = _error_message(error)
            detail = f"{what} failed: {message}"
            if _is_range_message(message):
                raise LogRangeTooLarge(detail)
            raise ChainError(detail)
        raw = response.get("result")
        if not isinstance(raw, list):
            raise ChainError(f"{what}: unexpected response {response!r}"[:300])
        return [decode_deposit(entry) for entry in raw if not entry.get("removed", False)]


_BATCH = 100  # block-hash requests per JSON-RPC batch


def block_hashes(source: DepositSource, numbers: Iterable[int]) -> dict[int, str | None]:
    """Hashes of these blocks on the node's chain now: one batch where the source can
    (`Web3DepositSource.block_hashes`), else one `block_hash` call per block."""
    wanted = sorted(set(numbers))
    batch = getattr(source, "block_hashes", None)
    if batch is not None and len(wanted) > 1:
        return cast(dict[int, str | None], batch(wanted))
    return {n: source.block_hash(n) for n in wanted}


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


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

    def fit(self, logs: int, max_logs: int | None) -> None:
        """After a range that returned `logs` logs: move the span toward the one expected to
        hold `max_logs` logs (at most doubling; halving or more when it held too many), so one
        response, and the memory it takes, stays bounded where deposits are dense. Without a
        cap, or after an empty range, it grows back (doubling)."""
        if max_logs is None or logs == 0:
            self.grow()
            return
        # toward the span expected to hold max_logs, at most doubling
        self.size = max(1, min(self.max_size, self.size * 2, self.size * max_logs // logs))


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
    max_logs: int | None = None,
) -> Iterator[Chunk]:
    """Yield consecutive chunks covering [from_block, to_block] (at most `max_chunks` of them).

    The caller stores each chunk before asking for the next; `cursor` is the (number, hash)
    the first chunk continues from. Raises LogRangeTooLarge when even one block is refused.
    A chunk of more than `max_logs` logs scales the next range down (`AdaptiveRange.fit`).
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
        span.fit(len(chunk.logs), max_logs)
        yield chunk
        cursor = (chunk.to_block, chunk.to_hash)
        start = end + 1
        done += 1


def read_ahead(chunks: Iterator[Chunk]) -> Generator[Chunk, None, None]:
    """Iterate `chunks` with the next one read in a thread while the caller uses this one.

    At most two chunks are in memory (the one yielded, the one being read); what reading the
    next one raises is raised by the next iteration, after the caller is done with this one,
    exactly as without the thread. Close the generator (or exhaust it) to stop: a read in
    flight finishes first, so no read outlives the step that started it. The source is used
    from this thread and the caller's at once (web3's HTTP provider allows that).
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deposits-read-ahead")
    try:
        future: Future[Chunk | None] = pool.submit(next, chunks, None)
        while True:
            chunk = future.result()
            if chunk is None:
                return
            future = pool.submit(next, chunks, None)
            yield chunk
    finally:
        pool.shutdown(wait=True)


def find_fork(source: DepositSource, stored_desc: Sequence[tuple[int, str]]) -> int | None:
    """The highest stored checkpoint still on the node's chain (stored_desc is number-descending)."""
    for number, block_hash in stored_desc:
        if source.block_hash(number) == block_hash:
            return number
    return None
