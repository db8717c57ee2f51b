"""`tokenbridge verify gift|balance|reserve`: check receipts and the reserve against the chain alone.

Exit codes: 0 every check passed, 1 a check failed, 2 the input could not be checked at all
(malformed JSON, wrong format tag, unreachable RPC, wrong chain id, no vault) -- printed as
one line, never a traceback. `--json` prints exactly one JSON object on stdout.

`gift` and `balance` read the deployment's vault when it is known (`--vault`, else
deployments/<chain id>.json) and check the document names it (`vault_is_deployment`); otherwise
they read the document's vault and warn that it is only the document's claim.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from tokenbridge.domain.errors import InvalidInput, TokenbridgeError

if TYPE_CHECKING:
    from tokenbridge.services.verify import ChainReader, Verdict

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_UNUSABLE = 2

console = Console(highlight=False)

RpcOption = Annotated[
    str | None, typer.Option("--rpc", "--rpc-url", help="JSON-RPC URL of a node (default: $TOKENBRIDGE_RPC_URL).")
]
VaultOption = Annotated[
    str | None,
    typer.Option(
        "--vault",
        help="The deployment's vault address: read instead of the document's, and the document must name it "
        "(default: deployments/<chain id>.json).",
    ),
]
DeploymentsDirOption = Annotated[
    Path | None,
    typer.Option("--deployments-dir", help="Where <chain_id>.json is read (default: $TOKENBRIDGE_DEPLOYMENTS_DIR)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _fail(message: str, as_json: bool) -> NoReturn:
    """Unusable input: one line on stderr (and a JSON object on stdout with --json), exit 2."""
    line = " ".join(message.split())
    typer.echo(f"error: {line}", err=True)
    if as_json:
        typer.echo(json.dumps({"ok": False, "verdict": "unusable", "error": line}))
    raise typer.Exit(EXIT_UNUSABLE)


def _rpc_url(rpc: str | None) -> str:
    if rpc:
        return rpc
    from tokenbridge.config import load_settings

    return load_settings().rpc_url


def _read_document(path: str) -> Mapping[str, Any]:
    from tokenbridge.services.verify import load_document

    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    return load_document(raw)


def _show(verdict: Verdict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(verdict.to_json(), sort_keys=False))
    else:
        checks = Table(title=f"tokenbridge verify {verdict.kind}")
        checks.add_column("check", no_wrap=True)
        checks.add_column("result", no_wrap=True)
        checks.add_column("what was compared", overflow="fold")
        for c in verdict.checks:
            checks.add_row(
                f"{c.label} [dim]({c.name})[/]", "[green]✓ ok[/]" if c.passed else "[red]✗ FAILED[/]", c.detail
            )
        console.print(checks)
        facts = Table(title="read from the chain", show_header=False)
        facts.add_column("fact", style="bold", no_wrap=True)
        facts.add_column("value", overflow="fold")
        for name, value in verdict.facts.items():
            facts.add_row(name, value)
        console.print(facts)
        if verdict.ok:
            console.print(f"[bold green]{verdict.headline.upper()}[/]: every check passed ({len(verdict.checks)})")
        else:
            console.print(f"[bold red]{verdict.headline.upper()}[/]: failed {', '.join(verdict.failed)}")
        for warning in verdict.warnings:
            console.print(Panel(warning, title="WARNING", title_align="left", border_style="bold yellow"))
    raise typer.Exit(EXIT_OK if verdict.ok else EXIT_MISMATCH)


def _run(as_json: bool, body: Callable[[], Verdict]) -> None:
    try:
        verdict = body()
    except TokenbridgeError as exc:  # InvalidInput, ChainError, ConfigurationError
        _fail(exc.detail, as_json)
    except Exception as exc:  # never a traceback for a verifier: report the class and message
        _fail(f"unexpected {type(exc).__name__}: {exc}", as_json)
    _show(verdict, as_json)


def _reader(rpc: str | None, vault: str) -> ChainReader:
    from tokenbridge.adapters.chain.reader import Web3ChainReader

    return Web3ChainReader.connect(_rpc_url(rpc), vault)


def _trusted_vault(vault: str | None, chain_id: int, deployments_dir: Path | None) -> str | None:
    """The deployment's vault: `--vault`, else deployments/<chain_id>.json, else None (unknown)."""
    return vault or _recorded_vault(chain_id, deployments_dir)


def gift_command(
    receipt: Annotated[
        str, typer.Argument(help="Gift receipt JSON file (tokenbridge-gift-receipt/v1), or - for stdin.")
    ],
    rpc: RpcOption = None,
    vault: VaultOption = None,
    deployments_dir: DeploymentsDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify a gift receipt: leaf, Merkle proof, split at the epoch's on-chain rate, verifyGift,
    and that its vault is the deployment's (warns when no deployment is known)."""
    from tokenbridge.services.verify import parse_gift_receipt, verify_gift_receipt

    def body() -> Verdict:
        doc = parse_gift_receipt(_read_document(receipt))
        trusted = _trusted_vault(vault, doc.chain_id, deployments_dir)
        return verify_gift_receipt(doc, _reader(rpc, trusted or doc.vault), expected_vault=trusted)

    _run(as_json, body)


def balance_command(
    proof: Annotated[
        str, typer.Argument(help="Balance proof JSON file (tokenbridge-balance-proof/v1), or - for stdin.")
    ],
    rpc: RpcOption = None,
    vault: VaultOption = None,
    deployments_dir: DeploymentsDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify a balance proof: account key, Merkle-sum path, the vault's commitment, verifyLiability,
    and that its vault is the deployment's (warns when no deployment is known)."""
    from tokenbridge.services.verify import parse_balance_proof, verify_balance_proof

    def body() -> Verdict:
        doc = parse_balance_proof(_read_document(proof))
        trusted = _trusted_vault(vault, doc.chain_id, deployments_dir)
        return verify_balance_proof(doc, _reader(rpc, trusted or doc.vault), expected_vault=trusted)

    _run(as_json, body)


def reserve_command(
    rpc: RpcOption = None,
    vault: Annotated[
        str | None,
        typer.Option("--vault", help="Vault address (default: deployments/<chain id>.json of the RPC's chain)."),
    ] = None,
    deployments_dir: DeploymentsDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify the reserve: the vault's token balance covers the latest committed liabilities."""
    from tokenbridge.adapters.chain.reader import Web3ChainReader, connect
    from tokenbridge.services.verify import verify_reserve

    def body() -> Verdict:
        w3 = connect(_rpc_url(rpc))
        address = vault or _deployed_vault(int(w3.eth.chain_id), deployments_dir)
        return verify_reserve(Web3ChainReader(w3, address))

    _run(as_json, body)


def _deployments_dir(deployments_dir: Path | None) -> Path:
    if deployments_dir is None:
        from tokenbridge.config import load_settings

        deployments_dir = load_settings().deployments_dir
    return deployments_dir


def _deployed_vault(chain_id: int, deployments_dir: Path | None) -> str:
    vault = _recorded_vault(chain_id, deployments_dir)
    if vault is None:
        path = _deployments_dir(deployments_dir) / f"{chain_id}.json"
        raise InvalidInput(f"no --vault given and no deployment record {path} for chain {chain_id}")
    return vault


def _recorded_vault(chain_id: int, deployments_dir: Path | None) -> str | None:
    """The vault of deployments/<chain_id>.json; None when there is no record, InvalidInput when it is broken."""
    path = _deployments_dir(deployments_dir) / f"{chain_id}.json"
    if not path.exists():
        return None
    try:
        vault = json.loads(path.read_text())["vault"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path} is not a deployment record ({type(exc).__name__}); pass --vault") from None
    if not isinstance(vault, str):
        raise InvalidInput(f"{path} has no vault address; pass --vault")
    return vault


def register(app: typer.Typer) -> None:
    """Attach `verify gift|balance|reserve` to the root app."""
    verify = typer.Typer(
        name="verify",
        help="Check a gift receipt, a balance proof or the reserve against the chain alone.",
        no_args_is_help=True,
    )
    verify.command("gift")(gift_command)
    verify.command("balance")(balance_command)
    verify.command("reserve")(reserve_command)
    app.add_typer(verify, name="verify")
