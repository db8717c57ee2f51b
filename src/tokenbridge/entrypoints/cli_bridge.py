"""CLI commands of the bridge worker: `worker`, `reconcile`, `status`, `alarms` (docs/operations.md).

Exit codes: `reconcile` 0 = ledger and chain agree, 1 = drift (every difference printed);
`status` 0 = ok, 2 = an alarm is open or the vault reports insolvent, 3 = the chain cannot be
read (the database side is still shown); `worker` 0 after a graceful SIGTERM/SIGINT.
Errors raised on purpose are one line on stderr and exit 1 (the root `main()`).
`--json` prints datetimes as ISO-8601 (UTC).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenbridge.domain.errors import ChainError

if TYPE_CHECKING:
    from tokenbridge.adapters.db.uow import UnitOfWorkFactory
    from tokenbridge.config import Settings

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
RECONCILE_DRIFT_EXIT = 1


def _settings() -> Settings:
    from tokenbridge.config import load_settings

    return load_settings()


@contextmanager
def _uow(settings: Settings) -> Iterator[UnitOfWorkFactory]:
    from tokenbridge.adapters.db.engine import make_engine, session_factories
    from tokenbridge.adapters.db.uow import UnitOfWorkFactory

    engine = make_engine(settings.database_url)
    try:
        yield UnitOfWorkFactory(*session_factories(engine))
    finally:
        engine.dispose()


def _vault(settings: Settings) -> Any:
    from web3 import Web3

    from tokenbridge.adapters.chain.vault import VaultClient
    from tokenbridge.bootstrap import resolve_vault

    address, _ = resolve_vault(settings)
    w3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 30}))
    try:
        return VaultClient(w3, address)
    except Exception as exc:  # requests/web3 raise many unrelated types for an unreachable node
        raise ChainError(f"cannot read the vault {address} at {settings.rpc_url}: {type(exc).__name__}") from None


def _dump(data: Any) -> str:
    from tokenbridge.entrypoints.cli_common import json_default

    return json.dumps(data, indent=2, sort_keys=True, default=json_default)


def _iso(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat()


def worker_command() -> None:
    """Run the bridge worker (tx manager, epochs, withdrawals, deposits) until SIGTERM/SIGINT."""
    from tokenbridge.entrypoints.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema check is not news
    raise typer.Exit(run_worker(_settings()))


def reconcile_command(as_json: JsonOption = False) -> None:
    """Compare the ledger with the chain; print every difference; exit 1 on drift."""
    from tokenbridge.services.reconcile import ReconcileService

    settings = _settings()
    vault = _vault(settings)
    with _uow(settings) as uow:
        report = ReconcileService(uow, vault).run()
    if as_json:
        typer.echo(_dump(report.to_dict()))
    else:
        typer.echo(f"vault {report.vault}")
        typer.echo(f"  reserve           {report.reserve}")
        typer.echo(f"  expected reserve  {report.expected_reserve}")
        for name, value in report.liabilities.items():
            typer.echo(f"  liability {name:<18} {value}")
        for name, value in report.in_flight.items():
            typer.echo(f"  in flight {name:<28} {value}")
        typer.echo(f"  creators checked  {report.creators_checked}")
        if report.ok:
            typer.echo("OK: ledger and chain agree")
        for d in report.differences:
            typer.echo(
                f"DRIFT {d.check} {d.subject}: expected {d.expected}, chain/actual {d.actual} "
                f"(delta {d.delta:+d}) - {d.detail}"
            )
    if not report.ok:
        raise typer.Exit(RECONCILE_DRIFT_EXIT)


STATUS_RPC_TIMEOUT_S = 10


def _status_chain(settings: Settings) -> dict[str, Any]:
    """StatusService's chain arguments: a node without retries (status must answer fast with
    the node down), the vault built only once the node answered, the record's role holders."""
    from web3 import Web3

    from tokenbridge.bootstrap import resolve_vault
    from tokenbridge.domain.errors import ConfigurationError

    provider = Web3.HTTPProvider(
        settings.rpc_url, request_kwargs={"timeout": STATUS_RPC_TIMEOUT_S}, exception_retry_configuration=None
    )
    w3 = Web3(provider)
    args: dict[str, Any] = {
        "rpc_url": settings.rpc_url,
        "expected_chain_id": settings.chain_id,
        "chain_id": lambda: _node_call(lambda: w3.eth.chain_id),
        "head": lambda: _node_call(lambda: w3.eth.block_number),
    }
    try:
        address, _ = resolve_vault(settings)
    except ConfigurationError as exc:
        args["chain_error"] = exc.detail
        return args

    def connect() -> Any:
        from tokenbridge.adapters.chain.vault import VaultClient

        return VaultClient(w3, address)

    args["connect"] = connect
    args["roles"] = _recorded_roles(settings, address)
    return args


def _node_call(read: Callable[[], Any]) -> int:
    """A node read, with its transport failure said in a few words (not a urllib3 repr)."""
    import requests

    try:
        return int(read())
    except requests.exceptions.Timeout:
        raise ChainError(f"no answer within {STATUS_RPC_TIMEOUT_S} s") from None
    except requests.exceptions.ConnectionError as exc:
        refused = "refused" in str(exc).lower()
        raise ChainError("connection refused" if refused else "cannot connect") from None
    except requests.exceptions.HTTPError as exc:
        raise ChainError(f"HTTP {exc.response.status_code if exc.response is not None else 'error'}") from None


def _recorded_roles(settings: Settings, vault: str) -> dict[str, str]:
    """admin/bridge/pauser named in deployments/<chain id>.json, when that record is this vault's."""
    path = settings.deployments_dir / f"{settings.chain_id}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or str(record.get("vault", "")).lower() != vault.lower():
        return {}
    return {name: str(record[name]) for name in ("admin", "bridge", "pauser") if isinstance(record.get(name), str)}


def status_command(as_json: JsonOption = False) -> None:
    """Chain, contracts, worker lease, outbox, in-flight txs, indexer lag, epochs, solvency, alarms.

    Exit 0 when ok; 2 when an alarm is open or the vault reports insolvent; 3 when the chain
    cannot be read (everything from the database is still shown); 1 on an error (no database).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from tokenbridge.domain.errors import ConfigurationError
    from tokenbridge.services.status import StatusService

    settings = _settings()
    try:
        with _uow(settings) as uow:
            report = StatusService(uow, **_status_chain(settings)).report()
    except SQLAlchemyError as exc:  # no report without the database: one line, exit 1
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        if any(m in first.lower() for m in ("no such table", "undefinedtable", "does not exist")):
            first += " (run `tokenbridge db upgrade`)"
        raise ConfigurationError(f"cannot read the database: {first[:300]}") from None
    if as_json:
        typer.echo(_dump(report.to_dict()))
    else:
        _print_status(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _age(seconds: float | None) -> str:
    from tokenbridge.entrypoints.cli_common import duration

    if seconds is None:
        return "-"
    return duration(int(seconds)) if seconds >= 0 else f"-{duration(int(-seconds))}"


def _yes_no(value: bool | None, yes: str = "yes", no: str = "no") -> str:
    return "unknown" if value is None else (yes if value else no)


def _print_status(report: Any) -> None:
    c = report.chain
    if c is None or c.reachable is None:
        typer.echo("chain: not configured")
    elif c.reachable:
        expected = "" if c.expected_chain_id in (None, c.chain_id) else f" (configured {c.expected_chain_id}!)"
        typer.echo(f"chain: {c.chain_id}{expected} at {c.rpc_url}, head block {c.head_block}")
    else:
        typer.echo(f"chain: UNREACHABLE at {c.rpc_url}: {c.error}")
    k = report.contracts
    if k is not None:
        if k.vault is None:
            typer.echo(f"contracts: unknown ({k.error})")
        else:
            typer.echo(f"vault {k.vault}: {_yes_no(k.vault_paused, 'PAUSED', 'running')}")
            typer.echo(f"coin  {k.coin}: {_yes_no(k.coin_paused, 'PAUSED', 'running')}")
            if k.error:
                typer.echo(f"  ({k.error})")
        for r in k.roles:
            typer.echo(f"  {r.role:<6} {r.address}  holds role: {_yes_no(r.holds)}")
    w = report.worker
    if w is not None:
        if not w.signers:
            typer.echo("worker: no signer row yet (the worker has never run against this database)")
        for sg in w.signers:
            if sg.lease_holder is None:
                typer.echo(f"worker signer {sg.address}: no lease holder")
                continue
            state = (
                f"live, expires in {_age(sg.lease_expires_in_s)}"
                if sg.live
                else f"EXPIRED {_age(-(sg.lease_expires_in_s or 0))} ago"
            )
            typer.echo(
                f"worker signer {sg.address}: lease {sg.lease_holder} ({state}), "
                f"last heartbeat {_age(sg.heartbeat_age_s)} ago, next nonce {sg.next_nonce}, "
                f"bridge role {_yes_no(sg.bridge_role)}"
            )
    typer.echo("outbox (kind state: count / units)")
    if not report.outbox:
        typer.echo("  empty")
    for kind, states in report.outbox.items():
        for state, count in states.items():
            typer.echo(f"  {kind} {state}: {count} / {report.outbox_amounts[kind][state]}")
    o = report.outbox_oldest_open
    if o is not None:
        typer.echo(f"  oldest open: #{o.id} {o.kind} {o.state}, {_age(o.age_s)} old")
    typer.echo(f"chain txs in flight: {report.in_flight} {report.chain_txs or ''}".rstrip())
    t = report.oldest_in_flight
    if t is not None:
        typer.echo(f"  oldest: #{t.id} {t.purpose} {t.state} nonce {t.nonce}, {_age(t.age_s)} old")
    for ix in report.indexers:
        typer.echo(
            f"deposits indexer {ix.vault}: cursor {ix.cursor}, head {ix.head}, lag {ix.lag}, "
            f"unconfirmed {ix.unconfirmed_deposits} ({ix.unconfirmed_amount} units)"
        )
    last = report.last_epoch
    typer.echo(f"last epoch: {'none' if last is None else f'{last.id} {last.state} ({last.gift_count} gifts)'}")
    settled = report.last_settled_epoch
    typer.echo(f"last settled epoch: {'none' if settled is None else f'{settled.id} at {_iso(settled.settled_at)}'}")
    s = report.solvency
    typer.echo(
        f"solvency: reserve {s.reserve}, liabilities {s.liabilities}, committed total {s.committed_total} "
        f"(epoch {s.committed_epoch}), solvent on-chain {s.solvent_on_chain}" + (f" [{s.error}]" if s.error else "")
    )
    for note in report.notes:
        typer.echo(f"note: {note}")
    for warning in report.warnings:
        typer.echo(f"warning: {warning}")
    if not report.alarms:
        typer.echo("alarms: none")
    for a in report.alarms:
        typer.echo(f"ALARM #{a.id} {a.kind} [{a.scope}] since {_iso(a.raised_at)}: {a.detail}")
    problems = report.problems
    typer.echo("status: OK" if not problems else f"status: NOT OK (exit {report.exit_code})")
    for p in problems:
        typer.echo(f"  {p.kind}: {p.detail}")


def alarms_list(as_json: JsonOption = False) -> None:
    """List open alarms (`--json`: {"ok": true, "alarms": [{id, kind, scope, detail, raised_at}]})."""
    from tokenbridge.adapters.db.models_deposits import DepositStore

    with _uow(_settings()) as uow, uow.read() as u:
        rows: list[dict[str, Any]] = [
            {"id": a.id, "kind": a.kind, "scope": a.scope, "detail": a.detail, "raised_at": a.raised_at}
            for a in DepositStore(u.session).open_alarms()
        ]
    if as_json:
        typer.echo(_dump({"ok": True, "alarms": rows}))
        return
    if not rows:
        typer.echo("no open alarms")
    for r in rows:
        typer.echo(f"#{r['id']} {r['kind']} [{r['scope']}] since {_iso(r['raised_at'])}: {r['detail']}")


def alarms_clear(
    alarm_id: Annotated[int, typer.Argument(help="The alarm's id (from `alarms list`).")],
    as_json: JsonOption = False,
) -> None:
    """Close an alarm after resolving its cause (docs/operations.md). A deep reorg not resolved is raised again."""
    from datetime import UTC

    from tokenbridge.adapters.db.models_deposits import DepositStore
    from tokenbridge.domain.errors import NotFound

    now = datetime.now(UTC)
    with _uow(_settings()) as uow, uow.write() as u:
        cleared = DepositStore(u.session).clear_alarm(alarm_id, now)
        u.commit()
    if not cleared:
        if as_json:
            typer.echo(_dump({"ok": False, "error": f"no open alarm #{alarm_id}", "id": alarm_id}))
        raise NotFound(f"no open alarm #{alarm_id}")
    if as_json:
        typer.echo(_dump({"ok": True, "id": alarm_id, "cleared_at": now}))
        return
    typer.echo(f"alarm #{alarm_id} cleared")


def register(app: typer.Typer) -> None:
    """Attach `worker`, `reconcile`, `status` and `alarms list|clear` to the root app."""
    app.command("worker")(worker_command)
    app.command("reconcile")(reconcile_command)
    app.command("status")(status_command)
    alarms = typer.Typer(help="Operator alarms (deep reorganisations, unpostable deposits).", no_args_is_help=True)
    alarms.command("list")(alarms_list)
    alarms.command("clear")(alarms_clear)
    app.add_typer(alarms, name="alarms")
