"""CLI commands of the bridge worker: `worker`, `reconcile`, `status`, `alarms` (docs/operations.md).

Exit codes: `reconcile` 0 = ledger and chain agree, 1 = drift (every difference printed);
`status` 0 = no open alarm, 2 = an alarm is open; `worker` 0 after a graceful SIGTERM/SIGINT.
Errors raised on purpose are one line on stderr and exit 1 (the root `main()`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenbridge.domain.errors import ChainError

if TYPE_CHECKING:
    from tokenbridge.adapters.db.uow import UnitOfWorkFactory
    from tokenbridge.config import Settings

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
STATUS_ALARM_EXIT = 2
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
    return json.dumps(data, indent=2, sort_keys=True, default=str)


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


def status_command(as_json: JsonOption = False) -> None:
    """Outbox depth, in-flight transactions, indexer lag, last epoch, alarms, solvency; exit 2 on an open alarm."""
    from tokenbridge.services.status import StatusService

    settings = _settings()
    chain: Any = None
    notes: list[str] = []
    try:
        chain = _vault(settings)
    except Exception as exc:  # status must work with the chain down: say so and show the database side
        notes.append(f"chain: {exc}")
    head = (lambda: int(chain.w3.eth.block_number)) if chain is not None else None
    with _uow(settings) as uow:
        report = StatusService(uow, head=head, chain=chain).report()
    report.notes[:0] = notes
    if as_json:
        typer.echo(_dump(report.to_dict()))
    else:
        _print_status(report)
    if not report.ok:
        raise typer.Exit(STATUS_ALARM_EXIT)


def _print_status(report: Any) -> None:
    typer.echo("outbox (kind state: count / units)")
    if not report.outbox:
        typer.echo("  empty")
    for kind, states in report.outbox.items():
        for state, count in states.items():
            typer.echo(f"  {kind} {state}: {count} / {report.outbox_amounts[kind][state]}")
    typer.echo(f"chain txs in flight: {report.in_flight} {report.chain_txs or ''}".rstrip())
    for ix in report.indexers:
        typer.echo(
            f"deposits indexer {ix.vault}: cursor {ix.cursor}, head {ix.head}, lag {ix.lag}, "
            f"unconfirmed {ix.unconfirmed_deposits} ({ix.unconfirmed_amount} units)"
        )
    last = report.last_epoch
    typer.echo(f"last epoch: {'none' if last is None else f'{last.id} {last.state} ({last.gift_count} gifts)'}")
    settled = report.last_settled_epoch
    typer.echo(f"last settled epoch: {'none' if settled is None else f'{settled.id} at {settled.settled_at}'}")
    s = report.solvency
    typer.echo(
        f"solvency: reserve {s.reserve}, liabilities {s.liabilities}, committed total {s.committed_total} "
        f"(epoch {s.committed_epoch}), solvent on-chain {s.solvent_on_chain}" + (f" [{s.error}]" if s.error else "")
    )
    for note in report.notes:
        typer.echo(f"note: {note}")
    if report.ok:
        typer.echo("alarms: none")
    for a in report.alarms:
        typer.echo(f"ALARM #{a.id} {a.kind} [{a.scope}] since {a.raised_at}: {a.detail}")


def alarms_list(as_json: JsonOption = False) -> None:
    """List open alarms."""
    from tokenbridge.adapters.db.models_deposits import DepositStore

    with _uow(_settings()) as uow, uow.read() as u:
        rows = [
            {"id": a.id, "kind": a.kind, "scope": a.scope, "detail": a.detail, "raised_at": a.raised_at}
            for a in DepositStore(u.session).open_alarms()
        ]
    if as_json:
        typer.echo(_dump(rows))
        return
    if not rows:
        typer.echo("no open alarms")
    for r in rows:
        typer.echo(f"#{r['id']} {r['kind']} [{r['scope']}] since {r['raised_at']}: {r['detail']}")


def alarms_clear(alarm_id: Annotated[int, typer.Argument(help="The alarm's id (from `alarms list`).")]) -> None:
    """Close an alarm after resolving its cause (docs/operations.md). A deep reorg not resolved is raised again."""
    from datetime import UTC, datetime

    from tokenbridge.adapters.db.models_deposits import DepositStore
    from tokenbridge.domain.errors import NotFound

    with _uow(_settings()) as uow, uow.write() as u:
        cleared = DepositStore(u.session).clear_alarm(alarm_id, datetime.now(UTC))
        u.commit()
    if not cleared:
        raise NotFound(f"no open alarm #{alarm_id}")
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
