"""CLI commands for the ledger side: `db` (migrations) and `apikey`.

(`serve` lives in the API's own CLI module.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from tokenbridge.bootstrap import Services

db_app = typer.Typer(help="Database migrations (Alembic), against TOKENBRIDGE_DATABASE_URL.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)

_URL_HELP = "Database URL (default: TOKENBRIDGE_DATABASE_URL)."


def _url(url: str | None) -> str:
    if url:
        return url
    from tokenbridge.config import get_settings

    return get_settings().database_url


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("head", help="Target revision."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
) -> None:
    """Migrate the database up to REVISION (default: head)."""
    from tokenbridge.adapters.db import migrate

    target = _url(url)
    migrate.upgrade(target, revision)
    typer.echo(f"database at {migrate.current_revision_for(target)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
) -> None:
    """Migrate the database down to REVISION."""
    from tokenbridge.adapters.db import migrate

    target = _url(url)
    migrate.downgrade(target, revision)
    typer.echo(f"database at {migrate.current_revision_for(target) or 'base'}")


@db_app.command("current")
def db_current(url: str | None = typer.Option(None, "--url", help=_URL_HELP)) -> None:
    """Print the database's revision and the migrations' head."""
    from tokenbridge.adapters.db import migrate

    target = _url(url)
    current = migrate.current_revision_for(target)
    head = migrate.head_revision(target)
    typer.echo(
        f"current {current or 'base'}  head {head}" + ("" if current == head else "  (run `tokenbridge db upgrade`)")
    )


def _services(url: str | None) -> Services:
    from tokenbridge.bootstrap import build_services
    from tokenbridge.config import get_settings, load_settings

    settings = load_settings(database_url=url) if url else get_settings()
    return build_services(settings)


@apikey_app.command("create")
def apikey_create(
    scope: str = typer.Option(..., "--scope", help="app or admin."),
    account: str | None = typer.Option(None, "--account", help="Bind an app key to one account id."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
) -> None:
    """Create a key and print it ONCE; only its sha256 is stored."""
    from tokenbridge.domain.errors import InvalidInput

    if scope not in ("app", "admin"):
        raise InvalidInput(f"--scope must be app or admin, got {scope!r}")
    services = _services(url)
    try:
        info, plaintext = services.api_keys.create("admin" if scope == "admin" else "app", account)
    finally:
        services.close()
    typer.echo(f"id      {info.id}", err=True)
    typer.echo(f"scope   {info.scope}" + (f"  account {info.account_id}" if info.account_id else ""), err=True)
    typer.echo("key (shown once, store it now):", err=True)
    typer.echo(plaintext)


@apikey_app.command("list")
def apikey_list(url: str | None = typer.Option(None, "--url", help=_URL_HELP)) -> None:
    """List keys (never their secret)."""
    services = _services(url)
    try:
        keys = services.api_keys.list()
    finally:
        services.close()
    for k in keys:
        state = "revoked" if k.revoked else "active"
        typer.echo(f"{k.id}\t{k.scope}\t{k.account_id or '-'}\t{k.created_at.isoformat()}\t{state}")


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: str = typer.Argument(..., help="Key id as shown by `apikey list`."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
) -> None:
    """Revoke a key; requests with it fail with 401 from then on."""
    services = _services(url)
    try:
        info = services.api_keys.revoke(key_id)
    finally:
        services.close()
    typer.echo(f"revoked {info.id}")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.add_typer(db_app, name="db")
    app.add_typer(apikey_app, name="apikey")
