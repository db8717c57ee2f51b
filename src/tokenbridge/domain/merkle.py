"""OpenZeppelin-compatible standard Merkle trees (gift and recharge commitments).

A port of `@openzeppelin/merkle-tree`'s `StandardMerkleTree` (v1.0.8), so roots and proofs
built here are byte-for-byte those of the JS library and verify with OpenZeppelin's
`MerkleProof.verify(Calldata)` on-chain:

- leaf = keccak256(keccak256(abi.encode(values...))) (double hash: a leaf can never be
  mistaken for an internal node of 64 bytes);
- internal node = keccak256 of its two children, the smaller one first
  (`Hashes.commutativeKeccak256`), so a proof is a flat list of sibling hashes;
- leaves are sorted by hash and laid out as a complete binary tree in an array: the root
  at index 0, the children of node i at 2i+1 and 2i+2, the sorted leaves in reverse order
  at the end of the array (exactly `makeMerkleTree` of the JS library).

Leaf encodings for tokenbridge (docs/design/vault-interface.md) are `GiftLeaf` and
`RechargeLeaf`; `gift_tree` and `recharge_tree` build their trees. Pure Python, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from .errors import InvalidInput
from .keys import id_hash
from .split import Split

HASH_BYTES = 32
UINT256_LIMIT = 2**256

GIFT_LEAF_TYPES: tuple[str, ...] = ("bytes32", "bytes32", "bytes32", "uint256", "uint256", "uint256")
RECHARGE_LEAF_TYPES: tuple[str, ...] = ("bytes32", "bytes32", "uint256")

_HEX_RE = re.compile(r"^(0x)?[0-9a-fA-F]*\Z")
_UINT_RE = re.compile(r"^uint(\d*)\Z")
_INT_RE = re.compile(r"^int(\d*)\Z")


# --- hashing -------------------------------------------------------------------------------


def _check_node(node: bytes, what: str = "Merkle node") -> bytes:
    if not isinstance(node, bytes | bytearray) or len(node) != HASH_BYTES:
        raise InvalidInput(f"{what} must be {HASH_BYTES} bytes")
    return bytes(node)


def node_hash(a: bytes, b: bytes) -> bytes:
    """keccak256 of the two children, smaller first (OpenZeppelin `commutativeKeccak256`)."""
    return bytes(keccak(a + b if a <= b else b + a))


def normalize_value(abi_type: str, value: Any) -> Any:
    """Accept the JSON-friendly spellings of a leaf value: hex strings for bytes, decimal or
    0x strings for integers. Everything else is passed through to the ABI encoder."""
    if isinstance(value, str) and (abi_type.startswith("bytes") or abi_type == "address"):
        if abi_type == "address":
            return value
        if not _HEX_RE.match(value):
            raise InvalidInput(f"{abi_type} value must be hex, got {value!r}")
        return bytes.fromhex(value.removeprefix("0x"))
    if isinstance(value, str) and (_UINT_RE.match(abi_type) or _INT_RE.match(abi_type)):
        try:
            return int(value, 0)
        except ValueError:
            raise InvalidInput(f"{abi_type} value must be an integer, got {value!r}") from None
    return value


def _encode_static_words(leaf_encoding: Sequence[str], value: Sequence[Any]) -> bytes | None:
    """abi.encode for the common all-`bytes32`/`uint256` leaves, without eth_abi's overhead.

    For these static types abi.encode is just the 32-byte words in order; this halves the
    time to build a large tree. Returns None (use eth_abi) for anything else, including
    values of the wrong shape, so eth_abi produces the error message.
    """
    words: list[bytes] = []
    for abi_type, item in zip(leaf_encoding, value, strict=True):
        if abi_type == "bytes32" and type(item) is bytes and len(item) == HASH_BYTES:
            words.append(item)
        elif abi_type == "uint256" and type(item) is int and 0 <= item < UINT256_LIMIT:
            words.append(item.to_bytes(HASH_BYTES, "big"))
        else:
            return None
    return b"".join(words)


def leaf_hash(leaf_encoding: Sequence[str], value: Sequence[Any]) -> bytes:
    """keccak256(keccak256(abi.encode(value))) for a leaf of the given ABI types."""
    if len(value) != len(leaf_encoding):
        raise InvalidInput(f"leaf has {len(value)} values, its encoding {list(leaf_encoding)} has {len(leaf_encoding)}")
    encoded = _encode_static_words(leaf_encoding, value)
    if encoded is not None:
        return bytes(keccak(keccak(encoded)))
    normalized = [normalize_value(t, v) for t, v in zip(leaf_encoding, value, strict=True)]
    try:
        encoded = abi_encode(list(leaf_encoding), normalized)
    except Exception as exc:  # eth_abi raises several unrelated types (EncodingError, TypeError, ...)
        raise InvalidInput(f"leaf {value!r} does not encode as {list(leaf_encoding)}: {exc}") from None
    return bytes(keccak(keccak(encoded)))


# --- the array-shaped tree (OpenZeppelin core.js) --------------------------------------------


def make_merkle_tree(leaves: Sequence[bytes]) -> list[bytes]:
    """The complete binary tree over `leaves` (already in leaf order) as an array, root first."""
    if not leaves:
        raise InvalidInput("a Merkle tree needs at least one leaf")
    for leaf in leaves:
        _check_node(leaf, "leaf hash")
    size = 2 * len(leaves) - 1
    tree: list[bytes] = [b""] * size
    tree[size - len(leaves) :] = [bytes(leaf) for leaf in reversed(leaves)]
    for i in range(size - 1 - len(leaves), -1, -1):
        left, right = tree[2 * i + 1], tree[2 * i + 2]
        tree[i] = bytes(keccak(left + right if left <= right else right + left))
    return tree


def _is_leaf_index(tree: Sequence[bytes], index: int) -> bool:
    return 0 <= index < len(tree) and 2 * index + 1 >= len(tree)


def _sibling(index: int) -> int:
    return index - 1 if index % 2 == 0 else index + 1


def _parent(index: int) -> int:
    return (index - 1) // 2


def get_proof(tree: Sequence[bytes], tree_index: int) -> list[bytes]:
    """Sibling hashes from the leaf at `tree_index` up to (not including) the root."""
    if not _is_leaf_index(tree, tree_index):
        raise InvalidInput(f"tree index {tree_index} is not a leaf")
    proof: list[bytes] = []
    while tree_index > 0:
        proof.append(tree[_sibling(tree_index)])
        tree_index = _parent(tree_index)
    return proof


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by `leaf` and `proof` (OpenZeppelin `MerkleProof.processProof`)."""
    computed = _check_node(leaf, "leaf hash")
    for sibling in proof:
        computed = node_hash(computed, _check_node(sibling, "proof element"))
    return computed


@dataclass(frozen=True, slots=True)
class MultiProof:
    """A proof for several leaves at once (OpenZeppelin `MerkleProof.multiProofVerify`).

    `leaves` are values (for a tree) or leaf hashes (for the core functions), in the order
    the verifier consumes them.
    """

    leaves: tuple[Any, ...]
    proof: tuple[bytes, ...]
    proof_flags: tuple[bool, ...]


def get_multiproof(tree: Sequence[bytes], tree_indices: Sequence[int]) -> MultiProof:
    for i in tree_indices:
        if not _is_leaf_index(tree, i):
            raise InvalidInput(f"tree index {i} is not a leaf")
    indices = sorted(tree_indices, reverse=True)
    if len(set(indices)) != len(indices):
        raise InvalidInput("cannot prove a duplicated index")
    stack = list(indices)
    proof: list[bytes] = []
    flags: list[bool] = []
    head = 0  # stack[head:] is the live queue
    while head < len(stack) and stack[head] > 0:
        j = stack[head]
        head += 1
        s, p = _sibling(j), _parent(j)
        if head < len(stack) and stack[head] == s:
            flags.append(True)
            head += 1
        else:
            flags.append(False)
            proof.append(tree[s])
        stack.append(p)
    if not indices:
        proof.append(tree[0])
    return MultiProof(tuple(tree[i] for i in indices), tuple(proof), tuple(flags))


def process_multiproof(multiproof: MultiProof) -> bytes:
    leaves = [_check_node(leaf, "leaf hash") for leaf in multiproof.leaves]
    proof = [_check_node(node, "proof element") for node in multiproof.proof]
    flags = multiproof.proof_flags
    if len(proof) < sum(1 for f in flags if not f):
        raise InvalidInput("invalid multiproof format")
    if len(leaves) + len(proof) != len(flags) + 1:
        raise InvalidInput("provided leaves and multiproof are not compatible")
    stack = leaves
    head = 0
    proof_head = 0
    try:
        for flag in flags:
            a = stack[head]
            head += 1
            if flag:
                b = stack[head]
                head += 1
            else:
                b = proof[proof_head]
                proof_head += 1
            stack.append(node_hash(a, b))
    except IndexError:
        raise InvalidInput("multiproof flags do not match its leaves and proof") from None
    if (len(stack) - head) + (len(proof) - proof_head) != 1:
        raise InvalidInput("multiproof does not reduce to a single root")
    return stack[-1] if head < len(stack) else proof[proof_head]


# --- StandardMerkleTree ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexedValue:
    value: tuple[Any, ...]
    tree_index: int


class StandardMerkleTree:
    """`StandardMerkleTree` of `@openzeppelin/merkle-tree`: values of a fixed ABI leaf encoding.

    Values keep their input order (`at(i)`, proofs by value index); the tree itself holds
    the leaves sorted by hash.
    """

    __slots__ = ("_hash_lookup", "leaf_encoding", "tree", "values")

    def __init__(self, tree: list[bytes], values: list[IndexedValue], leaf_encoding: Sequence[str]) -> None:
        self.tree = tree
        self.values = values
        self.leaf_encoding = tuple(leaf_encoding)
        self._hash_lookup = {tree[v.tree_index]: i for i, v in enumerate(values)}

    @classmethod
    def of(
        cls, values: Iterable[Sequence[Any]], leaf_encoding: Sequence[str], *, sort_leaves: bool = True
    ) -> StandardMerkleTree:
        """Build the tree; identical to `StandardMerkleTree.of(values, leafEncoding)` in JS."""
        encoding = tuple(leaf_encoding)
        value_list = [tuple(v) for v in values]
        hashed = [(leaf_hash(encoding, v), i) for i, v in enumerate(value_list)]
        if sort_leaves:
            hashed.sort(key=lambda item: item[0])  # stable, like Array.prototype.sort
        tree = make_merkle_tree([h for h, _ in hashed])
        tree_index = [0] * len(value_list)
        for leaf_index, (_, value_index) in enumerate(hashed):
            tree_index[value_index] = len(tree) - leaf_index - 1
        indexed = [IndexedValue(v, tree_index[i]) for i, v in enumerate(value_list)]
        return cls(tree, indexed, encoding)

    # reading

    @property
    def root(self) -> bytes:
        return self.tree[0]

    @property
    def hex_root(self) -> str:
        return "0x" + self.tree[0].hex()

    def __len__(self) -> int:
        return len(self.values)

    def at(self, index: int) -> tuple[Any, ...]:
        return self.values[index].value

    def entries(self) -> Iterator[tuple[int, tuple[Any, ...]]]:
        for i, v in enumerate(self.values):
            yield i, v.value

    def leaf_hash(self, value: Sequence[Any]) -> bytes:
        return leaf_hash(self.leaf_encoding, value)

    def index_of(self, value: Sequence[Any]) -> int:
        """The value index of `value`, or InvalidInput when it is not in the tree."""
        index = self._hash_lookup.get(self.leaf_hash(value))
        if index is None:
            raise InvalidInput("leaf is not in the tree")
        return index

    # proving

    def _value_index(self, leaf: int | Sequence[Any]) -> int:
        if isinstance(leaf, int):
            if not 0 <= leaf < len(self.values):
                raise InvalidInput(f"value index {leaf} out of bounds (tree has {len(self.values)} values)")
            return leaf
        return self.index_of(leaf)

    def get_proof(self, leaf: int | Sequence[Any]) -> list[bytes]:
        """Proof for a value (or its index in input order), as OpenZeppelin's `getProof`."""
        value_index = self._value_index(leaf)
        tree_index = self.values[value_index].tree_index
        proof = get_proof(self.tree, tree_index)
        if process_proof(self.tree[tree_index], proof) != self.root:  # pragma: no cover (invariant)
            raise AssertionError("unable to prove value")
        return proof

    def get_multiproof(self, leaves: Sequence[int | Sequence[Any]]) -> MultiProof:
        value_indices = [self._value_index(leaf) for leaf in leaves]
        core = get_multiproof(self.tree, [self.values[i].tree_index for i in value_indices])
        values = tuple(self.values[self._hash_lookup[h]].value for h in core.leaves)
        return MultiProof(values, core.proof, core.proof_flags)

    # verifying

    def verify(self, leaf: int | Sequence[Any], proof: Sequence[bytes]) -> bool:
        value = self.values[self._value_index(leaf)].value if isinstance(leaf, int) else leaf
        return verify(self.root, self.leaf_encoding, value, proof)

    def verify_multiproof(self, multiproof: MultiProof) -> bool:
        return verify_multiproof(self.root, self.leaf_encoding, multiproof)

    # serialising (the JS library's `dump()` / `load()` format)

    def dump(self) -> dict[str, Any]:
        return {
            "format": "standard-v1",
            "leafEncoding": list(self.leaf_encoding),
            "tree": ["0x" + node.hex() for node in self.tree],
            "values": [{"value": [_jsonable(x) for x in v.value], "treeIndex": v.tree_index} for v in self.values],
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> StandardMerkleTree:
        if data.get("format") != "standard-v1":
            raise InvalidInput(f"unknown Merkle tree format {data.get('format')!r}")
        encoding = tuple(data["leafEncoding"])
        tree = [_check_node(normalize_value("bytes32", node), "tree node") for node in data["tree"]]
        values = [
            IndexedValue(
                tuple(normalize_value(t, x) for t, x in zip(encoding, v["value"], strict=True)), int(v["treeIndex"])
            )
            for v in data["values"]
        ]
        loaded = cls(tree, values, encoding)
        loaded.validate()
        return loaded

    def validate(self) -> None:
        """Raise InvalidInput unless every node is the hash of its children and every value is a leaf."""
        for v in self.values:
            if not _is_leaf_index(self.tree, v.tree_index) or self.tree[v.tree_index] != self.leaf_hash(v.value):
                raise InvalidInput("Merkle tree does not contain the expected value")
        if not is_valid_merkle_tree(self.tree):
            raise InvalidInput("Merkle tree is invalid")


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def is_valid_merkle_tree(tree: Sequence[bytes]) -> bool:
    for i, node in enumerate(tree):
        if len(node) != HASH_BYTES:
            return False
        left, right = 2 * i + 1, 2 * i + 2
        if right >= len(tree):
            if left < len(tree):
                return False
        elif node != node_hash(tree[left], tree[right]):
            return False
    return len(tree) > 0


def verify(root: bytes, leaf_encoding: Sequence[str], value: Sequence[Any], proof: Sequence[bytes]) -> bool:
    """True iff `proof` proves `value` under `root` (the static `StandardMerkleTree.verify`).

    Malformed input (a proof element that is not 32 bytes, a value that does not encode)
    is a failed verification, not an exception.
    """
    try:
        return process_proof(leaf_hash(leaf_encoding, value), proof) == bytes(root)
    except InvalidInput:
        return False


def verify_multiproof(root: bytes, leaf_encoding: Sequence[str], multiproof: MultiProof) -> bool:
    try:
        hashed = MultiProof(
            tuple(leaf_hash(leaf_encoding, v) for v in multiproof.leaves), multiproof.proof, multiproof.proof_flags
        )
        return process_multiproof(hashed) == bytes(root)
    except InvalidInput:
        return False


# --- tokenbridge leaves ----------------------------------------------------------------------


def _bytes32(value: bytes, field: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_BYTES:
        raise InvalidInput(f"{field} must be 32 bytes")
    return bytes(value)


def _uint256(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < UINT256_LIMIT:
        raise InvalidInput(f"{field} must be an integer in [0, 2**256), got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class GiftLeaf:
    """One gift of a settled epoch: `(giftId, fromKey, creatorKey, gross, creatorAmount, platformAmount)`."""

    gift_id: bytes
    from_key: bytes
    creator_key: bytes
    gross: int
    creator_amount: int
    platform_amount: int

    def __post_init__(self) -> None:
        _bytes32(self.gift_id, "gift_id")
        _bytes32(self.from_key, "from_key")
        _bytes32(self.creator_key, "creator_key")
        _uint256(self.gross, "gross")
        _uint256(self.creator_amount, "creator_amount")
        _uint256(self.platform_amount, "platform_amount")

    @classmethod
    def of(cls, gift_id: str, from_key: bytes, creator_key: bytes, gift_split: Split) -> GiftLeaf:
        """The leaf of a ledger gift: its string id hashed with `id_hash`, amounts from its split."""
        return cls(
            id_hash(gift_id),
            from_key,
            creator_key,
            gift_split.gross,
            gift_split.creator_amount,
            gift_split.platform_amount,
        )

    def values(self) -> tuple[bytes, bytes, bytes, int, int, int]:
        return (self.gift_id, self.from_key, self.creator_key, self.gross, self.creator_amount, self.platform_amount)

    def leaf_hash(self) -> bytes:
        return leaf_hash(GIFT_LEAF_TYPES, self.values())


@dataclass(frozen=True, slots=True)
class RechargeLeaf:
    """One recharge of a mint batch: `(paymentId, accountKey, amount)`."""

    payment_id: bytes
    account_key: bytes
    amount: int

    def __post_init__(self) -> None:
        _bytes32(self.payment_id, "payment_id")
        _bytes32(self.account_key, "account_key")
        _uint256(self.amount, "amount")

    @classmethod
    def of(cls, payment_id: str, account_key: bytes, amount: int) -> RechargeLeaf:
        return cls(id_hash(payment_id), account_key, amount)

    def values(self) -> tuple[bytes, bytes, int]:
        return (self.payment_id, self.account_key, self.amount)

    def leaf_hash(self) -> bytes:
        return leaf_hash(RECHARGE_LEAF_TYPES, self.values())


def gift_tree(gifts: Iterable[GiftLeaf]) -> StandardMerkleTree:
    """The gift tree of an epoch. Gift ids must be unique (a repeated id is a ledger bug)."""
    leaves = list(gifts)
    _refuse_duplicates([g.gift_id for g in leaves], "gift id")
    return StandardMerkleTree.of([g.values() for g in leaves], GIFT_LEAF_TYPES)


def recharge_tree(recharges: Iterable[RechargeLeaf]) -> StandardMerkleTree:
    """The recharge tree of a mint batch. Payment ids must be unique."""
    leaves = list(recharges)
    _refuse_duplicates([r.payment_id for r in leaves], "payment id")
    return StandardMerkleTree.of([r.values() for r in leaves], RECHARGE_LEAF_TYPES)


def _refuse_duplicates(ids: Sequence[bytes], what: str) -> None:
    seen: set[bytes] = set()
    for i in ids:
        if i in seen:
            raise InvalidInput(f"duplicate {what} 0x{i.hex()} in one tree")
        seen.add(i)


def verify_gift(root: bytes, gift: GiftLeaf, proof: Sequence[bytes]) -> bool:
    return verify(root, GIFT_LEAF_TYPES, gift.values(), proof)


def verify_recharge(root: bytes, recharge: RechargeLeaf, proof: Sequence[bytes]) -> bool:
    return verify(root, RECHARGE_LEAF_TYPES, recharge.values(), proof)
