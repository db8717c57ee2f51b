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
    _check_writable(deployments_dir)  # before deploying: a record we cannot write is a lost deployment
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


def _check_writable(directory: Path) -> None:
    """Create `directory` if needed and prove a file can be written in it, or a one-line ConfigurationError."""
    import tempfile

    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(f"cannot write deployment records in {directory}: {reason}") from None


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
    """Stop anvil by pid (Anvil.stop also closes its stderr file)."""
    node.stop()


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


class _RichProgress:
    """`ProgressSink` of the demo: one Rich progress bar per phase."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task: Any = None
        self.phase = ""

    def begin(self, phase: str, total: int | None) -> None:
        self.phase = phase
        self.task = self.progress.add_task(phase, total=total)

    def update(self, completed: int, total: int | None = None) -> None:
        if self.task is not None:
            kwargs: dict[str, Any] = {"completed": completed}
            if total is not None:
                kwargs["total"] = total
            self.progress.update(self.task, **kwargs)

    def end(self, detail: str) -> None:
        if self.task is not None:
            task = self.progress.tasks[self.task]
            total = task.total if task.total is not None else max(task.completed, 1)
            label = f"{self.phase}: [dim]{detail}[/]" if detail else self.phase
            self.progress.update(self.task, total=total, completed=total, description=f"[green]✓[/] {label}")
            self.task = None


def _mark(ok: bool) -> str:
    return "[green]✓[/]" if ok else "[red]✗[/]"


def _coins(units: int) -> str:
    from tokenbridge.domain.money import format_units

    return format_units(units)


def _demo_report(result: Any, seconds: float) -> None:
    """The final Rich tables of `tokenbridge demo`."""
    creators = Table(title="creators: earned and paid on-chain vs the ledger (coins)")
    for col in ("creator", "gifts", "receipts' share", "earned on-chain", "ledger earned", "paid on-chain",
                "ledger paid", "wallet now", ""):  # fmt: skip
        creators.add_column(col, justify="left" if col == "creator" else "right")
    for r in result.creators:
        creators.add_row(
            r.id,
            str(r.gifts),
            _coins(r.gift_share),
            _coins(r.earned_on_chain),
            _coins(r.ledger_earnings + r.ledger_paid),
            _coins(r.paid_on_chain),
            _coins(r.ledger_paid),
            _coins(r.wallet_tokens),
            _mark(r.matches),
        )
    console.print(creators)

    receipts = Table(title="gift receipts verified from the chain alone")
    for col in ("gift", "epoch", "gross", "creator amount", "bps", "verified"):
        receipts.add_column(col, justify="left" if col in ("gift", "verified") else "right")
    for rr in result.receipts:
        verdict = _mark(rr.ok) + ("" if rr.ok else f" failed: {', '.join(rr.failed)}")
        receipts.add_row(
            rr.gift_id + (" (tampered)" if rr.tampered else ""),
            str(rr.epoch_id),
            _coins(rr.gross),
            _coins(rr.creator_amount),
            str(rr.bps),
            verdict,
        )
    console.print(receipts)

    s = result.solvency
    solvency = Table(title="reserve vs liabilities", show_header=False)
    solvency.add_column("figure")
    solvency.add_column("value", justify="right")
    if s:
        solvency.add_row("vault reserve (token balance)", _coins(int(s.get("reserve", 0))))
        solvency.add_row(
            f"committed liabilities (epoch {s.get('committed_epoch', '?')})", _coins(int(s.get("committed_total", 0)))
        )
        if "ledger_liabilities" in s:
            solvency.add_row("ledger liabilities now", _coins(int(s["ledger_liabilities"])))
        if "expected_reserve" in s:
            solvency.add_row("recharged - refunded - paid + deposited", _coins(int(s["expected_reserve"])))
        solvency.add_row("solvent() on-chain", _mark(bool(s.get("solvent"))))
    if result.chargeback:
        cb = result.chargeback
        solvency.add_row(f"debt of {cb['account']} (chargeback after spending)", _coins(int(cb["debt"])))
    console.print(solvency)

    gas = Table(title="gas by kind of transaction (from the receipts)")
    for col in ("transaction", "sent by", "count", "gas used", "per tx"):
        gas.add_column(col, justify="left" if col in ("transaction", "sent by") else "right")
    for g in result.gas:
        gas.add_row(g.kind, g.sender, str(g.count), f"{g.gas:,}", f"{g.gas // max(1, g.count):,}")
    gas.add_row("[bold]total[/]", "", str(sum(g.count for g in result.gas)), f"{sum(g.gas for g in result.gas):,}", "")
    console.print(gas)

    counts = Table(title="counts and timings")
    counts.add_column("count")
    counts.add_column("n", justify="right")
    counts.add_column("phase")
    counts.add_column("seconds", justify="right")
    count_rows = list(result.counts.items())
    time_rows = [*result.timings.items(), ("total", seconds)]
    for i in range(max(len(count_rows), len(time_rows))):
        c = count_rows[i] if i < len(count_rows) else ("", "")
        t = time_rows[i] if i < len(time_rows) else ("", "")
        counts.add_row(c[0], str(c[1]), t[0], f"{t[1]:.1f}" if t[0] else "")
    console.print(counts)

    checks = Table(title="checks")
    checks.add_column("check")
    checks.add_column("", justify="center")
    checks.add_column("detail", overflow="fold")
    for c in result.checks:
        checks.add_row(c.name, _mark(c.passed), c.detail)
    console.print(checks)


def _hold(system: Any, result: Any) -> None:
    """--keep-running: print where everything is, then wait for Ctrl-C / SIGTERM."""
    _demo_report(result, time.monotonic() - _DEMO_STARTED[0])
    _DEMO_REPORTED[0] = True
    console.print(f"transparency page  {system.api_url}/   (OpenAPI at {system.api_url}/docs)")
    console.print(f"RPC URL            {system.rpc_url}   (chain id {system.deployment.chain_id})")
    console.print(f"vault              {system.deployment.vault}")
    console.print(f"admin API key      {system.admin_key}   [yellow](dev only: this throwaway demo database)[/]")
    console.print(f"data               {system.data_dir}")
    console.print("everything keeps running; press Ctrl-C to stop")
    try:
        while system.worker_alive() and system.anvil.process.poll() is None:
            time.sleep(0.5)
        console.print("[red]a part of the demo stopped on its own[/] (see demo.log)")
    except KeyboardInterrupt:
        console.print("stopping")


_DEMO_STARTED = [0.0]
_DEMO_REPORTED = [False]


def demo_command(
    users: Annotated[int, typer.Option(min=2, help="Users in the scripted population.")] = 50,
    creators: Annotated[int, typer.Option(min=1, help="Creators in the scripted population.")] = 10,
    recharges_per_user: Annotated[
        int, typer.Option("--recharges-per-user", min=1, help="Recharge webhooks per user.")
    ] = 4,
    gifts_per_user: Annotated[int, typer.Option("--gifts-per-user", min=0, help="Single gifts per user.")] = 6,
    batch_gifts: Annotated[
        int, typer.Option("--batch-gifts", min=1, max=1000, help="Gifts in the one POST /v1/gifts/batch.")
    ] = 50,
    sample_receipts: Annotated[
        int, typer.Option("--sample-receipts", min=1, help="Gift receipts verified from the chain.")
    ] = 8,
    payout_delay: Annotated[
        int,
        typer.Option(
            "--payout-delay",
            min=1,
            help="Seconds from settlement until earnings are payable (anvil's clock skips them).",
        ),
    ] = 30,
    block_time: Annotated[float, typer.Option("--block-time", help="anvil mines a block every N seconds.")] = 0.5,
    epoch_seconds: Annotated[
        float, typer.Option("--epoch-seconds", help="An epoch closes once its oldest gift waited this long.")
    ] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the scripted population.")] = 7,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Keep the SQLite file, deployments/ record and demo.log here, replaced on each run "
            "(default: a temp dir, removed when the demo passes).",
        ),
    ] = None,
    keep_running: Annotated[
        bool,
        typer.Option("--keep-running", help="Leave anvil, the API (page at /) and the worker up until Ctrl-C."),
    ] = False,
    tamper_receipt: Annotated[bool, typer.Option("--tamper-receipt", hidden=True)] = False,
) -> None:
    """The whole story on a local chain: recharge, gifts, settlement, withdrawal, deposit, verification.

    Starts anvil, deploys, uses a fresh SQLite file, runs the API and the worker in-process,
    drives a scripted population through the HTTP API and the chain, verifies receipts, balance
    proofs and the reserve from the chain alone, reconciles, and prints a report. Exit 0 only
    when every check passed.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from tokenbridge.services.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        users=users,
        creators=creators,
        recharges_per_user=recharges_per_user,
        gifts_per_user=gifts_per_user,
        batch_gifts=batch_gifts,
        sample_receipts=sample_receipts,
        payout_delay=payout_delay,
        block_time=block_time,
        epoch_seconds=epoch_seconds,
        seed=seed,
        data_dir=data_dir,
        tamper_receipt=tamper_receipt,
    )
    _DEMO_STARTED[0] = time.monotonic()
    _DEMO_REPORTED[0] = False

    def _on_term(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # the same clean shutdown as Ctrl-C

    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        with Progress(
            SpinnerColumn(finished_text=" "),
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bars:

            def hold(system: Any, result: Any) -> None:
                bars.stop()  # the report and the URLs go below the finished bars
                _hold(system, result)

            result = run_demo(cfg, _RichProgress(bars), hold=hold if keep_running else None)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: anvil, the API and the worker were stopped")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    seconds = time.monotonic() - _DEMO_STARTED[0]
    if not _DEMO_REPORTED[0]:
        _demo_report(result, seconds)
    failed = [c.name for c in result.checks if not c.passed]
    if failed:
        console.print(f"[red]demo FAILED[/]: {len(failed)} check(s) failed: {', '.join(failed)}")
        console.print(f"logs and database kept in {result.deployment.get('data_dir', '?')}")
        raise typer.Exit(1)
    console.print(
        f"[green]demo passed[/]: {len(result.checks)} checks in {seconds:.1f} s; anvil, API and worker stopped"
    )


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.command("devnet")(devnet)
    app.command("deploy")(deploy_command)
    app.command("demo")(demo_command)
