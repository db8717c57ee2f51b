#!/usr/bin/env python3
"""Smoke-check a tokenbridge deployment against the chain (read-only, no key needed).

Reads the deployment record and checks: the node is on the record's chain; code exists at the
vault and the coin; vault.coin() and coin.vault() point at each other; the coin has 6 decimals;
the recorded admin, bridge and pauser hold their roles and the deployer holds none it was not
given; split rate, split delay, payout delay and both allowances are sane; neither the vault
nor the coin is paused. Prints every check; exits 1 with the list of failures, 2 when the
deployment cannot be checked at all (no record, node unreachable).

    .venv/bin/python scripts/smoke_check.py --rpc-url https://rpc.example --deployment deployments/8453.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenbridge.domain.errors import TokenbridgeError

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(
    rpc_url: str | None, deployment: Path | None, min_split_delay: int, min_payout_delay: int
) -> dict[str, Any]:
    from tokenbridge.adapters.chain.artifacts import artifact_hashes
    from tokenbridge.adapters.chain.vault import VaultClient
    from tokenbridge.entrypoints import cli_common as common

    w3 = common.connect(rpc_url)
    chain_id = int(w3.eth.chain_id)
    path = common.deployment_path(chain_id, deployment)
    d = common.read_deployment(path)
    checks: list[Check] = []
    warnings: list[str] = []

    def check(name: str, ok: bool, detail: str) -> bool:
        checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    check("chain id", d.chain_id == chain_id, f"record {d.chain_id}, node {chain_id}")
    vault_code = check("vault code", common.has_code(w3, d.vault), f"code at {d.vault}")
    coin_code = check("coin code", common.has_code(w3, d.coin), f"code at {d.coin}")
    result: dict[str, Any] = {"deployment": str(path), "chain_id": chain_id, "vault": d.vault}
    if not (vault_code and coin_code and d.chain_id == chain_id):
        return _finish(result, checks, warnings)

    client = VaultClient(w3, d.vault)
    check("vault.coin", client.coin_address == d.coin, f"vault.coin() = {client.coin_address}, record {d.coin}")
    coin_vault = str(client.coin.functions.vault().call())
    check("coin.vault", coin_vault == d.vault, f"coin.vault() = {coin_vault}")
    decimals = int(client.coin.functions.decimals().call())
    check("decimals", decimals == 6, f"coin decimals = {decimals}")

    for role in ("admin", "bridge", "pauser"):
        holder = getattr(d, role)
        check(f"{role} role", client.has_role(role, holder), f"recorded holder {holder}")
    for role in ("admin", "bridge", "pauser"):
        if d.deployer != getattr(d, role):
            check(
                f"deployer has no {role}",
                not client.has_role(role, d.deployer),
                f"deployer {d.deployer} must not keep the {role} role",
            )
    if d.bridge != d.admin:
        check("bridge is not admin", not client.has_role("admin", d.bridge), f"bridge key {d.bridge} without admin")
    else:
        warnings.append(f"one address {d.admin} is both admin and bridge (fine on a devnet only)")
    if not common.has_code(w3, d.admin):
        warnings.append(f"admin {d.admin} is a plain key (EOA); hand it to a multisig: scripts/handover_admin.sh")

    bps = client.creator_bps()
    check("split rate", 0 <= bps <= 10_000, f"creatorBps = {bps}")
    split_delay = client.split_delay()
    check("split delay", split_delay >= min_split_delay, f"splitDelay = {split_delay} s (minimum {min_split_delay})")
    payout_delay = client.payout_delay()
    check(
        "payout delay", payout_delay >= min_payout_delay, f"payoutDelay = {payout_delay} s (minimum {min_payout_delay})"
    )
    pending = client.pending_creator_bps()
    if pending.exists:
        warnings.append(
            f"a split change to {pending.bps} bps is pending (effective {common.iso_utc(pending.effective_at)})"
        )
    for label, allowance in (("mint", client.mint_allowance()), ("payout", client.payout_allowance())):
        check(
            f"{label} allowance",
            allowance.limit > 0 and allowance.period > 0 and 0 <= allowance.available <= allowance.limit,
            f"limit {allowance.limit} per {allowance.period} s, available {allowance.available}",
        )
    check("vault not paused", not client.paused(), "paused() = " + str(client.paused()).lower())
    check("coin not paused", not client.coin_paused(), "coin paused() = " + str(client.coin_paused()).lower())
    if d.artifact_hashes and d.artifact_hashes != artifact_hashes():
        warnings.append("the record's artifact hashes differ from this package's artifacts (another build?)")
    return _finish(result, checks, warnings)


def _finish(result: dict[str, Any], checks: list[Check], warnings: list[str]) -> dict[str, Any]:
    failures = [c.name for c in checks if not c.ok]
    return {
        **result,
        "ok": not failures,
        "failures": failures,
        "checks": [asdict(c) for c in checks],
        "warnings": warnings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smoke_check.py",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rpc-url", help="JSON-RPC URL (default: $TOKENBRIDGE_RPC_URL)")
    parser.add_argument(
        "--deployment", type=Path, help="deployment record (default: $TOKENBRIDGE_DEPLOYMENTS_DIR/<chain id>.json)"
    )
    parser.add_argument("--min-split-delay", type=int, default=3_600, help="smallest acceptable splitDelay, seconds")
    parser.add_argument("--min-payout-delay", type=int, default=3_600, help="smallest acceptable payoutDelay, seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    try:
        report = run_checks(args.rpc_url, args.deployment, args.min_split_delay, args.min_payout_delay)
    except TokenbridgeError as exc:
        message = " ".join(exc.detail.split())
        print(f"error: {message}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "error": message}))
        return EXIT_UNUSABLE
    except Exception as exc:  # never a traceback: say what broke
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.json:
        print(json.dumps(report))
    else:
        for c in report["checks"]:
            print(f"{'ok  ' if c['ok'] else 'FAIL'}  {c['name']}: {c['detail']}")
        for w in report["warnings"]:
            print(f"warn  {w}")
        if report["ok"]:
            print(
                f"smoke check passed: {len(report['checks'])} checks on {report['vault']} (chain {report['chain_id']})"
            )
        else:
            print(f"smoke check FAILED: {', '.join(report['failures'])}", file=sys.stderr)
    return EXIT_OK if report["ok"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
