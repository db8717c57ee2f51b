"""Compile contracts/ into deterministic JSON artifacts (development-time only).

The compiler is solc-js (`node_modules/solc`, the official compiler built to WebAssembly, runs
offline) driven through its standard-JSON interface, or a native `solc` on PATH whose version
matches the pinned one. Imports are resolved here, in Python, before compiling: every source
unit (ours and `@openzeppelin/...` from node_modules) goes into the standard-JSON input with its
content, so both backends see identical input and no import callback is needed.

Artifacts are written with sorted keys and fixed indentation, so recompiling unchanged sources
reproduces them byte for byte and `scripts/compile_contracts.py --check` can detect drift.
Nothing here runs at application run time; `artifacts.py` reads the committed JSON files.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenbridge.domain.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parents[4]
CONTRACTS_DIR = PROJECT_ROOT / "contracts"
NODE_MODULES = PROJECT_ROOT / "node_modules"
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"

#: The compiler the committed artifacts come from (package.json pins solc-js to the same version).
PINNED_SOLC = "0.8.37"

#: The contracts that get an artifact (source unit, contract name).
TARGETS: tuple[tuple[str, str], ...] = (
    ("contracts/CoinVault.sol", "CoinVault"),
    ("contracts/CreatorCoin.sol", "CreatorCoin"),
)

#: Compiler settings: the reference for gas numbers is optimizer on, 200 runs, EVM cancun.
SETTINGS: dict[str, Any] = {
    "evmVersion": "cancun",
    "viaIR": True,
    "optimizer": {"enabled": True, "runs": 200},
    "metadata": {"bytecodeHash": "ipfs"},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}

_IMPORT_RE = re.compile(r"""^\s*import\s+(?:[^"';]*?\s+from\s+)?["']([^"']+)["']""", re.MULTILINE)

_NODE_COMPILE = r"""
const solc = require('solc');
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const output = solc.compile(input);
  process.stdout.write(JSON.stringify({version: solc.version(), output: JSON.parse(output)}));
});
"""


@dataclass(frozen=True, slots=True)
class CompileResult:
    """What one compilation produced: the artifacts by contract name and the compiler used."""

    artifacts: dict[str, dict[str, Any]]
    compiler_version: str
    backend: str
    warnings: tuple[str, ...] = ()


def _read_source(unit: str) -> str:
    if unit.startswith("contracts/"):
        path = PROJECT_ROOT / unit
    elif unit.startswith("@"):
        path = NODE_MODULES / unit
    else:
        raise ConfigurationError(f"cannot resolve Solidity import {unit!r}")
    if not path.is_file():
        hint = " (run `npm ci`)" if unit.startswith("@") else ""
        raise ConfigurationError(f"Solidity source {unit!r} not found at {path}{hint}")
    return path.read_text(encoding="utf-8")


def collect_sources(roots: Sequence[str]) -> dict[str, str]:
    """Source unit name -> content for `roots` and everything they import, transitively."""
    sources: dict[str, str] = {}
    todo = list(roots)
    while todo:
        unit = todo.pop()
        if unit in sources:
            continue
        content = _read_source(unit)
        sources[unit] = content
        for target in _IMPORT_RE.findall(content):
            if target.startswith("."):
                target = posixpath.normpath(posixpath.join(posixpath.dirname(unit), target))
            todo.append(target)
    return dict(sorted(sources.items()))


def contract_sources() -> list[str]:
    """Every .sol file under contracts/, as source unit names."""
    return sorted(p.relative_to(PROJECT_ROOT).as_posix() for p in CONTRACTS_DIR.rglob("*.sol"))


def standard_json_input(sources: Mapping[str, str]) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": {unit: {"content": content} for unit, content in sources.items()},
        "settings": SETTINGS,
    }


def _run_solcjs(payload: str) -> tuple[str, dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "solc").is_dir():
        raise ConfigurationError("solc-js not available: install node and run `npm ci` (installs node_modules/solc)")
    proc = subprocess.run(  # noqa: S603 (fixed argv, our own script)
        [node, "-e", _NODE_COMPILE], input=payload, capture_output=True, text=True, cwd=PROJECT_ROOT, check=False
    )
    if proc.returncode != 0:
        raise ConfigurationError(f"solc-js failed: {proc.stderr.strip()[:2000]}")
    reply = json.loads(proc.stdout)
    return str(reply["version"]), dict(reply["output"])


def _run_native(solc: str, payload: str) -> tuple[str, dict[str, Any]]:
    version = subprocess.run(  # noqa: S603 (binary found on PATH by the caller)
        [solc, "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"Version:\s*(\S+)", version)
    proc = subprocess.run(  # noqa: S603
        [solc, "--standard-json"], input=payload, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ConfigurationError(f"solc failed: {proc.stderr.strip()[:2000]}")
    return (match.group(1) if match else "unknown"), dict(json.loads(proc.stdout))


def pinned_solc_version() -> str | None:
    """The solc version pinned in node_modules/solc/package.json, if installed."""
    package = NODE_MODULES / "solc" / "package.json"
    if not package.is_file():
        return None
    return str(json.loads(package.read_text())["version"])


def compile_contracts(backend: str = "auto") -> CompileResult:
    """Compile every target contract; raise ConfigurationError with solc's messages on any error.

    backend: "solcjs", "native" (a `solc` on PATH) or "auto" (solc-js when installed, else a native
    solc whose version equals the pinned one).
    """
    sources = collect_sources(contract_sources())
    payload = json.dumps(standard_json_input(sources), sort_keys=True)
    native = shutil.which("solc")
    if backend == "auto":
        backend = "solcjs" if (NODE_MODULES / "solc").is_dir() and shutil.which("node") else "native"
    if backend == "solcjs":
        version, output = _run_solcjs(payload)
    elif backend == "native":
        if native is None:
            raise ConfigurationError("no Solidity compiler: install node + `npm ci`, or put solc on PATH")
        version, output = _run_native(native, payload)
        if not version.startswith(PINNED_SOLC + "+"):
            raise ConfigurationError(f"native solc is {version}; artifacts are pinned to solc {PINNED_SOLC}")
    else:
        raise ConfigurationError(f"unknown compiler backend {backend!r}")

    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ConfigurationError("solc errors:\n" + "\n".join(e.get("formattedMessage", str(e)) for e in errors))

    # "0.8.37+commit.f401782d.Emscripten.clang" and "...Linux.g++" are the same compiler: keep the
    # platform-independent part so both backends produce identical artifacts.
    version = ".".join(version.split(".")[:4]) if "+commit." in version else version
    source_hashes = {unit: hashlib.sha256(content.encode()).hexdigest() for unit, content in sources.items()}
    artifacts: dict[str, dict[str, Any]] = {}
    for unit, name in TARGETS:
        compiled = output["contracts"][unit][name]
        artifacts[name] = {
            "contractName": name,
            "sourceName": unit,
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            "compiler": {"name": "solc", "version": version},
            "settings": {k: v for k, v in SETTINGS.items() if k != "outputSelection"},
            "sourceHashes": source_hashes,
        }
    warnings = tuple(
        e.get("formattedMessage", str(e))
        for e in output.get("errors", [])
        if e.get("severity") == "warning" and str(e.get("sourceLocation", {}).get("file", "")).startswith("contracts/")
    )
    return CompileResult(artifacts=artifacts, compiler_version=version, backend=backend, warnings=warnings)


def render_artifact(artifact: Mapping[str, Any]) -> str:
    """The committed text of an artifact: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(artifact, sort_keys=True, indent=2) + "\n"


def write_artifacts(result: CompileResult, directory: Path = ARTIFACTS_DIR) -> list[Path]:
    """Write one `<Contract>.json` per target into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in sorted(result.artifacts.items()):
        path = directory / f"{name}.json"
        path.write_text(render_artifact(artifact), encoding="utf-8")
        written.append(path)
    return written


def diff_artifacts(expected_dir: Path, actual_dir: Path) -> list[str]:
    """Human-readable differences between two artifact directories (empty when identical)."""
    problems: list[str] = []
    expected = {p.name: p for p in expected_dir.glob("*.json")}
    actual = {p.name: p for p in actual_dir.glob("*.json")}
    for name in sorted(expected.keys() - actual.keys()):
        problems.append(f"{name}: committed but no longer produced")
    for name in sorted(actual.keys() - expected.keys()):
        problems.append(f"{name}: produced but not committed (run `make compile`)")
    for name in sorted(expected.keys() & actual.keys()):
        old_text = expected[name].read_text()
        new_text = actual[name].read_text()
        if old_text == new_text:
            continue
        old, new = json.loads(old_text), json.loads(new_text)
        fields = [key for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
        if fields:
            problems.extend(f"{name}: field {key!r} differs" for key in fields)
        else:
            problems.append(f"{name}: formatting differs")
    return problems
