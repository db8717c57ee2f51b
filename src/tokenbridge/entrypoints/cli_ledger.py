"""CLI commands for the ledger side: `db` (migrations) and `apikey`.

Each takes `--json` (one object on stdout, `{"ok": true, ...}`; datetimes ISO-8601) and reports
errors as one line on stderr with exit 1, like the operator commands (cli_common.run).
`apikey create --json` carries the plaintext key in "key": it is shown this once only.
(`serve` lives in the API's own CLI module.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import typer

from tokenbridge.entrypoints.cli_common import run

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


def _json_option() -> Any:
    return typer.Option(False, "--json", help="Print one JSON object on stdout (for scripts).")


def _revisions(target: str) -> dict[str, Any]:
    from tokenbridge.adapters.db import migrate

    current = migrate.current_revision_for(target)
    head = migrate.head_revision(target)
    return {"current": current, "head": head, "at_head": current == head}


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("head", help="Target revision."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    as_json: bool = _json_option(),
) -> None:
    """Migrate the database up to REVISION (default: head)."""

    def body() -> dict[str, Any]:
        from tokenbridge.adapters.db import migrate

        target = _url(url)
        migrate.upgrade(target, revision)
        return _revisions(target)

    run(as_json, body, lambda r: typer.echo(f"database at {r['current']}"))


@db_app.command("downgrade")
def db_downgrade(
    revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    as_json: bool = _json_option(),
) -> None:
    """Migrate the database down to REVISION."""

    def body() -> dict[str, Any]:
        from tokenbridge.adapters.db import migrate

        target = _url(url)
        migrate.downgrade(target, revision)
        return _revisions(target)

    run(as_json, body, lambda r: typer.echo(f"database at {r['current'] or 'base'}"))


@db_app.command("current")
def db_current(
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    as_json: bool = _json_option(),
) -> None:
    """Print the database's revision and the migrations' head."""

    def human(r: Mapping[str, Any]) -> None:
        hint = "" if r["at_head"] else "  (run `tokenbridge db upgrade`)"
        typer.echo(f"current {r['current'] or 'base'}  head {r['head']}{hint}")

    run(as_json, lambda: _revisions(_url(url)), human)


def _services(url: str | None) -> Services:
    from tokenbridge.bootstrap import build_services
    from tokenbridge.config import get_settings, load_settings

    settings = load_settings(database_url=url) if url else get_settings()
    return build_services(settings)


def _key_dict(info: Any) -> dict[str, Any]:
    return {
        "id": info.id,
        "scope": info.scope,
        "account_id": info.account_id,
        "created_at": info.created_at,
        "revoked": info.revoked,
    }


@apikey_app.command("create")
def apikey_create(
    scope: str = typer.Option(..., "--scope", help="app or admin."),
    account: str | None = typer.Option(None, "--account", help="Bind an app key to one account id."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    as_json: bool = _json_option(),
) -> None:
    """Create a key and print it ONCE (also in the --json object, as "key"); only its sha256 is stored."""

    def body() -> dict[str, Any]:
        from tokenbridge.domain.errors import InvalidInput

        if scope not in ("app", "admin"):
            raise InvalidInput(f"--scope must be app or admin, got {scope!r}")
        services = _services(url)
        try:
            info, plaintext = services.api_keys.create("admin" if scope == "admin" else "app", account)
        finally:
            services.close()
        return {**_key_dict(info), "key": plaintext}

    def human(r: Mapping[str, Any]) -> None:
        typer.echo(f"id      {r['id']}", err=True)
        typer.echo(f"scope   {r['scope']}" + (f"  account {r['account_id']}" if r["account_id"] else ""), err=True)
        typer.echo("key (shown once, store it now):", err=True)
        typer.echo(r["key"])

    run(as_json, body, human)


@apikey_app.command("list")
def apikey_list(
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    as_json: bool = _json_option(),
) -> None:
    """List keys (never their secret)."""

    def body() -> dict[str, Any]:
        services = _services(url)
        try:
            return {"keys": [_key_dict(k) for k in services.api_keys.list()]}
        finally:
            services.close()

    def human(r: Mapping[str, Any]) -> None:
        for k in r["keys"]:
            state = "revoked" if k["revoked"] else "active"
            typer.echo(f"{k['id']}\t{k['scope']}\t{k['account_id'] or '-'}\t{k['created_at'].isoformat()}\t{state}")

    run(as_json, body, human)


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: str = typer.Argument(..., help="Key id as shown by `apikey list`."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    as_json: bool = _json_option(),
) -> None:
    """Revoke a key; requests with it fail with 401 from then on."""

    def body() -> dict[str, Any]:
        services = _services(url)
        try:
            return _key_dict(services.api_keys.revoke(key_id))
        finally:
            services.close()

    run(as_json, body, lambda r: typer.echo(f"revoked {r['id']}"))


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.add_typer(db_app, name="db")
    app.add_typer(apikey_app, name="apikey")
