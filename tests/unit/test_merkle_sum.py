"""Liabilities Merkle-sum tree: encoding, range checks, proofs, and tamper detection."""

from __future__ import annotations

import dataclasses

import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenbridge.domain.errors import InvalidInput
from tokenbridge.domain.merkle_sum import (
    EMPTY_NODE,
    LiabilityProof,
    MerkleSumTree,
    leaf_node,
    parent_node,
    process_liability_proof,
    validate_balance,
    verify_liability,
)

b32 = st.binary(min_size=32, max_size=32)
balances_st = st.integers(min_value=0, max_value=2**64 - 1)
books = st.dictionaries(b32, balances_st, min_size=1, max_size=40)


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def test_leaf_and_parent_match_the_documented_abi_encoding() -> None:
    key = b"\x42" * 32
    leaf = leaf_node(key, 123)
    assert leaf.hash == keccak(keccak(encode(["bytes32", "uint256"], [key, 123])))
    assert leaf.sum == 123
    other = leaf_node(b"\x43" * 32, 7)
    parent = parent_node(leaf, other)
    types = ["bytes32", "uint256", "bytes32", "uint256"]
    assert parent.hash == keccak(encode(types, [leaf.hash, 123, other.hash, 7]))
    assert parent.sum == 130


@settings(max_examples=60, deadline=None)
@given(books)
def test_every_proof_verifies_and_total_is_the_sum(book: dict[bytes, int]) -> None:
    tree = MerkleSumTree.of(book)
    assert tree.total == sum(book.values())
    assert len(tree) == len(book)
    for key, balance in book.items():
        proof = tree.get_proof(key)
        assert proof.balance == balance == tree.balance_of(key)
        assert len(proof.sibling_hashes) == tree.depth
        assert verify_liability(tree.root, tree.total, proof)
        node = process_liability_proof(key, balance, proof.index, proof.sibling_hashes, proof.sibling_sums)
        assert (node.hash, node.sum) == (tree.root, tree.total)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(b32, balances_st, min_size=2, max_size=40), st.data())
def test_tampering_fails(book: dict[bytes, int], data: st.DataObject) -> None:
    tree = MerkleSumTree.of(book)
    key = data.draw(st.sampled_from(sorted(book)))
    proof = tree.get_proof(key)
    level = data.draw(st.integers(0, tree.depth - 1))
    hashes, sums = list(proof.sibling_hashes), list(proof.sibling_sums)

    other_balance = data.draw(balances_st.filter(lambda b: b != proof.balance))
    other_index = data.draw(st.integers(0, 2**tree.depth - 1).filter(lambda i: i != proof.index))
    bad_hashes = [*hashes[:level], _flip(hashes[level]), *hashes[level + 1 :]]
    bad_sums = [*sums[:level], sums[level] + data.draw(st.integers(1, 2**64)), *sums[level + 1 :]]
    tampered = [
        dataclasses.replace(proof, balance=other_balance),
        dataclasses.replace(proof, account_key=_flip(key)),
        dataclasses.replace(proof, index=other_index),
        dataclasses.replace(proof, index=proof.index + 2**tree.depth),  # bits above the depth
        dataclasses.replace(proof, sibling_hashes=tuple(bad_hashes)),
        dataclasses.replace(proof, sibling_sums=tuple(bad_sums)),
        dataclasses.replace(proof, sibling_hashes=tuple(hashes[:-1]), sibling_sums=tuple(sums[:-1])),
    ]
    for bad in tampered:
        assert not verify_liability(tree.root, tree.total, bad), bad
    assert not verify_liability(tree.root, tree.total + 1, proof)
    assert not verify_liability(_flip(tree.root), tree.total, proof)


def test_lowering_one_balance_and_raising_a_sibling_sum_is_caught() -> None:
    """The hidden-debt shape: keep the total, move value between a leaf and a sibling sum."""
    book = {bytes([i]) * 32: 1_000 * (i + 1) for i in range(1, 5)}
    tree = MerkleSumTree.of(book)
    proof = tree.get_proof(bytes([1]) * 32)
    shifted = dataclasses.replace(
        proof, balance=proof.balance - 500, sibling_sums=(proof.sibling_sums[0] + 500, *proof.sibling_sums[1:])
    )
    assert not tree.verify(shifted)


@pytest.mark.parametrize("bad", [2**64, -1, 1.5, True, "5", None])
def test_balance_range_check(bad: object) -> None:
    with pytest.raises(InvalidInput, match="balance of account 0x"):
        MerkleSumTree.of({b"\x01" * 32: 1, b"\x02" * 32: bad})  # type: ignore[dict-item]


def test_largest_balance_is_accepted() -> None:
    assert validate_balance(2**64 - 1) == 2**64 - 1
    tree = MerkleSumTree.of({b"\x01" * 32: 2**64 - 1, b"\x02" * 32: 2**64 - 1})
    assert tree.total == 2**65 - 2
    assert tree.verify(tree.get_proof(0))


def test_out_of_range_balance_in_a_proof_is_a_failed_verification() -> None:
    tree = MerkleSumTree.of({b"\x01" * 32: 5})
    proof = dataclasses.replace(tree.get_proof(0), balance=2**64)
    assert not verify_liability(tree.root, tree.total, proof)
    with pytest.raises(InvalidInput, match="2\\*\\*64"):
        process_liability_proof(proof.account_key, proof.balance, 0, (), ())


def test_duplicate_and_malformed_keys_are_refused() -> None:
    with pytest.raises(InvalidInput, match="appears twice"):
        MerkleSumTree.of([(b"\x01" * 32, 1), (b"\x01" * 32, 2)])
    with pytest.raises(InvalidInput, match="32 bytes"):
        MerkleSumTree.of([(b"\x01" * 31, 1)])


def test_single_leaf_is_the_root_and_empty_tree_commits_to_zero() -> None:
    tree = MerkleSumTree.of({b"\x07" * 32: 99})
    assert (tree.root, tree.total, tree.depth) == (leaf_node(b"\x07" * 32, 99).hash, 99, 0)
    assert tree.verify(tree.get_proof(b"\x07" * 32))
    empty = MerkleSumTree.of({})
    assert (empty.root, empty.total) == (bytes(32), 0)
    with pytest.raises(InvalidInput):
        empty.get_proof(0)


def test_leaves_sorted_by_key_and_padded_with_empty_nodes() -> None:
    keys = [bytes([3]) * 32, bytes([1]) * 32, bytes([2]) * 32]
    tree = MerkleSumTree.of([(k, 10) for k in keys])
    assert tree.keys == sorted(keys)
    assert tree.depth == 2
    assert tree.levels[0][3] == EMPTY_NODE
    last = tree.get_proof(bytes([3]) * 32)
    assert last.index == 2
    assert (last.sibling_hashes[0], last.sibling_sums[0]) == (bytes(32), 0)
    expected_root = parent_node(
        parent_node(leaf_node(keys[1], 10), leaf_node(keys[2], 10)), parent_node(leaf_node(keys[0], 10), EMPTY_NODE)
    )
    assert (tree.root, tree.total) == (expected_root.hash, 30)


def test_equal_balances_get_distinct_leaves() -> None:
    tree = MerkleSumTree.of({b"\x01" * 32: 50, b"\x02" * 32: 50})
    assert tree.levels[0][0].hash != tree.levels[0][1].hash


def test_proof_json_round_trip() -> None:
    tree = MerkleSumTree.of({bytes([i]) * 32: 2**63 + i for i in range(5)})
    proof = tree.get_proof(3)
    again = LiabilityProof.from_json(proof.to_json())
    assert again == proof
    assert tree.verify(again)
    with pytest.raises(InvalidInput, match="malformed"):
        LiabilityProof.from_json({"account_key": "0x00"})


def test_mismatched_proof_lengths_fail() -> None:
    tree = MerkleSumTree.of({bytes([i]) * 32: i for i in range(4)})
    proof = tree.get_proof(1)
    assert not tree.verify(dataclasses.replace(proof, sibling_sums=proof.sibling_sums[:-1]))


def test_sibling_sum_above_its_level_capacity_is_refused() -> None:
    """Same range check as CoinVault.verifyLiability: a sibling at level i sums below 2**(64+i)."""
    key = b"\x01" * 32
    with pytest.raises(InvalidInput, match="below 2\\*\\*64"):
        process_liability_proof(key, 1, 0, (bytes(32),), (2**64,))
    node = process_liability_proof(key, 1, 0, (bytes(32), bytes(32)), (2**64 - 1, 2**65 - 1))
    assert node.sum == 1 + 2**64 - 1 + 2**65 - 1
    with pytest.raises(InvalidInput, match="deeper than 64"):
        process_liability_proof(key, 1, 0, (bytes(32),) * 65, (0,) * 65)
