#!/usr/bin/env python3
"""Deploy CoinVault + CreatorCoin to a real network, signed with an encrypted keystore.

The deployer key is decrypted in this process only: never on the command line, never in the
environment of a child process (the password comes from --password-env VAR or a hidden prompt).
Writes <deployments-dir>/<chain id>.json, then runs scripts/smoke_check.py on the result.
Exits 1 when the deployment or the smoke check fails.

    .venv/bin/python scripts/deploy_network.py --rpc-url https://rpc.example \\
        --keystore ~/keys/deployer.json --admin 0xSafe... --bridge 0xWorker... --pauser 0xOnCall...
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from tokenbridge.domain.errors import TokenbridgeError

HERE = Path(__file__).resolve().parent


def _parser() -> argparse.ArgumentParser:
    from tokenbridge.adapters.chain.deploy import VaultParams

    d = VaultParams()
    p = argparse.ArgumentParser(
        prog="deploy_network.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the target network")
    p.add_argument(
        "--keystore", type=Path, required=True, help="deployer's encrypted keystore (tokenbridge keys create)"
    )
    p.add_argument("--password-env", help="environment variable holding the keystore password (default: a prompt)")
    p.add_argument("--admin", help="admin role holder, a multisig in production (default: the deployer)")
    p.add_argument("--bridge", help="bridge role holder, the worker's key (default: the deployer)")
    p.add_argument("--pauser", help="pauser role holder (default: the deployer)")
    p.add_argument("--name", default=d.name, help="ERC-20 name (default: %(default)s)")
    p.add_argument("--symbol", default=d.symbol, help="ERC-20 symbol (default: %(default)s)")
    p.add_argument("--creator-bps", type=int, default=d.creator_bps, help="creator share (default: %(default)s)")
    p.add_argument("--split-delay", type=int, default=d.split_delay, help="seconds (default: %(default)s)")
    p.add_argument("--payout-delay", type=int, default=d.payout_delay, help="seconds (default: %(default)s)")
    p.add_argument("--mint-limit", type=int, default=d.mint_limit, help="base units per period (default: %(default)s)")
    p.add_argument("--mint-period", type=int, default=d.mint_period, help="seconds (default: %(default)s)")
    p.add_argument(
        "--payout-limit", type=int, default=d.payout_limit, help="base units per period (default: %(default)s)"
    )
    p.add_argument("--payout-period", type=int, default=d.payout_period, help="seconds (default: %(default)s)")
    p.add_argument(
        "--deployments-dir", type=Path, help="where <chain id>.json is written (default: $TOKENBRIDGE_DEPLOYMENTS_DIR)"
    )
    p.add_argument("--redeploy", action="store_true", help="deploy even if a live deployment is recorded")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation before sending")
    p.add_argument("--min-split-delay", type=int, default=3_600, help="passed to the smoke check")
    p.add_argument("--min-payout-delay", type=int, default=3_600, help="passed to the smoke check")
    return p


def deploy(args: argparse.Namespace) -> Path:
    from tokenbridge.adapters.chain.deploy import VaultParams
    from tokenbridge.config import load_settings
    from tokenbridge.domain.errors import ConfigurationError, InvalidInput
    from tokenbridge.entrypoints import cli_common as common
    from tokenbridge.entrypoints.cli_chain import deploy_and_record

    params = VaultParams(
        name=args.name,
        symbol=args.symbol,
        creator_bps=args.creator_bps,
        split_delay=args.split_delay,
        payout_delay=args.payout_delay,
        mint_limit=args.mint_limit,
        mint_period=args.mint_period,
        payout_limit=args.payout_limit,
        payout_period=args.payout_period,
    )
    params.as_tuple()  # validates the split rate before anything is signed
    w3 = common.connect(args.rpc_url)
    chain_id = int(w3.eth.chain_id)
    signer = common.load_signer(keystore=args.keystore, password_env=args.password_env)
    roles = {
        role: common.checksum(value, f"--{role}") if value else signer.address
        for role, value in (("admin", args.admin), ("bridge", args.bridge), ("pauser", args.pauser))
    }
    balance = int(w3.eth.get_balance(signer.address))  # type: ignore[arg-type]
    if balance == 0:
        raise ConfigurationError(f"deployer {signer.address} has no ETH on chain {chain_id} to pay for gas")
    print(f"chain {chain_id} at {args.rpc_url}; deployer {signer.address} (balance {balance} wei)")
    for role, holder in roles.items():
        print(f"  {role:<6} {holder}{'  (the deployer)' if holder == signer.address else ''}")
    if not args.yes:
        answer = input("deploy CoinVault + CreatorCoin with these roles? [y/N] ").strip().lower()
        if answer not in {"y", "yes"}:
            raise InvalidInput("not confirmed; nothing sent")
    outcome = deploy_and_record(
        w3,
        signer,
        **roles,
        params=params,
        deployments_dir=args.deployments_dir or load_settings().deployments_dir,
        redeploy=args.redeploy,
    )
    d = outcome.deployment
    print(f"CoinVault   {d.vault}\nCreatorCoin {d.coin}\nblock       {d.deploy_block}")
    print(f"wrote {outcome.path}")
    if roles["admin"] == signer.address:
        print("note: the deployer holds admin; hand it to a multisig with scripts/handover_admin.sh")
    return outcome.path


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        path = deploy(args)
    except TokenbridgeError as exc:
        print(f"error: {' '.join(exc.detail.split())}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("error: interrupted; nothing sent", file=sys.stderr)
        return 1
    smoke = [
        sys.executable,
        str(HERE / "smoke_check.py"),
        "--rpc-url",
        args.rpc_url,
        "--deployment",
        str(path),
        "--min-split-delay",
        str(args.min_split_delay),
        "--min-payout-delay",
        str(args.min_payout_delay),
    ]
    print("running the smoke check")
    return subprocess.run(smoke, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
