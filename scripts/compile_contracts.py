"""Compile contracts/ into src/tokenbridge/adapters/chain/artifacts/, or check them for drift.

python scripts/compile_contracts.py            # (re)write the committed artifacts
python scripts/compile_contracts.py --check    # recompile into a temp dir; exit 1 listing differences
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tokenbridge.adapters.chain.compiler import ARTIFACTS_DIR, compile_contracts, diff_artifacts, write_artifacts
from tokenbridge.domain.errors import ConfigurationError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--check", action="store_true", help="fail if the committed artifacts differ from a fresh build"
    )
    parser.add_argument("--backend", choices=["auto", "solcjs", "native"], default="auto")
    args = parser.parse_args(argv)
    try:
        result = compile_contracts(args.backend)
    except ConfigurationError as exc:
        print(f"compile failed: {exc.detail}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            write_artifacts(result, Path(tmp))
            problems = diff_artifacts(ARTIFACTS_DIR, Path(tmp))
        if problems:
            print("artifacts drifted from contracts/ (run `make compile`):", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            return 1
        print(f"artifacts up to date (solc {result.compiler_version}, {result.backend})")
        return 0
    for path in write_artifacts(result):
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    print(f"solc {result.compiler_version} ({result.backend})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
