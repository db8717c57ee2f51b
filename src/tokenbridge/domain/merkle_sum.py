"""The liabilities commitment: a Merkle-sum tree of every in-app balance.

Each node carries a hash and a sum; the root's sum is the total the platform owes, and a
user's proof carries the sibling sums so they can check that the totals add up on the way
to the root (docs/design/vault-interface.md, docs/merkle.md):

- leaf: hash = keccak256(keccak256(abi.encode(bytes32 accountKey, uint256 balance))),
  sum = balance, with 0 <= balance < 2**64 (a range check, so no hidden negative debt);
- internal node: hash = keccak256(abi.encode(bytes32 leftHash, uint256 leftSum,
  bytes32 rightHash, uint256 rightSum)), sum = leftSum + rightSum;
- leaves ordered by accountKey ascending, the leaf level padded to a power of two with
  empty nodes (hash = bytes32(0), sum = 0); a tree of one leaf has that leaf as root;
- a proof for the leaf at position `index` lists sibling hashes and sums from the leaf
  level up; bit i of `index` is 1 when the node at level i is a right child.

The salt that makes an account key unguessable is bound to the account inside the key
itself (`tokenbridge.domain.keys.account_key`), so two accounts with equal balances never
share a leaf. A tree with no accounts commits to (bytes32(0), 0). Pure Python, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.crypto import keccak

from .errors import InvalidInput

HASH_BYTES = 32
MAX_BALANCE_EXCLUSIVE = 2**64
UINT256_LIMIT = 2**256
MAX_DEPTH = 64  # CoinVault.verifyLiability refuses deeper proofs


@dataclass(frozen=True, slots=True)
class SumNode:
    hash: bytes
    sum: int


EMPTY_NODE = SumNode(bytes(HASH_BYTES), 0)


def validate_balance(balance: object, account_key: bytes | None = None) -> int:
    """Return `balance` if it is an int with 0 <= balance < 2**64, else raise InvalidInput."""
    where = f" of account 0x{account_key.hex()}" if account_key is not None else ""
    if isinstance(balance, bool) or not isinstance(balance, int):
        raise InvalidInput(f"balance{where} must be an integer number of base units, got {type(balance).__name__}")
    if not 0 <= balance < MAX_BALANCE_EXCLUSIVE:
        raise InvalidInput(f"balance{where} must satisfy 0 <= balance < 2**64, got {balance}")
    return balance


def _validate_key(account_key: object) -> bytes:
    if not isinstance(account_key, bytes | bytearray) or len(account_key) != HASH_BYTES:
        raise InvalidInput("account key must be 32 bytes")
    return bytes(account_key)


def leaf_node(account_key: bytes, balance: int) -> SumNode:
    """The leaf of one account (its range-checked balance and the double-hashed encoding)."""
    key = _validate_key(account_key)
    validate_balance(balance, key)
    encoded = key + balance.to_bytes(HASH_BYTES, "big")  # == abi.encode(bytes32, uint256)
    return SumNode(bytes(keccak(keccak(encoded))), balance)


def parent_node(left: SumNode, right: SumNode) -> SumNode:
    """hash = keccak256(abi.encode(leftHash, leftSum, rightHash, rightSum)), sum = leftSum + rightSum."""
    total = left.sum + right.sum
    if left.sum < 0 or right.sum < 0 or total >= UINT256_LIMIT:
        raise InvalidInput("node sum out of uint256 range")
    encoded = (
        left.hash + left.sum.to_bytes(HASH_BYTES, "big") + right.hash + right.sum.to_bytes(HASH_BYTES, "big")
    )  # == abi.encode(bytes32, uint256, bytes32, uint256): four static words
    return SumNode(bytes(keccak(encoded)), total)


@dataclass(frozen=True, slots=True)
class LiabilityProof:
    """Everything a holder needs to check their balance against a committed (root, total)."""

    account_key: bytes
    balance: int
    index: int
    sibling_hashes: tuple[bytes, ...]
    sibling_sums: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form: hex for hashes, decimal strings for amounts (they exceed 2**53)."""
        return {
            "account_key": "0x" + self.account_key.hex(),
            "balance": str(self.balance),
            "index": self.index,
            "sibling_hashes": ["0x" + h.hex() for h in self.sibling_hashes],
            "sibling_sums": [str(s) for s in self.sibling_sums],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LiabilityProof:
        try:
            return cls(
                bytes.fromhex(str(data["account_key"]).removeprefix("0x")),
                int(data["balance"]),
                int(data["index"]),
                tuple(bytes.fromhex(str(h).removeprefix("0x")) for h in data["sibling_hashes"]),
                tuple(int(s) for s in data["sibling_sums"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"malformed liability proof: {exc}") from None


@dataclass(frozen=True, slots=True)
class Commitment:
    """What goes on-chain per epoch: the root hash and the total of all balances."""

    root: bytes
    total: int


def process_liability_proof(
    account_key: bytes, balance: int, index: int, sibling_hashes: Sequence[bytes], sibling_sums: Sequence[int]
) -> SumNode:
    """The root node implied by a leaf and its proof; InvalidInput when the proof is malformed
    (balance out of range, sibling not 32 bytes, a sibling sum at level i not below
    2**(64+i), mismatched lengths, more than 64 levels, or an index with bits above the
    proof's depth) -- the same checks as `CoinVault.verifyLiability`."""
    if len(sibling_hashes) != len(sibling_sums):
        raise InvalidInput("proof has different numbers of sibling hashes and sums")
    if len(sibling_hashes) > MAX_DEPTH:
        raise InvalidInput(f"proof deeper than {MAX_DEPTH} levels")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0 or index >> len(sibling_hashes):
        raise InvalidInput(f"leaf index {index!r} does not fit a proof of depth {len(sibling_hashes)}")
    node = leaf_node(account_key, balance)
    for level, (sibling_hash, sibling_sum) in enumerate(zip(sibling_hashes, sibling_sums, strict=True)):
        if not isinstance(sibling_hash, bytes | bytearray) or len(sibling_hash) != HASH_BYTES:
            raise InvalidInput(f"sibling hash at level {level} must be 32 bytes")
        if isinstance(sibling_sum, bool) or not isinstance(sibling_sum, int) or sibling_sum < 0:
            raise InvalidInput(f"sibling sum at level {level} must be a non-negative integer")
        if sibling_sum >> (64 + level):
            # a subtree of 2**level leaves, each below 2**64, sums below 2**(64 + level)
            raise InvalidInput(f"sibling sum at level {level} must be below 2**{64 + level}")
        sibling = SumNode(bytes(sibling_hash), sibling_sum)
        node = parent_node(sibling, node) if (index >> level) & 1 else parent_node(node, sibling)
    return node


def verify_liability(root: bytes, total: int, proof: LiabilityProof) -> bool:
    """True iff the proof recomputes exactly the committed root hash and total."""
    try:
        node = process_liability_proof(
            proof.account_key, proof.balance, proof.index, proof.sibling_hashes, proof.sibling_sums
        )
    except InvalidInput:
        return False
    return node.hash == bytes(root) and node.sum == total


class MerkleSumTree:
    """The liabilities tree of one epoch. Build with `MerkleSumTree.of(balances)`."""

    __slots__ = ("_index", "keys", "levels")

    def __init__(self, keys: list[bytes], levels: list[list[SumNode]]) -> None:
        self.keys = keys
        self.levels = levels  # levels[0] = padded leaf level, levels[-1] = [root]
        self._index = {key: i for i, key in enumerate(keys)}

    @classmethod
    def of(cls, balances: Mapping[bytes, int] | Iterable[tuple[bytes, int]]) -> MerkleSumTree:
        """Build from (accountKey, balance) pairs; keys must be unique, balances in [0, 2**64)."""
        pairs = list(balances.items()) if isinstance(balances, Mapping) else list(balances)
        seen: set[bytes] = set()
        for key, _ in pairs:
            key = _validate_key(key)
            if key in seen:
                raise InvalidInput(f"account 0x{key.hex()} appears twice in the liabilities")
            seen.add(key)
        pairs.sort(key=lambda pair: bytes(pair[0]))
        leaves = [leaf_node(key, balance) for key, balance in pairs]
        if not leaves:
            return cls([], [[EMPTY_NODE]])
        width = 1
        while width < len(leaves):
            width *= 2
        level = leaves + [EMPTY_NODE] * (width - len(leaves))
        levels = [level]
        empty = EMPTY_NODE  # the node over an all-padding subtree at the current level
        while len(level) > 1:
            empty_parent = parent_node(empty, empty)
            level = [
                empty_parent if left is empty and right is empty else parent_node(left, right)
                for left, right in zip(level[0::2], level[1::2], strict=True)
            ]
            levels.append(level)
            empty = empty_parent
        return cls([bytes(key) for key, _ in pairs], levels)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0].hash

    @property
    def total(self) -> int:
        return self.levels[-1][0].sum

    @property
    def commitment(self) -> Commitment:
        return Commitment(self.root, self.total)

    @property
    def depth(self) -> int:
        return len(self.levels) - 1

    def __len__(self) -> int:
        return len(self.keys)

    def index_of(self, account_key: bytes) -> int:
        index = self._index.get(bytes(account_key))
        if index is None:
            raise InvalidInput(f"account 0x{bytes(account_key).hex()} is not in the liabilities tree")
        return index

    def balance_of(self, account_key: bytes) -> int:
        return self.levels[0][self.index_of(account_key)].sum

    def get_proof(self, account: bytes | int) -> LiabilityProof:
        """The proof for an account key (or a leaf position)."""
        if isinstance(account, int):
            if not 0 <= account < len(self.keys):
                raise InvalidInput(f"leaf index {account} out of bounds (tree has {len(self.keys)} accounts)")
            index = account
        else:
            index = self.index_of(account)
        hashes: list[bytes] = []
        sums: list[int] = []
        position = index
        for level in self.levels[:-1]:
            sibling = level[position ^ 1]
            hashes.append(sibling.hash)
            sums.append(sibling.sum)
            position >>= 1
        return LiabilityProof(self.keys[index], self.levels[0][index].sum, index, tuple(hashes), tuple(sums))

    def verify(self, proof: LiabilityProof) -> bool:
        return verify_liability(self.root, self.total, proof)
