"""`tokenbridge`: one entry point, one sub-command per operator task.

Each group lives in its own module and is registered here; errors raised on purpose
(`TokenbridgeError`) are printed as one line and exit 1, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from tokenbridge.domain.errors import TokenbridgeError

app = typer.Typer(
    name="tokenbridge",
    help="Creator-tipping coins whose money trail anyone can verify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Creator-tipping coins whose money trail anyone can verify."""


@app.command()
def version() -> None:
    """Print the installed tokenbridge version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("tokenbridge"))


def _register() -> None:
    from tokenbridge.entrypoints import cli_api, cli_bridge, cli_chain, cli_ledger, cli_ops, cli_verify

    cli_chain.register(app)
    cli_ledger.register(app)
    cli_api.register(app)
    cli_verify.register(app)
    cli_ops.register(app)
    cli_bridge.register(app)


_register()


def main() -> None:
    try:
        app()
    except TokenbridgeError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        sys.exit(1)
