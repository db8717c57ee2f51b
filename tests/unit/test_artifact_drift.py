"""The compiled artifacts are committed; these checks catch drift without running solc.

`scripts/compile_contracts.py --check` (CI) recompiles and compares everything; here the
cheap half runs in every `make test`: the sources each artifact was built from must still
hash the same, and the comparison that `--check` relies on must notice each kind of change.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tokenbridge.adapters.chain.artifacts import load_artifact
from tokenbridge.adapters.chain.compiler import ARTIFACTS_DIR, collect_sources, diff_artifacts

CONTRACTS = ("CoinVault", "CreatorCoin")


@pytest.mark.parametrize("name", CONTRACTS)
def test_artifact_source_hashes_match_the_sources_on_disk(name: str) -> None:
    recorded = load_artifact(name).source_hashes
    sources = collect_sources(sorted(recorded))
    current = {unit: hashlib.sha256(text.encode()).hexdigest() for unit, text in sources.items()}
    assert current == recorded, "contracts changed since the artifacts were built: run `make compile`"
    assert f"contracts/{name}.sol" in recorded


@pytest.mark.parametrize("name", CONTRACTS)
def test_artifacts_load_without_a_compiler(name: str) -> None:
    artifact = load_artifact(name)
    assert any(entry.get("type") == "constructor" for entry in artifact.abi)
    assert len(artifact.bytecode.removeprefix("0x")) > 1000
    assert len(artifact.deployed_bytecode.removeprefix("0x")) > 1000


@pytest.fixture
def copies(tmp_path: Path) -> tuple[Path, Path]:
    expected = tmp_path / "committed"
    actual = tmp_path / "fresh"
    shutil.copytree(ARTIFACTS_DIR, expected)
    shutil.copytree(ARTIFACTS_DIR, actual)
    return expected, actual


def test_identical_artifacts_have_no_differences(copies: tuple[Path, Path]) -> None:
    assert diff_artifacts(*copies) == []


def test_a_changed_field_is_named(copies: tuple[Path, Path]) -> None:
    expected, actual = copies
    path = actual / "CoinVault.json"
    data = json.loads(path.read_text())
    data["bytecode"] = str(data["bytecode"])[:-2] + "00"
    path.write_text(json.dumps(data, sort_keys=True, indent=2) + "\n")
    assert diff_artifacts(expected, actual) == ["CoinVault.json: field 'bytecode' differs"]


def test_missing_and_extra_artifacts_are_reported(copies: tuple[Path, Path]) -> None:
    expected, actual = copies
    (actual / "CreatorCoin.json").unlink()
    (actual / "Extra.json").write_text("{}\n")
    problems = diff_artifacts(expected, actual)
    assert "CreatorCoin.json: committed but no longer produced" in problems
    assert any(p.startswith("Extra.json: produced but not committed") for p in problems)


def test_formatting_only_changes_still_count_as_drift(copies: tuple[Path, Path]) -> None:
    expected, actual = copies
    path = actual / "CreatorCoin.json"
    path.write_text(json.dumps(json.loads(path.read_text())))
    assert diff_artifacts(expected, actual) == ["CreatorCoin.json: formatting differs"]
