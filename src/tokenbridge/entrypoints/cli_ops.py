"""Operator commands: `split`, `pause`/`unpause`, `keys`, `roles` (DESIGN section 7).

Every chain command takes `--rpc-url`, `--deployment` and `--json`; commands that send a
transaction need exactly one signer option (`--keystore` + `--password-env`, `--key-env`, or
`--dev`, which picks the anvil dev key holding the needed role); there is no default signer, so
the worker's hot key (TOKENBRIDGE_BRIDGE_PRIVATE_KEY) is never used by accident.
Errors are one line on stderr and exit 1; a revert is described in words with its custom
error's name. Keys are never printed. See docs/operator-commands.md for the runbooks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenbridge.domain.errors import ChainError, ConfigurationError, InvalidInput
from tokenbridge.entrypoints import cli_common as common
from tokenbridge.entrypoints.cli_common import (
    DeploymentOption,
    DevOption,
    JsonOption,
    KeyEnvOption,
    KeystoreOption,
    PasswordEnvOption,
    RpcUrlOption,
)

if TYPE_CHECKING:
    from web3 import Web3

    from tokenbridge.adapters.chain.deploy import Deployment
    from tokenbridge.adapters.chain.vault import VaultClient

ROLE_NAMES = ("admin", "bridge", "pauser")
LOG_CHUNK = 10_000  # blocks per eth_getLogs call (public RPCs cap the range)


@dataclass(frozen=True, slots=True)
class _Target:
    w3: Web3
    deployment: Deployment
    path: Path
    client: VaultClient
    signer: common.TxSigner | None

    def base(self) -> dict[str, Any]:
        return {"chain_id": self.deployment.chain_id, "vault": self.deployment.vault}

    def chain_time(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])


def _target(
    rpc_url: str | None,
    deployment: Path | None,
    *,
    signer: common.SignerChoice | None = None,
    role: str | None = None,
) -> _Target:
    """Connect, load the record, and (for a writing command: `signer` given) the signer for `role`.

    The signer options are checked before anything is read from the network. With `--dev` the
    anvil dev key holding `role` in this deployment is used (not always the first one).
    """
    from tokenbridge.adapters.chain.vault import VaultClient

    if signer is not None:
        signer.check()
    w3 = common.connect(rpc_url)
    record, path = common.load_deployment(w3, deployment)
    client = VaultClient(w3, record.vault)
    tx_signer = None
    if signer is not None:
        needed = role or "admin"
        tx_signer = signer.load(
            dev_key=lambda: common.dev_key_for_role(client.has_role, needed, getattr(record, needed), record.vault)
        )
        client.account = tx_signer
    return _Target(w3, record, path, client, tx_signer)


def _choice(dev: bool, keystore: Path | None, password_env: str | None, key_env: str | None) -> common.SignerChoice:
    return common.SignerChoice(dev=dev, keystore=keystore, password_env=password_env, key_env=key_env)


CalldataOption = Annotated[
    bool,
    typer.Option(
        "--calldata",
        help="Print the transaction (to, data) for a multisig admin to submit instead of signing it here.",
    ),
]


def _calldata(t: _Target, fn: str, *args: Any) -> dict[str, Any]:
    """The unsigned call for a multisig/timelock to submit (nothing is sent)."""
    return {
        **t.base(),
        "calldata": {"to": t.client.address, "value": 0, "function": fn, "data": t.client.encode_call(fn, *args)},
    }


def _calldata_human(r: Mapping[str, Any]) -> bool:
    """Print the calldata result, if this is one; True when printed."""
    call = r.get("calldata")
    if call is None:
        return False
    typer.echo("submit from the admin multisig (nothing was sent):")
    _echo_lines([("to", call["to"]), ("value", call["value"]), ("function", call["function"]), ("data", call["data"])])
    return True


def _signer_or_none(calldata: bool, choice: common.SignerChoice) -> common.SignerChoice | None:
    """`_target`'s signer: None (no key loaded, none required) when only printing calldata."""
    return None if calldata else choice


def _echo_lines(pairs: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        typer.echo(f"{key.ljust(width)}  {value}")


# --- split -----------------------------------------------------------------------------------


def _split_state(t: _Target) -> dict[str, Any]:
    now = t.chain_time()
    pending = t.client.pending_creator_bps()
    state: dict[str, Any] = {
        **t.base(),
        "creator_bps": t.client.creator_bps(),
        "split_delay": t.client.split_delay(),
        "chain_time": now,
        "chain_time_iso": common.iso_utc(now),
        "pending": None,
    }
    if pending.exists:
        state["pending"] = {
            "bps": pending.bps,
            "effective_at": pending.effective_at,
            "effective_at_iso": common.iso_utc(pending.effective_at),
            "ready": now >= pending.effective_at,
        }
    return state


def _split_lines(state: Mapping[str, Any]) -> list[tuple[str, Any]]:
    bps = int(state["creator_bps"])
    lines: list[tuple[str, Any]] = [
        ("vault", f"{state['vault']} (chain {state['chain_id']})"),
        ("creator share", f"{bps} bps ({bps / 100:g}% to creators, {(10_000 - bps) / 100:g}% to the platform)"),
        ("split delay", f"{state['split_delay']} s ({common.duration(int(state['split_delay']))})"),
    ]
    pending = state["pending"]
    if pending is None:
        lines.append(("pending change", "none"))
    else:
        left = int(pending["effective_at"]) - int(state["chain_time"])
        when = "ready to apply now" if pending["ready"] else f"in {common.duration(left)}"
        lines.append(("pending change", f"{pending['bps']} bps, effective at {pending['effective_at_iso']} ({when})"))
    return lines


def split_show(rpc_url: RpcUrlOption = None, deployment: DeploymentOption = None, as_json: JsonOption = False) -> None:
    """Show the split rate in force, any pending change and when it can be applied, and splitDelay."""
    common.run(as_json, lambda: _split_state(_target(rpc_url, deployment)), lambda s: _echo_lines(_split_lines(s)))


def split_propose(
    bps: Annotated[int, typer.Argument(help="New creator share in basis points (0..10000).")],
    rpc_url: RpcUrlOption = None,
    deployment: DeploymentOption = None,
    keystore: KeystoreOption = None,
    password_env: PasswordEnvOption = None,
    key_env: KeyEnvOption = None,
    dev: DevOption = False,
    calldata: CalldataOption = False,
    as_json: JsonOption = False,
) -> None:
    """Admin: propose a new split rate; it can be applied after splitDelay (replaces a pending proposal)."""

    def body() -> dict[str, Any]:
        if not 0 <= bps <= 10_000:
            raise InvalidInput(f"BPS must be in [0, 10000], got {bps}")
        t = _target(
            rpc_url,
            deployment,
            signer=_signer_or_none(calldata, _choice(dev, keystore, password_env, key_env)),
            role="admin",
        )
        if calldata:
            return _calldata(t, "proposeCreatorBps", bps)
        replaced = t.client.pending_creator_bps()
        tx = t.client.propose_creator_bps(bps)
        state = _split_state(t)
        return {
            **state,
            "tx_hash": tx.tx_hash,
            "replaced_pending_bps": replaced.bps if replaced.exists else None,
        }

    def human(r: Mapping[str, Any]) -> None:
        if _calldata_human(r):
            return
        pending = r["pending"]
        typer.echo(f"proposed {pending['bps']} bps (tx {r['tx_hash']})")
        if r["replaced_pending_bps"] is not None:
            typer.echo(f"replaced the pending proposal of {r['replaced_pending_bps']} bps; the wait restarted")
        typer.echo(f"apply with `tokenbridge split apply` at or after {pending['effective_at_iso']}")

    common.run(as_json, body, human)


def split_apply(
    rpc_url: RpcUrlOption = None,
    deployment: DeploymentOption = None,
    keystore: KeystoreOption = None,
    password_env: PasswordEnvOption = None,
    key_env: KeyEnvOption = None,
    dev: DevOption = False,
    calldata: CalldataOption = False,
    as_json: JsonOption = False,
) -> None:
    """Admin: apply the pending split rate (after its effective time)."""

    def body() -> dict[str, Any]:
        t = _target(
            rpc_url,
            deployment,
            signer=_signer_or_none(calldata, _choice(dev, keystore, password_env, key_env)),
            role="admin",
        )
        if calldata:
            return _calldata(t, "applyCreatorBps")
        previous = t.client.creator_bps()
        tx = t.client.apply_creator_bps()
        return {**_split_state(t), "previous_bps": previous, "tx_hash": tx.tx_hash}

    def human(r: Mapping[str, Any]) -> None:
        if _calldata_human(r):
            return
        typer.echo(f"split changed from {r['previous_bps']} to {r['creator_bps']} bps (tx {r['tx_hash']})")

    common.run(as_json, body, human)


def split_cancel(
    rpc_url: RpcUrlOption = None,
    deployment: DeploymentOption = None,
    keystore: KeystoreOption = None,
    password_env: PasswordEnvOption = None,
    key_env: KeyEnvOption = None,
    dev: DevOption = False,
    calldata: CalldataOption = False,
    as_json: JsonOption = False,
) -> None:
    """Admin: drop the pending split-rate proposal."""

    def body() -> dict[str, Any]:
        t = _target(
            rpc_url,
            deployment,
            signer=_signer_or_none(calldata, _choice(dev, keystore, password_env, key_env)),
            role="admin",
        )
        if calldata:
            return _calldata(t, "cancelCreatorBps")
        pending = t.client.pending_creator_bps()
        tx = t.client.cancel_creator_bps()
        return {**_split_state(t), "cancelled_bps": pending.bps if pending.exists else None, "tx_hash": tx.tx_hash}

    def human(r: Mapping[str, Any]) -> None:
        if _calldata_human(r):
            return
        typer.echo(
            f"cancelled the proposal of {r['cancelled_bps']} bps (tx {r['tx_hash']}); "
            f"split stays {r['creator_bps']} bps"
        )

    common.run(as_json, body, human)


# --- pause / unpause -------------------------------------------------------------------------

CoinOption = Annotated[
    bool, typer.Option("--coin", help="The CreatorCoin switch (every token transfer) instead of the vault's.")
]


def _switch(
    *,
    pause: bool,
    coin: bool,
    rpc_url: str | None,
    deployment: Path | None,
    signer: common.SignerChoice,
    calldata: bool = False,
) -> dict[str, Any]:
    role = "pauser" if pause else "admin"
    t = _target(rpc_url, deployment, signer=_signer_or_none(calldata, signer), role=role)
    if calldata:
        return _calldata(t, ("pause" if pause else "unpause") + ("Coin" if coin else ""))
    target = "coin" if coin else "vault"
    is_paused = t.client.coin_paused if coin else t.client.paused
    result: dict[str, Any] = {**t.base(), "target": target, "changed": False, "tx_hash": None}
    if is_paused() == pause:
        result["paused"] = pause
        return result
    if pause:
        tx = t.client.pause_coin() if coin else t.client.pause()
    else:
        tx = t.client.unpause_coin() if coin else t.client.unpause()
    result.update(changed=True, tx_hash=tx.tx_hash, paused=is_paused())
    return result


def _switch_human(r: Mapping[str, Any]) -> None:
    if _calldata_human(r):
        return
    what = "CreatorCoin transfers" if r["target"] == "coin" else f"vault {r['vault']}"
    state = "paused" if r["paused"] else "running (unpaused)"
    if r["changed"]:
        typer.echo(f"{what}: now {state} (tx {r['tx_hash']})")
    else:
        typer.echo(f"{what}: already {state}; nothing sent")


def pause_command(
    coin: CoinOption = False,
    rpc_url: RpcUrlOption = None,
    deployment: DeploymentOption = None,
    keystore: KeystoreOption = None,
    password_env: PasswordEnvOption = None,
    key_env: KeyEnvOption = None,
    dev: DevOption = False,
    as_json: JsonOption = False,
) -> None:
    """Pauser: halt mint, settle, payout, deposit and burn (--coin: halt every CreatorCoin transfer)."""
    choice = _choice(dev, keystore, password_env, key_env)
    common.run(
        as_json,
        lambda: _switch(pause=True, coin=coin, rpc_url=rpc_url, deployment=deployment, signer=choice),
        _switch_human,
    )


def unpause_command(
    coin: CoinOption = False,
    rpc_url: RpcUrlOption = None,
    deployment: DeploymentOption = None,
    keystore: KeystoreOption = None,
    password_env: PasswordEnvOption = None,
    key_env: KeyEnvOption = None,
    dev: DevOption = False,
    calldata: CalldataOption = False,
    as_json: JsonOption = False,
) -> None:
    """Admin: resume the vault (--coin: resume CreatorCoin transfers). The pauser cannot unpause."""
    choice = _choice(dev, keystore, password_env, key_env)
    common.run(
        as_json,
        lambda: _switch(
            pause=False, coin=coin, rpc_url=rpc_url, deployment=deployment, signer=choice, calldata=calldata
        ),
        _switch_human,
    )


# --- keys ------------------------------------------------------------------------------------


def keys_create(
    out: Annotated[Path, typer.Option("--out", help="Keystore file to write (refused if it exists; mode 0600).")],
    password_env: PasswordEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a fresh key in an encrypted keystore (scrypt) and print its address only."""

    def body() -> dict[str, Any]:
        from tokenbridge.adapters.chain.keystore import create_keystore

        if out.exists():  # checked before asking for a password; create_keystore re-checks atomically
            raise ConfigurationError(f"keystore {out} already exists; not overwriting it")
        password = common.read_password(password_env, what="new keystore", confirm=password_env is None)
        address = create_keystore(out, password)
        return {"address": address, "keystore": str(out)}

    common.run(as_json, body, lambda r: typer.echo(r["address"]))


# --- roles -----------------------------------------------------------------------------------


def _holders(t: _Target, extra: tuple[str, ...] = ()) -> tuple[dict[str, list[str]], str | None]:
    """Current holders of each role: candidates from RoleGranted events since the deploy block
    plus the record's addresses, each confirmed with hasRole. Returns (holders, scan warning)."""
    from eth_utils.address import to_checksum_address

    d = t.deployment
    candidates: dict[str, set[str]] = {name: {d.admin, d.bridge, d.pauser, d.deployer, *extra} for name in ROLE_NAMES}
    warning = None
    try:
        head = int(t.w3.eth.block_number)
        start = d.deploy_block
        while start <= head:
            end = min(start + LOG_CHUNK - 1, head)
            for event in t.client.events("RoleGranted", start, end):
                name = common.role_name(bytes(event["args"]["role"]))
                if name in candidates:
                    candidates[name].add(to_checksum_address(event["args"]["account"]))
            start = end + 1
    except ChainError as exc:
        warning = f"role events could not be scanned ({exc.detail}); only known addresses were checked"
    holders = {
        name: sorted(a for a in candidates[name] if int(a, 16) != 0 and t.client.has_role(name, a))
        for name in ROLE_NAMES
    }
    return holders, warning


def _roles_state(t: _Target, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    holders, warning = _holders(t, extra)
    roles = {
        name: [{"address": a, "contract": common.has_code(t.w3, a)} for a in addresses]
        for name, addresses in holders.items()
    }
    recorded = {name: getattr(t.deployment, name) for name in ROLE_NAMES}
    return {**t.base(), "roles": roles, "recorded": recorded, "warning": warning}


def _roles_human(r: Mapping[str, Any]) -> None:
    typer.echo(f"vault {r['vault']} (chain {r['chain_id']})")
    for name in ROLE_NAMES:
        holders = r["roles"][name]
        if not holders:
            typer.echo(f"  {name:<6}  (nobody)")
        for h in holders:
            kind = "contract" if h["contract"] else "EOA"
            typer.echo(f"  {name:<6}  {h['address']}  {kind}")
    if r.get("warning"):
        typer.echo(f"warning: {r['warning']}")


def roles_show(rpc_url: RpcUrlOption = None, deployment: DeploymentOption = None, as_json: JsonOption = False) -> None:
    """List who holds admin, bridge and pauser now (from role events, confirmed with hasRole)."""
    common.run(as_json, lambda: _roles_state(_target(rpc_url, deployment)), _roles_human)


RoleArgument = Annotated[str, typer.Argument(help="admin, bridge or pauser.")]
AddressArgument = Annotated[str, typer.Argument(help="The address.")]


def _with_holder(d: Deployment, role: str, address: str) -> Deployment:
    """The record with `address` as the named holder of `role`."""
    if role == "admin":
        return dataclasses.replace(d, admin=address)
    if role == "bridge":
        return dataclasses.replace(d, bridge=address)
    return dataclasses.replace(d, pauser=address)


def _role_id(name: str) -> bytes:
    from tokenbridge.adapters.chain.vault import ROLES

    return ROLES[name]


def _role(role: str) -> str:
    if role not in ROLE_NAMES:
        raise InvalidInput(f"ROLE must be one of {', '.join(ROLE_NAMES)}, got {role!r}")
    return role


def roles_grant(
    role: RoleArgument,
    address: AddressArgument,
    rpc_url: RpcUrlOption = None,
    deployment: DeploymentOption = None,
    keystore: KeystoreOption = None,
    password_env: PasswordEnvOption = None,
    key_env: KeyEnvOption = None,
    dev: DevOption = False,
    calldata: CalldataOption = False,
    as_json: JsonOption = False,
) -> None:
    """Admin: grant ROLE to ADDRESS and record it as the role's holder in the deployment file."""

    def body() -> dict[str, Any]:
        name, who = _role(role), common.checksum(address, "ADDRESS")
        t = _target(
            rpc_url,
            deployment,
            signer=_signer_or_none(calldata, _choice(dev, keystore, password_env, key_env)),
            role="admin",
        )
        if calldata:
            return _calldata(t, "grantRole", _role_id(name), who)
        tx_hash = None
        if not t.client.has_role(name, who):
            tx_hash = t.client.grant_role(name, who).tx_hash
        if not t.client.has_role(name, who):
            raise ChainError(f"grantRole mined but {who} does not hold {name}")
        common.write_deployment(t.path, _with_holder(t.deployment, name, who))
        return {**t.base(), "role": name, "address": who, "tx_hash": tx_hash, "record": str(t.path)}

    def human(r: Mapping[str, Any]) -> None:
        if _calldata_human(r):
            return
        sent = f"granted (tx {r['tx_hash']})" if r["tx_hash"] else "already held; nothing sent"
        typer.echo(f"{r['role']} -> {r['address']}: {sent}; {r['record']} updated")

    common.run(as_json, body, human)


def roles_revoke(
    role: RoleArgument,
    address: AddressArgument,
    rpc_url: RpcUrlOption = None,
    deployment: DeploymentOption = None,
    keystore: KeystoreOption = None,
    password_env: PasswordEnvOption = None,
    key_env: KeyEnvOption = None,
    dev: DevOption = False,
    calldata: CalldataOption = False,
    as_json: JsonOption = False,
) -> None:
    """Admin: revoke ROLE from ADDRESS (e.g. the old bridge key after a rotation).

    Revoking admin from yourself this way is refused: use `roles transfer-admin`.
    """

    def body() -> dict[str, Any]:
        name, who = _role(role), common.checksum(address, "ADDRESS")
        t = _target(
            rpc_url,
            deployment,
            signer=_signer_or_none(calldata, _choice(dev, keystore, password_env, key_env)),
            role="admin",
        )
        if calldata:
            return _calldata(t, "revokeRole", _role_id(name), who)
        assert t.signer is not None  # a writing command always loads one
        if name == "admin" and who == t.signer.address:
            raise InvalidInput("refusing to revoke your own admin role: use `roles transfer-admin --to ...`")
        tx_hash = None
        if t.client.has_role(name, who):
            tx_hash = t.client.revoke_role(name, who).tx_hash
        if t.client.has_role(name, who):
            raise ChainError(f"revokeRole mined but {who} still holds {name}")
        stale = getattr(t.deployment, name) == who
        return {**t.base(), "role": name, "address": who, "tx_hash": tx_hash, "record_names_revoked": stale}

    def human(r: Mapping[str, Any]) -> None:
        if _calldata_human(r):
            return
        sent = f"revoked (tx {r['tx_hash']})" if r["tx_hash"] else "not held; nothing sent"
        typer.echo(f"{r['role']} from {r['address']}: {sent}")
        if r["record_names_revoked"]:
            typer.echo(f"warning: the deployment record still names {r['address']} as {r['role']}")

    common.run(as_json, body, human)


def roles_transfer_admin(
    to: Annotated[str, typer.Option("--to", help="New admin, normally a multisig or timelock contract.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the signer gives up admin for good.")] = False,
    allow_eoa: Annotated[
        bool, typer.Option("--allow-eoa", help="Allow a new admin without contract code (a plain key).")
    ] = False,
    rpc_url: RpcUrlOption = None,
    deployment: DeploymentOption = None,
    keystore: KeystoreOption = None,
    password_env: PasswordEnvOption = None,
    key_env: KeyEnvOption = None,
    dev: DevOption = False,
    as_json: JsonOption = False,
) -> None:
    """Admin: grant admin to --to, check it holds it, then revoke the signer's own admin role."""

    def body() -> dict[str, Any]:
        new = common.checksum(to, "--to")
        t = _target(rpc_url, deployment, signer=_choice(dev, keystore, password_env, key_env), role="admin")
        assert t.signer is not None
        me = t.signer.address
        if new == me:
            raise InvalidInput(f"--to is the signer's own address {me}")
        if not t.client.has_role("admin", me) and not t.client.has_role("admin", new):
            raise InvalidInput(f"signer {me} does not hold the admin role of {t.deployment.vault}")
        if not allow_eoa and not common.has_code(t.w3, new):
            raise InvalidInput(
                f"{new} has no contract code on chain {t.deployment.chain_id}; a multisig is a contract "
                "(wrong address or wrong network?). Pass --allow-eoa to hand admin to a plain key"
            )
        if not yes:
            raise InvalidInput(
                f"this grants admin of {t.deployment.vault} to {new} and removes it from {me}; re-run with --yes"
            )
        grant_tx = None
        if not t.client.has_role("admin", new):
            grant_tx = t.client.grant_role("admin", new).tx_hash
        if not t.client.has_role("admin", new):
            raise ChainError(f"grantRole mined but {new} does not hold admin; the signer keeps it")
        common.write_deployment(t.path, _with_holder(t.deployment, "admin", new))
        revoke_tx = None
        if t.client.has_role("admin", me):
            try:
                revoke_tx = t.client.revoke_role("admin", me).tx_hash
            except ChainError as exc:
                raise ChainError(
                    f"{new} now holds admin (tx {grant_tx}) but removing it from {me} failed: "
                    f"{common.error_message(exc)}; run the same command again"
                ) from None
        if t.client.has_role("admin", me):
            raise ChainError(f"revokeRole mined but {me} still holds admin; run the same command again")
        state = _roles_state(t, (new, me))
        others = [h["address"] for h in state["roles"]["admin"] if h["address"] != new]
        return {
            **t.base(),
            "new_admin": new,
            "previous_admin": me,
            "grant_tx": grant_tx,
            "revoke_tx": revoke_tx,
            "other_admins": others,
            "record": str(t.path),
        }

    def human(r: Mapping[str, Any]) -> None:
        typer.echo(f"admin granted to {r['new_admin']} (tx {r['grant_tx'] or 'none: already held'})")
        typer.echo(f"admin removed from {r['previous_admin']} (tx {r['revoke_tx'] or 'none: not held'})")
        typer.echo(f"{r['record']} updated")
        if r["other_admins"]:
            typer.echo(f"warning: admin is also held by {', '.join(r['other_admins'])}")

    common.run(as_json, body, human)


def register(app: typer.Typer) -> None:
    """Attach `split`, `pause`, `unpause`, `keys` and `roles` to the root app."""
    split = typer.Typer(name="split", help="Show or change the creator split rate (timelocked).", no_args_is_help=True)
    split.command("show")(split_show)
    split.command("propose")(split_propose)
    split.command("apply")(split_apply)
    split.command("cancel")(split_cancel)
    app.add_typer(split, name="split")

    app.command("pause")(pause_command)
    app.command("unpause")(unpause_command)

    keys = typer.Typer(name="keys", help="Encrypted keystores for operator and worker keys.", no_args_is_help=True)
    keys.command("create")(keys_create)
    app.add_typer(keys, name="keys")

    roles = typer.Typer(name="roles", help="Who holds admin, bridge and pauser; hand them over.", no_args_is_help=True)
    roles.command("show")(roles_show)
    roles.command("grant")(roles_grant)
    roles.command("revoke")(roles_revoke)
    roles.command("transfer-admin")(roles_transfer_admin)
    app.add_typer(roles, name="roles")
