"""`tokenbridge serve`: the HTTP API under uvicorn.

Uvicorn runs the app *factory* (`create_served_app`), so every worker process builds its
own services and database pool; several workers (and several hosts) share one PostgreSQL
database. With `--workers > 1`, Prometheus metrics are aggregated across workers through
a multiprocess directory (`PROMETHEUS_MULTIPROC_DIR`, a temporary one unless set).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from typing import Annotated

import typer

from tokenbridge.config import Settings, load_settings
from tokenbridge.domain.errors import ConfigurationError, TokenbridgeError

APP_FACTORY = "tokenbridge.entrypoints.api.app:create_served_app"


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (use PostgreSQL when > 1).")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request (metrics count them anyway).")] = True,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs, metrics at /metrics)."""
    import uvicorn

    settings = load_settings()  # a bad TOKENBRIDGE_* value is one line here, not a traceback per worker
    _preflight(settings)
    if workers > 1 and settings.database_url.startswith("sqlite"):
        typer.echo("warning: several workers on SQLite serialise on its file lock; use PostgreSQL", err=True)
    with ExitStack() as stack:
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="tb-metrics-")
            )
        try:
            uvicorn.run(
                APP_FACTORY,
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
                access_log=access_log,
                proxy_headers=False,
                server_header=False,
            )
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot serve on {host}:{port}: {exc}") from None


def _preflight(settings: Settings) -> None:
    """Build and close the services once, so a bad database URL is one line before any worker starts."""
    from tokenbridge.bootstrap import build_services

    try:
        build_services(settings).close()
    except TokenbridgeError:
        raise
    except Exception as exc:  # driver errors: name and first line only (never the URL's password)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigurationError(f"cannot start: {type(exc).__name__}: {first}") from None


def register(app: typer.Typer) -> None:
    """Attach `serve` to the root app."""
    app.command("serve")(serve)
