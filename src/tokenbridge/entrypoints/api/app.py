"""The FastAPI application: wiring only. Routes live in `routes/`, errors in `problems.py`.

`create_app()` builds the services from the settings when none are given (and its
lifespan closes what it built); `tokenbridge serve` runs `create_app` as a uvicorn app
factory, so each worker process builds its own services and connection pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import Depends, FastAPI

from tokenbridge.bootstrap import Services, build_services
from tokenbridge.config import Settings, get_settings

from . import problems
from .deps import KeyCache, no_unknown_query
from .metrics import ApiMetrics, MetricsMiddleware
from .routes import accounts, api_keys, gifts, health, transparency, webhooks, withdrawals

DESCRIPTION = """\
Off-chain ledger of tokenbridge: accounts, gifts (single and batch), payment webhooks.

* Amounts are integers of base units (1 coin = 1,000,000 units), `0 < amount < 2**63`.
* Authenticate with `Authorization: Bearer <key>`; scopes `app` and `admin`.
* Every error is `application/problem+json` `{"type", "title", "status", "detail"}` with a stable `type`
  URI `https://tokenbridge.dev/problems/<code>`.
"""


# Blocking service calls run in anyio's thread pool; each holds at most one pooled
# connection. The pool is as large as the thread limit, so a burst never opens (and on
# return closes) overflow connections: that churn (a PostgreSQL backend fork per request)
# was a visible share of the served gift path. Per worker process.
API_THREADS = 16
# The served API also skips SQLAlchemy's pre-ping (a round trip on every checkout: +0.4 ms
# wall, +0.1 ms CPU per gift). A connection that died with the server fails one request;
# SQLAlchemy then invalidates the pool, and clients retry (every write is idempotent).
API_ENGINE: dict[str, object] = {
    "pool_pre_ping": False,
    "pool_recycle": 1800,
    "pool_size": API_THREADS,
    "max_overflow": 4,
}


def create_app(
    services: Services | None = None, settings: Settings | None = None, *, owns_services: bool | None = None
) -> FastAPI:
    """The API over `services` (built from `settings` when None). The app closes the services on
    shutdown when it built them, or when `owns_services` says so."""
    owned = services is None if owns_services is None else owns_services
    if services is None:
        services = build_services(settings or get_settings())
    built: Services = services

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = API_THREADS
        try:
            yield
        finally:
            if owned:
                built.close()

    app = FastAPI(
        title="tokenbridge",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses={500: problems.problem_responses(500)[500]},
    )
    app.state.services = built
    app.state.metrics = ApiMetrics()
    app.state.key_cache = KeyCache()
    problems.install(app)
    for module in (accounts, gifts, webhooks, api_keys, health, withdrawals, transparency):
        app.include_router(module.router, dependencies=[Depends(no_unknown_query)])
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def create_app_from_env() -> FastAPI:
    """What `tokenbridge serve` runs (uvicorn factory): the API plus the transparency page at `/`."""
    from tokenbridge.bootstrap import attach_settlement, build_api_chain
    from tokenbridge.entrypoints.web import mount_web

    settings = get_settings()
    chain = build_api_chain(settings)
    services = build_services(settings, rate=chain.rate if chain is not None else None, engine_options=API_ENGINE)
    app = create_app(services, owns_services=True)
    if chain is not None:
        attach_settlement(settings, services, chain)
        app.state.settlement = chain.settlement
    mount_web(app, settings)
    return app
