"""CLI commands that touch the chain: devnet, deploy, demo.

Errors raised on purpose are `TokenbridgeError`s; the root `main()` prints them as one line.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tokenbridge.domain.errors import ChainError, ConfigurationError, InvalidInput

if TYPE_CHECKING:
    from web3 import Web3

    from tokenbridge.adapters.chain.deploy import Deployment, VaultParams
    from tokenbridge.adapters.chain.devnet import Anvil

console = Console(highlight=False)

DEFAULT_KEY_ENV = "TOKENBRIDGE_BRIDGE_PRIVATE_KEY"


# --- helpers shared by the commands ----------------------------------------------------------


def connect(rpc_url: str, timeout: float = 30.0) -> Web3:
    """A Web3 over HTTP that answered `eth_chainId`, or a one-line ChainError."""
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    try:
        w3.eth.chain_id  # noqa: B018 (the probe)
    except Exception as exc:  # requests/web3 raise many unrelated types for an unreachable node
        raise ChainError(f"cannot reach an Ethereum node at {rpc_url}: {type(exc).__name__}") from None
    return w3


def load_key(*, dev: bool, key_env: str) -> Any:
    """The deployer's LocalAccount: anvil's first dev key with --dev, else the key in `key_env`."""
    from eth_account import Account

    from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS

    if dev:
        return Account.from_key(DEV_PRIVATE_KEYS[0])
    raw = os.environ.get(key_env)
    if not raw and key_env == DEFAULT_KEY_ENV:
        from tokenbridge.config import load_settings

        secret = load_settings().bridge_private_key  # also reads .env
        raw = secret.get_secret_value() if secret else None
    if not raw:
        raise ConfigurationError(f"no deployer key: set {key_env} (or pass --dev on a local anvil)")
    try:
        return Account.from_key(raw.strip())
    except Exception:  # never echo the value: it is a secret
        raise ConfigurationError(f"{key_env} does not hold a valid private key") from None


def _address(value: str | None, default: str, option: str) -> str:
    from eth_utils.address import is_address, to_checksum_address

    if value is None:
        return str(default)
    if not is_address(value):
        raise InvalidInput(f"{option} must be an Ethereum address, got {value!r}")
    return str(to_checksum_address(value))


@dataclass(frozen=True, slots=True)
class DeployOutcome:
    deployment: Deployment
    path: Path
    replaced: str | None  # vault address of the deployment this one replaced, if any


def deploy_and_record(
    w3: Web3,
    deployer: Any,
    *,
    admin: str,
    bridge: str,
    pauser: str,
    params: VaultParams,
    deployments_dir: Path,
    redeploy: bool,
) -> DeployOutcome:
    """Deploy unless a live deployment is recorded for this chain; write deployments/<chain_id>.json."""
    from tokenbridge.adapters.chain.deploy import Deployment, deploy

    chain_id = int(w3.eth.chain_id)
    path = deployments_dir / f"{chain_id}.json"
    replaced: str | None = None
    if path.exists():
        try:
            previous = Deployment.from_json(path.read_text())
        except (ValueError, TypeError) as exc:
            if not redeploy:
                raise ConfigurationError(
                    f"{path} is not a deployment record ({exc}); pass --redeploy to replace it"
                ) from None
        else:
            live = len(w3.eth.get_code(previous.vault)) > 0  # type: ignore[arg-type]
            if live and not redeploy:
                raise ConfigurationError(
                    f"contracts already deployed on chain {chain_id} at {previous.vault} ({path}); "
                    "pass --redeploy to deploy a new set"
                )
            replaced = previous.vault
    deployment = deploy(w3, deployer, admin, bridge, pauser, params)
    deployments_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(deployment.to_json())
    tmp.replace(path)
    return DeployOutcome(deployment, path, replaced)


def _deployment_table(d: Deployment, title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("chain id", str(d.chain_id)),
        ("CoinVault", d.vault),
        ("CreatorCoin", d.coin),
        ("admin", d.admin),
        ("bridge", d.bridge),
        ("pauser", d.pauser),
        ("deployer", d.deployer),
        ("deploy block", str(d.deploy_block)),
        ("deploy tx", d.tx_hashes.get("CoinVault", "")),
    ]
    for name, digest in sorted(d.artifact_hashes.items()):
        rows.append((f"{name} artifact sha256", digest))
    for row in rows:
        table.add_row(*row)
    return table


def _stop(node: Anvil) -> None:
    """Stop anvil by pid and close the stderr pipe `start_anvil` opened (no ResourceWarning)."""
    node.stop()
    if node.process.stderr is not None:
        node.process.stderr.close()


# --- devnet ----------------------------------------------------------------------------------


def devnet(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 8545,
    chain_id: Annotated[int, typer.Option("--chain-id", help="Chain id anvil reports.")] = 31337,
    block_time: Annotated[
        float | None,
        typer.Option("--block-time", help="Mine a block every N seconds (default: one block per transaction)."),
    ] = None,
) -> None:
    """Run a local anvil devnet until Ctrl-C (or SIGTERM), then stop it."""
    from eth_account import Account

    from tokenbridge.adapters.chain.devnet import start_anvil

    node = start_anvil(port=port, chain_id=chain_id, block_time=block_time)
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        console.print("[bold]funded dev accounts[/] (anvil's public test keys: never use them on a real chain)")
        for i, key in enumerate(node.accounts):
            console.print(f"({i}) {Account.from_key(key).address}  {key}", soft_wrap=True)
        console.print(f"RPC URL   {node.rpc_url}")
        console.print(f"chain id  {node.chain_id}")
        console.print(f"anvil pid {node.pid}; press Ctrl-C to stop")
        while not stop.wait(0.5):
            if node.process.poll() is not None:
                raise ChainError(f"anvil exited unexpectedly with code {node.process.returncode}")
        console.print("stopping anvil")
    finally:
        _stop(node)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- deploy ----------------------------------------------------------------------------------


def deploy_command(
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", help="JSON-RPC URL (default: $TOKENBRIDGE_RPC_URL).")
    ] = None,
    dev: Annotated[bool, typer.Option("--dev", help="Sign with anvil's first dev key (local devnets only).")] = False,
    key_env: Annotated[
        str, typer.Option("--key-env", help="Environment variable holding the deployer key.")
    ] = DEFAULT_KEY_ENV,
    admin: Annotated[
        str | None, typer.Option(help="Admin role holder (a multisig in production) (default: the deployer).")
    ] = None,
    bridge: Annotated[
        str | None, typer.Option(help="Bridge role holder (the worker's hot key) (default: the deployer).")
    ] = None,
    pauser: Annotated[str | None, typer.Option(help="Pauser role holder (default: the deployer).")] = None,
    name: Annotated[str, typer.Option(help="ERC-20 name.")] = "Creator Coin",
    symbol: Annotated[str, typer.Option(help="ERC-20 symbol.")] = "CREATOR",
    creator_bps: Annotated[
        int, typer.Option("--creator-bps", help="Creator share in basis points (0..10000).")
    ] = 8_000,
    split_delay: Annotated[
        int, typer.Option("--split-delay", help="Seconds between proposing and applying a split.")
    ] = 86_400,
    payout_delay: Annotated[
        int, typer.Option("--payout-delay", help="Seconds before a settled credit is payable.")
    ] = 86_400,
    maturity_granularity: Annotated[
        int | None,
        typer.Option(
            "--maturity-granularity",
            help="Seconds per maturity cell (immutable): a credit waits payout-delay plus up to this minus 1 s. "
            "Default: 3600 for a payout delay of 65536 s or more, else 1.",
        ),
    ] = None,
    mint_limit: Annotated[int, typer.Option("--mint-limit", help="Mint allowance per period, in base units.")] = 10**15,
    mint_period: Annotated[
        int, typer.Option("--mint-period", help="Seconds for the mint allowance to refill.")
    ] = 86_400,
    payout_limit: Annotated[
        int, typer.Option("--payout-limit", help="Payout allowance per period, in base units.")
    ] = 10**14,
    payout_period: Annotated[
        int, typer.Option("--payout-period", help="Seconds for the payout allowance to refill.")
    ] = 86_400,
    deployments_dir: Annotated[
        Path | None,
        typer.Option(
            "--deployments-dir", help="Where <chain_id>.json is written (default: $TOKENBRIDGE_DEPLOYMENTS_DIR)."
        ),
    ] = None,
    redeploy: Annotated[bool, typer.Option("--redeploy", help="Deploy even if a live deployment is recorded.")] = False,
) -> None:
    """Deploy CoinVault + CreatorCoin and record them in deployments/<chain_id>.json."""
    from tokenbridge.adapters.chain.deploy import VaultParams
    from tokenbridge.config import load_settings

    settings = load_settings()
    for label, value in (("--creator-bps", creator_bps),):
        if not 0 <= value <= 10_000:
            raise InvalidInput(f"{label} must be in [0, 10000], got {value}")
    for label, value in (
        ("--split-delay", split_delay),
        ("--payout-delay", payout_delay),
        ("--mint-limit", mint_limit),
        ("--payout-limit", payout_limit),
    ):
        if value < 0:
            raise InvalidInput(f"{label} must not be negative, got {value}")
    for label, value in (
        ("--mint-period", mint_period),
        ("--payout-period", payout_period),
        ("--maturity-granularity", 1 if maturity_granularity is None else maturity_granularity),
    ):
        if value <= 0:
            raise InvalidInput(f"{label} must be positive, got {value}")
    deployer = load_key(dev=dev, key_env=key_env)
    roles = {
        "admin": _address(admin, deployer.address, "--admin"),
        "bridge": _address(bridge, deployer.address, "--bridge"),
        "pauser": _address(pauser, deployer.address, "--pauser"),
    }
    params = VaultParams(
        name=name,
        symbol=symbol,
        creator_bps=creator_bps,
        split_delay=split_delay,
        payout_delay=payout_delay,
        maturity_granularity=maturity_granularity,
        mint_limit=mint_limit,
        mint_period=mint_period,
        payout_limit=payout_limit,
        payout_period=payout_period,
    )
    w3 = connect(rpc_url or settings.rpc_url)
    outcome = deploy_and_record(
        w3,
        deployer,
        **roles,
        params=params,
        deployments_dir=deployments_dir or settings.deployments_dir,
        redeploy=redeploy,
    )
    console.print(_deployment_table(outcome.deployment, "CoinVault deployed"))
    if outcome.replaced:
        console.print(f"replaced the previous deployment at {outcome.replaced}")
    if roles["admin"] == deployer.address and not dev:
        console.print("[yellow]note:[/] the deployer key holds the admin role; hand it to a multisig (--admin)")
    console.print(f"wrote {outcome.path}")


# --- demo ------------------------------------------------------------------------------------


def demo_command(
    payout_delay: Annotated[
        int, typer.Option("--payout-delay", help="Challenge window of the demo vault, seconds.")
    ] = 3_600,
) -> None:
    """Foundation demo: anvil + deploy + one on-chain round, verified through the vault's views."""
    from eth_account import Account

    from tokenbridge.adapters.chain.deploy import VaultParams
    from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS, start_anvil
    from tokenbridge.adapters.chain.vault import VaultClient
    from tokenbridge.services.demo_chain import DemoStep, run_demo_round

    started = time.monotonic()
    admin, bridge, pauser = (Account.from_key(k) for k in DEV_PRIVATE_KEYS[:3])
    node = start_anvil()
    try:
        console.print(f"anvil running at {node.rpc_url} (chain id {node.chain_id}, pid {node.pid})")
        w3 = connect(node.rpc_url)
        from tokenbridge.adapters.chain.deploy import deploy

        deployment = deploy(
            w3, admin, admin.address, bridge.address, pauser.address, VaultParams(payout_delay=payout_delay)
        )
        console.print(_deployment_table(deployment, "deployed"))
        client = VaultClient(w3, deployment.vault)

        def advance_time(seconds: int) -> None:
            node.rpc("evm_increaseTime", seconds)
            node.rpc("evm_mine")

        def fund_wallet(address: str, wei: int) -> None:
            node.rpc("anvil_setBalance", address, hex(wei))

        def show(step: DemoStep) -> None:
            tx = f"  tx {step.tx_hash[:12]}… gas {step.gas_used:,}" if step.tx_hash else ""
            console.print(f"[green]✓[/] {step.action}: {step.detail}{tx}")

        report = run_demo_round(client, bridge, advance_time, fund_wallet, on_step=show)
    finally:
        _stop(node)

    checks = Table(title="tokenbridge demo: what was checked")
    checks.add_column("check")
    checks.add_column("result")
    for check, passed in report.checks.items():
        checks.add_row(check, "[green]ok[/]" if passed else "[red]FAILED[/]")
    console.print(checks)
    figures = Table(title="balances after the round (coins)")
    figures.add_column("figure")
    figures.add_column("amount", justify="right")
    for figure, value in report.figures.items():
        figures.add_row(figure, value)
    console.print(figures)
    console.print(f"demo finished in {time.monotonic() - started:.1f} s; anvil stopped")
    if not report.ok:
        raise ChainError("demo checks failed")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.command("devnet")(devnet)
    app.command("deploy")(deploy_command)
    app.command("demo")(demo_command)
