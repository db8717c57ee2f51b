"""Liveness, readiness and Prometheus metrics (public: no key)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from tokenbridge.domain.errors import TokenbridgeError

from ..deps import ServicesDep
from ..metrics import ApiMetrics
from ..problems import problem, problem_responses
from ..schemas import Health

router = APIRouter(tags=["operations"])
log = logging.getLogger("tokenbridge.api")


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: the database is reachable and migrated to head",
    responses=problem_responses(503, ok={"model": Health, "description": "Ready"}),
    response_model=Health,
)
async def readyz(services: ServicesDep) -> Response | Health:
    try:
        await run_in_threadpool(services.health.ready)
    except TokenbridgeError as exc:
        return problem(503, "not-ready", "Service not ready", exc.detail)
    except Exception as exc:  # a driver error may quote the URL: log it, answer only its class
        log.warning("readiness check failed: %r", exc)
        return problem(503, "not-ready", "Service not ready", f"database check failed ({type(exc).__name__})")
    return Health(status="ok")


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics"}},
)
async def metrics(request: Request) -> Response:
    registry: ApiMetrics = request.app.state.metrics
    body = await run_in_threadpool(registry.render)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
