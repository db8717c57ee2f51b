"""StandardMerkleTree: OpenZeppelin-compatible shape, proofs, multiproofs and the two leaf kinds."""

from __future__ import annotations

import dataclasses
import random

import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenbridge.domain.errors import InvalidInput
from tokenbridge.domain.keys import id_hash
from tokenbridge.domain.merkle import (
    GIFT_LEAF_TYPES,
    RECHARGE_LEAF_TYPES,
    GiftLeaf,
    MultiProof,
    RechargeLeaf,
    StandardMerkleTree,
    gift_tree,
    leaf_hash,
    node_hash,
    process_proof,
    recharge_tree,
    verify,
    verify_gift,
    verify_recharge,
)
from tokenbridge.domain.split import split

b32 = st.binary(min_size=32, max_size=32)
amounts = st.integers(min_value=0, max_value=2**256 - 1)
small_amounts = st.integers(min_value=1, max_value=2**63 - 1)


@st.composite
def gift_leaves(draw: st.DrawFn, min_size: int = 1, max_size: int = 40) -> list[GiftLeaf]:
    ids = draw(st.lists(b32, min_size=min_size, max_size=max_size, unique=True))
    leaves = []
    for gift_id in ids:
        gross = draw(small_amounts)
        bps = draw(st.integers(min_value=0, max_value=10_000))
        s = split(gross, bps)
        leaves.append(GiftLeaf(gift_id, draw(b32), draw(b32), s.gross, s.creator_amount, s.platform_amount))
    return leaves


def _flip(data: bytes, bit: int = 0) -> bytes:
    return bytes([data[0] ^ (1 << bit)]) + data[1:]


# Pinned from `node scripts/merkle_vectors.mjs` (@openzeppelin/merkle-tree 1.0.8):
# StandardMerkleTree.of([["0x11"*32, "5"], ["0x22"*32, "7"]], ["bytes32", "uint256"]).
PINNED_VALUES = [(b"\x11" * 32, 5), (b"\x22" * 32, 7)]
PINNED_ROOT = "0xfee8b9b763601ce5b2537a306c9c02bd0f71b77908896d43ca6080301b2fccec"
PINNED_PROOF_0 = "0xec0d916f824f55c77bcb41f9c5f28fd5eda9bd198c1aaa66a1061beeb5a7445a"


def test_pinned_vector_from_openzeppelin_js() -> None:
    tree = StandardMerkleTree.of(PINNED_VALUES, ["bytes32", "uint256"])
    assert tree.hex_root == PINNED_ROOT
    assert ["0x" + p.hex() for p in tree.get_proof(0)] == [PINNED_PROOF_0]
    # value 0 has the larger leaf hash, so it sits last in the array (leaves reversed at the end)
    assert [v.tree_index for v in tree.values] == [1, 2]


def test_leaf_is_double_keccak_of_abi_encode() -> None:
    values = (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 10, 7, 3)
    expected = keccak(keccak(encode(list(GIFT_LEAF_TYPES), list(values))))
    assert leaf_hash(GIFT_LEAF_TYPES, values) == expected
    # the JSON spellings (hex strings, decimal strings) hash to the same leaf
    as_json = ["0x" + v.hex() if isinstance(v, bytes) else str(v) for v in values]
    assert leaf_hash(GIFT_LEAF_TYPES, as_json) == expected


def test_node_hash_is_commutative_sorted_pair() -> None:
    a, b = b"\x01" * 32, b"\xff" * 32
    assert node_hash(a, b) == node_hash(b, a) == keccak(a + b)


def test_single_leaf_tree_is_its_leaf_with_empty_proof() -> None:
    leaf = RechargeLeaf(b"\x05" * 32, b"\x06" * 32, 42)
    tree = recharge_tree([leaf])
    assert tree.root == leaf.leaf_hash()
    assert tree.get_proof(0) == []
    assert verify_recharge(tree.root, leaf, [])


def test_empty_tree_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least one leaf"):
        StandardMerkleTree.of([], RECHARGE_LEAF_TYPES)


@settings(max_examples=60, deadline=None)
@given(gift_leaves())
def test_every_gift_proof_verifies(leaves: list[GiftLeaf]) -> None:
    tree = gift_tree(leaves)
    for i, leaf in enumerate(leaves):
        proof = tree.get_proof(i)
        assert proof == tree.get_proof(leaf.values())  # by index and by value agree
        assert verify_gift(tree.root, leaf, proof)
        assert tree.verify(i, proof)
        assert tree.at(i) == leaf.values()


@settings(max_examples=40, deadline=None)
@given(gift_leaves(), st.randoms(use_true_random=False))
def test_root_does_not_depend_on_input_order(leaves: list[GiftLeaf], rnd: random.Random) -> None:
    shuffled = list(leaves)
    rnd.shuffle(shuffled)
    assert gift_tree(leaves).root == gift_tree(shuffled).root


@settings(max_examples=60, deadline=None)
@given(gift_leaves(min_size=2), st.data())
def test_tampered_gift_leaf_fails(leaves: list[GiftLeaf], data: st.DataObject) -> None:
    tree = gift_tree(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    leaf, proof = leaves[i], tree.get_proof(i)
    field = data.draw(st.sampled_from([f.name for f in dataclasses.fields(GiftLeaf)]))
    original = getattr(leaf, field)
    tampered_value = _flip(original) if isinstance(original, bytes) else original ^ 1
    tampered = dataclasses.replace(leaf, **{field: tampered_value})
    assert tampered.values() not in {g.values() for g in leaves}
    assert not verify_gift(tree.root, tampered, proof)


@settings(max_examples=60, deadline=None)
@given(gift_leaves(min_size=2), st.data())
def test_tampered_proof_fails(leaves: list[GiftLeaf], data: st.DataObject) -> None:
    tree = gift_tree(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = tree.get_proof(i)
    j = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = [*proof[:j], _flip(proof[j], bit), *proof[j + 1 :]]
    assert not verify_gift(tree.root, leaves[i], flipped)
    assert not verify_gift(tree.root, leaves[i], proof[:-1])  # truncated
    assert not verify_gift(tree.root, leaves[i], [*proof, proof[0]])  # extended
    assert not verify_gift(_flip(tree.root), leaves[i], proof)  # another root


def test_proof_of_one_leaf_does_not_prove_another() -> None:
    leaves = [RechargeLeaf.of(f"pay-{i}", keccak(text=f"acct-{i}"), 1_000_000 * (i + 1)) for i in range(9)]
    tree = recharge_tree(leaves)
    proof_0 = tree.get_proof(0)
    assert verify_recharge(tree.root, leaves[0], proof_0)
    assert not any(verify_recharge(tree.root, leaf, proof_0) for leaf in leaves[1:])


def test_malformed_proof_element_is_a_failed_verification() -> None:
    tree = recharge_tree([RechargeLeaf.of("a", b"\x01" * 32, 1), RechargeLeaf.of("b", b"\x02" * 32, 2)])
    assert not verify(tree.root, RECHARGE_LEAF_TYPES, tree.at(0), [b"\x00" * 31])
    assert not verify(tree.root, RECHARGE_LEAF_TYPES, (b"\x00", b"\x01" * 32, 1), tree.get_proof(0))


@settings(max_examples=40, deadline=None)
@given(gift_leaves(min_size=1, max_size=30), st.data())
def test_multiproof_verifies_and_detects_tampering(leaves: list[GiftLeaf], data: st.DataObject) -> None:
    tree = gift_tree(leaves)
    chosen = data.draw(st.lists(st.integers(0, len(leaves) - 1), unique=True, min_size=1, max_size=len(leaves)))
    mp = tree.get_multiproof(chosen)
    assert sorted(mp.leaves) == sorted(leaves[i].values() for i in chosen)
    assert tree.verify_multiproof(mp)
    bad_leaf = (_flip(mp.leaves[0][0]), *mp.leaves[0][1:])
    assert not tree.verify_multiproof(MultiProof((bad_leaf, *mp.leaves[1:]), mp.proof, mp.proof_flags))
    if mp.proof:
        assert not tree.verify_multiproof(MultiProof(mp.leaves, (_flip(mp.proof[0]), *mp.proof[1:]), mp.proof_flags))
    if mp.proof_flags:
        flipped_flags = (not mp.proof_flags[0], *mp.proof_flags[1:])
        assert not tree.verify_multiproof(MultiProof(mp.leaves, mp.proof, flipped_flags))


def test_dump_load_round_trip_and_tamper_detection() -> None:
    leaves = [RechargeLeaf.of(f"p{i}", keccak(text=str(i)), i + 1) for i in range(6)]
    tree = recharge_tree(leaves)
    dumped = tree.dump()
    loaded = StandardMerkleTree.load(dumped)
    assert loaded.root == tree.root
    assert loaded.get_proof(3) == tree.get_proof(3)
    tampered = {**dumped, "tree": [dumped["tree"][0], dumped["tree"][2], dumped["tree"][1], *dumped["tree"][3:]]}
    with pytest.raises(InvalidInput):
        StandardMerkleTree.load(tampered)
    with pytest.raises(InvalidInput, match="format"):
        StandardMerkleTree.load({**dumped, "format": "simple-v1"})


def test_gift_leaf_of_uses_id_hash_and_split() -> None:
    s = split(1_000_001, 7_000)
    leaf = GiftLeaf.of("gift-1", b"\xaa" * 32, b"\xbb" * 32, s)
    assert leaf.gift_id == id_hash("gift-1")
    assert leaf.values()[3:] == (1_000_001, 700_000, 300_001)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gift_id": b"\x01" * 31}, "gift_id must be 32 bytes"),
        ({"gross": -1}, "gross"),
        ({"creator_amount": 2**256}, "creator_amount"),
        ({"platform_amount": True}, "platform_amount"),
    ],
)
def test_gift_leaf_rejects_bad_fields(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "gift_id": b"\x01" * 32,
        "from_key": b"\x02" * 32,
        "creator_key": b"\x03" * 32,
        "gross": 10,
        "creator_amount": 7,
        "platform_amount": 3,
    }
    with pytest.raises(InvalidInput, match=message):
        GiftLeaf(**{**base, **kwargs})  # type: ignore[arg-type]


def test_duplicate_ids_are_refused() -> None:
    leaf = RechargeLeaf.of("same", b"\x01" * 32, 5)
    with pytest.raises(InvalidInput, match="duplicate payment id"):
        recharge_tree([leaf, dataclasses.replace(leaf, amount=6)])


def test_leaf_that_does_not_encode_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="does not encode"):
        leaf_hash(RECHARGE_LEAF_TYPES, (b"\x01" * 32, b"\x02" * 32, -5))
    with pytest.raises(InvalidInput, match="3 values"):
        leaf_hash(["bytes32", "uint256"], (b"\x01" * 32, 1, 2))


def test_other_abi_types_use_the_generic_encoder() -> None:
    values = ("0x" + "ab" * 20, "hello", True)
    types = ["address", "string", "bool"]
    tree = StandardMerkleTree.of([values, ("0x" + "cd" * 20, "", False)], types)
    assert tree.root == node_hash(
        keccak(keccak(encode(types, [values[0], "hello", True]))),
        keccak(keccak(encode(types, ["0x" + "cd" * 20, "", False]))),
    )


def test_large_tree_proofs_verify() -> None:
    rnd = random.Random(7)
    leaves = [RechargeLeaf(rnd.randbytes(32), rnd.randbytes(32), rnd.randrange(1, 2**63)) for _ in range(10_000)]
    tree = recharge_tree(leaves)
    assert len(tree) == 10_000
    for i in rnd.sample(range(10_000), 50):
        proof = tree.get_proof(i)
        assert len(proof) in (13, 14)  # ceil/floor of log2(10_000) in a complete tree
        assert process_proof(leaves[i].leaf_hash(), proof) == tree.root
