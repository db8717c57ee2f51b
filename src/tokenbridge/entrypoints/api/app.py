"""The FastAPI application: wiring only. Routes live in `routes/`, errors in `problems.py`.

`create_app()` builds the services from the settings when none are given (and its
lifespan closes what it built); `tokenbridge serve` runs `create_served_app` as a uvicorn
app factory, so each worker process builds its own services and connection pool. The
served gift POST routes go through `GiftFastPath` (fast_gifts.py) and the process's group
committer (gift_committer.py), which the lifespan drains on exit.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import Depends, FastAPI

from tokenbridge.bootstrap import Services, build_services
from tokenbridge.config import Settings, get_settings

from . import problems
from .body_limit import BodyLimit
from .deps import KeyCache, no_unknown_query
from .fast_gifts import GiftFastPath
from .gift_committer import GiftCommitter
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
# Concurrent single gifts of a worker are posted in groups (gift_committer.py) by this many
# committer threads: each holds one transaction at a time.
GIFT_COMMITTERS = 1


# py_ecc (imported by eth-account, so already imported here) raises the interpreter's recursion
# limit to 100,000 for its own arithmetic. The JSON parser of every request body recurses once
# per nesting level in C: at that limit a ~200 KB body of nested brackets overflows the C stack
# and kills the worker (SIGSEGV) before any check runs. Python's default limit turns such a body
# into a RecursionError, i.e. a 422. The API never needs more.
API_RECURSION_LIMIT = 1000


def create_app(
    services: Services | None = None,
    settings: Settings | None = None,
    *,
    owns_services: bool | None = None,
    fast_path: bool = True,
) -> FastAPI:
    """The API over `services` (built from `settings` when None). The app closes the services on
    shutdown when it built them, or when `owns_services` says so. `fast_path=False` serves the
    gift POST routes through FastAPI's own machinery (tests compare the two)."""
    if sys.getrecursionlimit() > API_RECURSION_LIMIT:
        sys.setrecursionlimit(API_RECURSION_LIMIT)
    owned = services is None if owns_services is None else owns_services
    if services is None:
        services = build_services(settings or get_settings())
    built: Services = services
    committer = GiftCommitter(lambda cmds: built.gifts.post_batch(cmds), threads=GIFT_COMMITTERS)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = API_THREADS
        try:
            yield
        finally:
            try:
                await committer.aclose()  # post every queued gift before the connections go
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
    app.state.gift_committer = committer
    problems.install(app)
    for module in (accounts, gifts, webhooks, api_keys, health, withdrawals, transparency):
        app.include_router(module.router, dependencies=[Depends(no_unknown_query)])
    if fast_path:
        app.add_middleware(GiftFastPath, api=app)  # inside MetricsMiddleware: counted like any request
    app.add_middleware(BodyLimit)  # before any route or the fast path reads a body
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


def create_served_app() -> FastAPI:
    """The uvicorn factory of `tokenbridge serve`: `create_app_from_env` in a worker process that
    serves nothing else.

    Everything built at start (modules, the app, the pool, schemas: a large heap) lives as long
    as the worker. Moved out of the cyclic collector's reach (`gc.freeze`), it is no longer
    re-scanned by every full collection; under load those stalled a worker for 100-400 ms every
    several seconds, which was the p99 of the gift bench. (Not done in `create_app_from_env`,
    which `tokenbridge demo` also calls inside its own process.)"""
    app = create_app_from_env()
    gc.collect()
    gc.freeze()
    return app
