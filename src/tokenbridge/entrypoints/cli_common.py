"""Helpers shared by the operator CLI commands and scripts/: the RPC URL, the deployment record,
the signer (keystore, environment or anvil dev key), revert messages in words, and the
`--json` / one-line-error convention.

Secrets: a key is only ever held inside a `keystore.Signer` (no repr, no pickling); nothing here
prints, logs or returns it. Errors name the file or the variable, never the value.

Operator commands never fall back to the worker's hot key (TOKENBRIDGE_BRIDGE_PRIVATE_KEY or
TOKENBRIDGE_BRIDGE_KEYSTORE): a command that signs needs exactly one of `--keystore`,
`--key-env VAR` or `--dev`, and `--dev` picks the anvil dev key that holds the role the
command needs in this deployment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from tokenbridge.domain.errors import ConfigurationError, InvalidInput, TokenbridgeError

if TYPE_CHECKING:
    from pydantic import SecretStr
    from web3 import Web3

    from tokenbridge.adapters.chain.deploy import Deployment
    from tokenbridge.adapters.chain.keystore import Signer
    from tokenbridge.adapters.chain.vault import VaultRevertError

DEFAULT_KEY_ENV = "TOKENBRIDGE_BRIDGE_PRIVATE_KEY"  # the worker's key: never an operator command's default
EXIT_ERROR = 1
NO_SIGNER = (
    "no signer: pass --keystore PATH (with --password-env VAR or a prompt), --key-env VAR, "
    f"or --dev on anvil (the worker's {DEFAULT_KEY_ENV} is never used by operator commands)"
)

# --- options every operator command shares ----------------------------------------------------

RpcUrlOption = Annotated[
    str | None, typer.Option("--rpc-url", help="JSON-RPC URL (default: $TOKENBRIDGE_RPC_URL).", show_default=False)
]
DeploymentOption = Annotated[
    Path | None,
    typer.Option(
        "--deployment",
        help="Deployment record (default: $TOKENBRIDGE_DEPLOYMENTS_DIR/<chain id>.json).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (for scripts).")]
KeystoreOption = Annotated[
    Path | None,
    typer.Option("--keystore", help="Sign with this encrypted keystore (password: --password-env or a prompt)."),
]
PasswordEnvOption = Annotated[
    str | None,
    typer.Option(
        "--password-env", help="Environment variable holding the keystore password (default: a hidden prompt)."
    ),
]
KeyEnvOption = Annotated[
    str | None,
    typer.Option(
        "--key-env",
        help="Environment variable holding the signer's private key (no default: the worker's key is never used).",
        show_default=False,
    ),
]
DevOption = Annotated[
    bool,
    typer.Option(
        "--dev",
        help="Sign with the anvil dev key that holds the role this command needs in the deployment (devnets only).",
    ),
]


# --- connection and deployment record ---------------------------------------------------------


def resolve_rpc_url(rpc_url: str | None) -> str:
    """`--rpc-url`, else $TOKENBRIDGE_RPC_URL (settings, also read from .env)."""
    if rpc_url:
        return rpc_url
    from tokenbridge.config import load_settings

    return load_settings().rpc_url


def connect(rpc_url: str | None) -> Web3:
    """A Web3 that answered `eth_chainId` at the resolved URL, or a one-line ChainError."""
    from tokenbridge.entrypoints.cli_chain import connect as connect_http

    return connect_http(resolve_rpc_url(rpc_url))


def deployment_path(chain_id: int, explicit: Path | None) -> Path:
    """`--deployment`, else <deployments dir>/<chain id>.json."""
    if explicit is not None:
        return explicit
    from tokenbridge.config import load_settings

    return load_settings().deployments_dir / f"{chain_id}.json"


def read_deployment(path: Path) -> Deployment:
    """Parse a deployment record, or an InvalidInput naming the file."""
    from tokenbridge.adapters.chain.deploy import Deployment

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InvalidInput(f"no deployment record at {path} (pass --deployment or run `tokenbridge deploy`)") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return Deployment.from_json(text)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{path} is not a deployment record ({type(exc).__name__})") from None


def load_deployment(w3: Web3, explicit: Path | None) -> tuple[Deployment, Path]:
    """The record for the node's chain; refuses a record of another chain or one without code."""
    chain_id = int(w3.eth.chain_id)
    path = deployment_path(chain_id, explicit)
    deployment = read_deployment(path)
    if deployment.chain_id != chain_id:
        raise InvalidInput(f"{path} is for chain {deployment.chain_id}, but the RPC node is on chain {chain_id}")
    if not has_code(w3, deployment.vault):
        raise InvalidInput(f"no contract at the vault address {deployment.vault} of {path} on chain {chain_id}")
    return deployment, path


def write_deployment(path: Path, deployment: Deployment) -> None:
    """Replace the record atomically (write a sibling, then rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(deployment.to_json())
    tmp.replace(path)


def has_code(w3: Web3, address: str) -> bool:
    return len(w3.eth.get_code(address)) > 0  # type: ignore[arg-type]


def checksum(value: str, option: str) -> str:
    """`value` as a checksummed address, or an InvalidInput naming the option."""
    from eth_utils.address import is_address, to_checksum_address

    if not is_address(value):
        raise InvalidInput(f"{option} must be an Ethereum address, got {value!r}")
    address = str(to_checksum_address(value))
    if int(address, 16) == 0:
        raise InvalidInput(f"{option} must not be the zero address")
    return address


# --- signer ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Signed:
    raw_transaction: bytes


class TxSigner:
    """What `vault.send_transaction` and `deploy.deploy` need from an account (`address`,
    `sign_transaction(tx).raw_transaction`), backed by a `keystore.Signer` so the key stays hidden."""

    __slots__ = ("_signer", "address")

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self.address: str = signer.address

    def sign_transaction(self, tx: Mapping[str, Any]) -> _Signed:
        return _Signed(self._signer.sign_transaction(tx).raw)

    def __repr__(self) -> str:
        return f"TxSigner(address={self.address})"


def read_password(password_env: str | None, *, what: str, confirm: bool = False) -> SecretStr:
    """The password in `password_env`, else a hidden prompt (with confirmation when `confirm`)."""
    from pydantic import SecretStr

    if password_env:
        value = os.environ.get(password_env)
        if not value:
            raise ConfigurationError(f"{password_env} is not set (it should hold the {what} password)")
        return SecretStr(value)
    value = typer.prompt(f"{what} password", hide_input=True, confirmation_prompt=confirm, err=True)
    if not value:
        raise ConfigurationError(f"empty {what} password")
    return SecretStr(value)


@dataclass(frozen=True, slots=True)
class SignerChoice:
    """What the signer options asked for; `check()` before connecting, `load()` after."""

    dev: bool = False
    keystore: Path | None = None
    password_env: str | None = None
    key_env: str | None = None

    def check(self) -> None:
        """Exactly one of --keystore, --key-env, --dev; else a one-line error naming them."""
        chosen = [
            name for name, on in (("--keystore", self.keystore), ("--key-env", self.key_env), ("--dev", self.dev)) if on
        ]
        if not chosen:
            raise ConfigurationError(NO_SIGNER)
        if len(chosen) > 1:
            raise InvalidInput(f"pass one signer, not {' and '.join(chosen)}")

    def load(self, *, dev_key: Callable[[], str] | None = None) -> TxSigner:
        """The signer; with --dev the key `dev_key()` returns (default: anvil's first)."""
        self.check()
        return load_signer(
            dev=self.dev,
            keystore=self.keystore,
            password_env=self.password_env,
            key_env=self.key_env,
            dev_key=dev_key() if self.dev and dev_key is not None else None,
        )


def load_signer(
    *,
    dev: bool = False,
    keystore: Path | None = None,
    password_env: str | None = None,
    key_env: str | None = None,
    dev_key: str | None = None,
) -> TxSigner:
    """The signer chosen by the options: `--dev` (the dev key `dev_key`, default anvil's first),
    else `--keystore`, else the key in `key_env`. There is no implicit default."""
    from eth_account import Account

    from tokenbridge.adapters.chain import keystore as ks

    if dev and keystore is not None:
        raise InvalidInput("pass either --dev or --keystore, not both")
    if dev:
        from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS

        return TxSigner(ks.Signer(Account.from_key(dev_key or DEV_PRIVATE_KEYS[0])))
    if keystore is not None:
        password = read_password(password_env, what=f"keystore {keystore}")
        return TxSigner(ks.signer_from_keystore(keystore, password))
    if key_env:
        if not os.environ.get(key_env):
            raise ConfigurationError(f"no signer: {key_env} is not set (--key-env names the variable holding the key)")
        return TxSigner(ks.signer_from_env(key_env))
    raise ConfigurationError(NO_SIGNER)


def dev_key_for_role(has_role: Callable[[str, str], bool], role: str, recorded: str | None, vault: str) -> str:
    """The anvil dev key holding `role` now: the record's holder first (if it is a dev key), then
    the dev keys in order. A one-line error when none does (sign with --keystore / --key-env)."""
    from eth_account import Account

    from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS

    keys = {str(Account.from_key(k).address): k for k in DEV_PRIVATE_KEYS}
    order = sorted(keys, key=lambda a: (a != recorded, list(keys).index(a)))
    for address in order:
        if has_role(role, address):
            return keys[address]
    holder = f" (the record names {recorded})" if recorded else ""
    raise InvalidInput(
        f"--dev: no anvil dev key holds the {role} role of vault {vault}{holder}; sign with --keystore or --key-env"
    )


def json_default(value: Any) -> Any:
    """`json.dumps` default: datetimes as ISO-8601, bytes as 0x hex, anything else as str."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


# --- reverts in words --------------------------------------------------------------------------


def iso_utc(timestamp: int) -> str:
    """Unix seconds as 2026-11-27T10:00:00Z."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: int) -> str:
    """A short human duration: 1d 2h, 3h 5m, 42s."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    text = " ".join(p for p in parts if p)
    if not text or (secs and not days and not hours):
        text = f"{text} {secs}s".strip()
    return text


def role_name(role: bytes) -> str:
    from tokenbridge.adapters.chain.vault import ROLES

    for name, value in ROLES.items():
        if value == bytes(role):
            return name
    return "0x" + bytes(role).hex()


def _describe(name: str, args: tuple[Any, ...]) -> str | None:
    match name, args:
        case "CoinVaultBpsNotReady", (effective_at, now):
            return (
                f"split change not ready until {iso_utc(int(effective_at))} "
                f"(chain time {iso_utc(int(now))}, {duration(int(effective_at) - int(now))} to go)"
            )
        case "CoinVaultNoPendingBps", ():
            return "no split change is pending"
        case "CoinVaultInvalidBps", (bps,):
            return f"split {bps} bps is out of range (0..10000)"
        case "AccessControlUnauthorizedAccount", (account, role):
            from eth_utils.address import to_checksum_address

            return f"signer {to_checksum_address(account)} does not hold the {role_name(role)} role"
        case "AccessControlBadConfirmation", ():
            return "a role can only be renounced by its holder"
        case "EnforcedPause", ():
            return "paused: this operation is halted until the admin unpauses"
        case "ExpectedPause", ():
            return "not paused"
        case "CoinVaultZeroAddress", ():
            return "the zero address is not allowed"
    return None


def describe_revert(exc: VaultRevertError) -> str:
    """A revert as one sentence in words, ending with the custom error's name."""
    name = exc.revert
    if name is None:
        return " ".join(exc.detail.split())
    words = _describe(name, tuple(exc.revert_args))
    if words is None:
        args = ", ".join(_plain(a) for a in exc.revert_args)
        return f"the contract refused the call: {name}({args})"
    return f"{words} ({name})"


def _plain(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def error_message(exc: TokenbridgeError) -> str:
    """One line for any TokenbridgeError (a revert in words)."""
    from tokenbridge.adapters.chain.vault import VaultRevertError

    if isinstance(exc, VaultRevertError):
        return describe_revert(exc)
    return " ".join(exc.detail.split())


# --- output ------------------------------------------------------------------------------------


def fail(message: str, as_json: bool, **fields: Any) -> NoReturn:
    """One line on stderr (and `{"ok": false, "error": ...}` on stdout with --json); exit 1."""
    line = " ".join(message.split())
    typer.echo(f"error: {line}", err=True)
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": line, **fields}))
    raise typer.Exit(EXIT_ERROR)


def run(as_json: bool, body: Callable[[], Mapping[str, Any]], human: Callable[[Mapping[str, Any]], None]) -> None:
    """Run a command body; print its result (JSON or `human`); turn every error into one line."""
    from tokenbridge.adapters.chain.vault import VaultRevertError

    try:
        result = body()
    except typer.Exit:
        raise
    except typer.Abort:
        fail("aborted", as_json)
    except VaultRevertError as exc:
        fail(describe_revert(exc), as_json, revert=exc.revert, revert_args=[_plain(a) for a in exc.revert_args])
    except TokenbridgeError as exc:
        fail(error_message(exc), as_json)
    except Exception as exc:  # an operator command never shows a traceback
        fail(f"unexpected {type(exc).__name__}: {exc}", as_json)
    if as_json:
        typer.echo(json.dumps({"ok": True, **result}, default=json_default))
    else:
        human(result)
