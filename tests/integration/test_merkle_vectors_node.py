"""Python Merkle trees against the reference JS: @openzeppelin/merkle-tree for the standard
trees, and an independent JS build of the liabilities sum tree (scripts/merkle_vectors.mjs)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tokenbridge.domain.merkle import GIFT_LEAF_TYPES, RECHARGE_LEAF_TYPES, StandardMerkleTree
from tokenbridge.domain.merkle_sum import LiabilityProof, MerkleSumTree

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "merkle_vectors.mjs"
NODE = shutil.which("node")
OZ_MERKLE = ROOT / "node_modules" / "@openzeppelin" / "merkle-tree" / "package.json"

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not on PATH (needed for the JS reference vectors)"),
    pytest.mark.skipif(
        not OZ_MERKLE.exists(),
        reason="node_modules/@openzeppelin/merkle-tree missing: run `npm ci` in the project root",
    ),
]

SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 100, 257]


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _random_value(rnd: random.Random, abi_type: str) -> Any:
    if abi_type == "bytes32":
        return rnd.randbytes(32)
    if abi_type == "uint256":
        return rnd.choice([0, 1, 2**63 - 1, 2**256 - 1, rnd.randrange(2**256), rnd.randrange(10**12)])
    if abi_type == "address":
        return _hex(rnd.randbytes(20))
    if abi_type == "string":
        return "".join(rnd.choice("abcé€ 0") for _ in range(rnd.randrange(0, 40)))
    if abi_type == "bool":
        return rnd.random() < 0.5
    raise AssertionError(abi_type)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return _hex(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _run_node(cases: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    assert NODE is not None
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    out = subprocess.run([NODE, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_standard_trees_match_openzeppelin_js(tmp_path: Path) -> None:
    rnd = random.Random(20261126)
    encodings = [GIFT_LEAF_TYPES, RECHARGE_LEAF_TYPES, ("address", "uint256"), ("string", "bytes32", "bool")]
    cases: list[dict[str, Any]] = []
    trees: list[StandardMerkleTree] = []
    for encoding in encodings:
        for size in SIZES:
            values = [tuple(_random_value(rnd, t) for t in encoding) for _ in range(size)]
            multi = rnd.sample(range(size), rnd.randrange(1, size + 1))
            trees.append(StandardMerkleTree.of(values, encoding))
            cases.append(
                {"types": list(encoding), "values": [[_jsonable(x) for x in v] for v in values], "multi": multi}
            )
    result = _run_node({"standard": cases}, tmp_path)["standard"]
    assert len(result) == len(cases)
    for tree, case, js in zip(trees, cases, result, strict=True):
        assert tree.hex_root == js["root"], case["types"]
        assert [[_hex(p) for p in tree.get_proof(i)] for i in range(len(tree))] == js["proofs"]
        assert tree.dump()["tree"] == js["dump"]["tree"]
        assert [v.tree_index for v in tree.values] == [v["treeIndex"] for v in js["dump"]["values"]]
        mp = tree.get_multiproof(case["multi"])
        assert [_hex(p) for p in mp.proof] == js["multiproof"]["proof"]
        assert list(mp.proof_flags) == js["multiproof"]["proofFlags"]
        assert [[_jsonable(x) for x in leaf] for leaf in mp.leaves] == js["multiproof"]["leaves"]
        # and the JS dump loads (and validates) in Python
        assert StandardMerkleTree.load(js["dump"]).root == tree.root


def test_liabilities_sum_tree_matches_independent_js_build(tmp_path: Path) -> None:
    rnd = random.Random(42)
    books: list[dict[bytes, int]] = [{}]
    for size in SIZES:
        books.append({rnd.randbytes(32): rnd.choice([0, 1, 2**64 - 1, rnd.randrange(2**64)]) for _ in range(size)})
    cases = [{"balances": [[_hex(k), str(v)] for k, v in book.items()]} for book in books]
    result = _run_node({"sum": cases}, tmp_path)["sum"]
    for book, js in zip(books, result, strict=True):
        tree = MerkleSumTree.of(book)
        assert (_hex(tree.root), str(tree.total)) == (js["root"], js["total"])
        assert len(js["proofs"]) == len(book)
        for js_proof in js["proofs"]:
            ours = tree.get_proof(js_proof["index"])
            assert [_hex(h) for h in ours.sibling_hashes] == js_proof["siblingHashes"]
            assert [str(s) for s in ours.sibling_sums] == js_proof["siblingSums"]
            parsed = LiabilityProof.from_json(
                {
                    "account_key": _hex(ours.account_key),
                    "balance": ours.balance,
                    "index": js_proof["index"],
                    "sibling_hashes": js_proof["siblingHashes"],
                    "sibling_sums": js_proof["siblingSums"],
                }
            )
            assert tree.verify(parsed)
