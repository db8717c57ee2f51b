"""The FastAPI application: wiring only. Routes live in `routes/`, errors in `problems.py`.

`create_app()` builds the services from the settings when none are given (and its
lifespan closes what it built); `tokenbridge serve` runs `create_app` as a uvicorn app
factory, so each worker process builds its own services and connection pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
    services = build_services(settings, rate=chain.rate if chain is not None else None)
    app = create_app(services, owns_services=True)
    if chain is not None:
        attach_settlement(settings, services, chain)
        app.state.settlement = chain.settlement
    mount_web(app, settings)
    return app
