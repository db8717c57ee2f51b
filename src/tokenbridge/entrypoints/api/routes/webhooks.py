"""Payment-provider webhooks: authenticated by the `Tokenbridge-Signature` HMAC, not by an API key."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, Request
from starlette.concurrency import run_in_threadpool

from tokenbridge.domain.errors import TokenbridgeError
from tokenbridge.domain.recharge import WebhooksNotConfigured

from ..deps import ServicesDep
from ..metrics import ApiMetrics
from ..problems import problem_responses
from ..schemas import PaymentEventOut

log = logging.getLogger("tokenbridge.api")

NOT_CONFIGURED_WARNING = (
    "warning: TOKENBRIDGE_WEBHOOK_SECRETS is not set: POST /v1/webhooks/payments answers 503 webhooks-not-configured"
)


@asynccontextmanager
async def _warn_when_unconfigured(app: FastAPI) -> AsyncIterator[None]:
    """At start (`tokenbridge serve`, once per worker process): one line when webhooks cannot be verified."""
    services = getattr(app.state, "services", None)
    if services is not None and not services.payments.configured:
        log.warning(NOT_CONFIGURED_WARNING)
    yield


router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], lifespan=_warn_when_unconfigured)

MAX_WEBHOOK_BODY = 64 * 1024


class PayloadTooLargeError(TokenbridgeError):
    code = "payload-too-large"
    status = 413
    title = "Payload too large"


_EVENT_SCHEMA = {
    "type": "object",
    "required": ["id", "type", "data"],
    "properties": {
        "id": {"type": "string", "description": "The provider's event id (replays answer the first result)."},
        "type": {"type": "string", "enum": ["recharge.succeeded", "recharge.refunded", "recharge.chargeback"]},
        "data": {
            "type": "object",
            "required": ["payment_id", "account_id", "amount"],
            "properties": {
                "payment_id": {"type": "string"},
                "account_id": {"type": "string"},
                "amount": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
            },
        },
    },
}


def _too_large() -> PayloadTooLargeError:
    return PayloadTooLargeError(f"webhook bodies are limited to {MAX_WEBHOOK_BODY} bytes")


async def _read_capped(request: Request) -> bytes:
    """The body, refused (413) from its Content-Length before reading, else while streaming past the cap."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > MAX_WEBHOOK_BODY:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_WEBHOOK_BODY:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/payments",
    summary="A payment event (recharge succeeded / refunded / chargeback), signed by the provider",
    description=(
        "The body is verified byte for byte: `Tokenbridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "
        '"<t>.<raw body>")>` with any configured secret, within 300 s of the server clock. A replayed event id '
        "answers 200 with the first result and `replayed: true`."
    ),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _EVENT_SCHEMA}}}},
    responses=problem_responses(401, 403, 404, 409, 413, 422, 503),
)
async def payment_webhook(
    request: Request,
    services: ServicesDep,
    signature: Annotated[str | None, Header(alias="Tokenbridge-Signature", include_in_schema=False)] = None,
) -> PaymentEventOut:
    metrics: ApiMetrics = request.app.state.metrics
    try:
        if not services.payments.configured:
            raise WebhooksNotConfigured("webhooks are not configured on this server (TOKENBRIDGE_WEBHOOK_SECRETS)")
        raw = await _read_capped(request)
    except TokenbridgeError as exc:
        metrics.webhook("rejected", exc.code)
        raise
    try:
        result, created = await run_in_threadpool(services.payments.handle_webhook, raw, signature)
    except TokenbridgeError as exc:
        metrics.webhook("rejected", exc.code)
        raise
    metrics.webhook("processed" if created else "replayed")
    return PaymentEventOut.of(result, created=created)
