"""Payment-provider webhooks: authenticated by the `Tokenbridge-Signature` HMAC, not by an API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.concurrency import run_in_threadpool

from tokenbridge.domain.errors import TokenbridgeError

from ..deps import ServicesDep
from ..metrics import ApiMetrics
from ..problems import problem_responses
from ..schemas import PaymentEventOut

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

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


@router.post(
    "/payments",
    summary="A payment event (recharge succeeded / refunded / chargeback), signed by the provider",
    description=(
        "The body is verified byte for byte: `Tokenbridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "
        '"<t>.<raw body>")>` with any configured secret, within 300 s of the server clock. A replayed event id '
        "answers 200 with the first result and `replayed: true`."
    ),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _EVENT_SCHEMA}}}},
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)
async def payment_webhook(
    request: Request,
    services: ServicesDep,
    signature: Annotated[str | None, Header(alias="Tokenbridge-Signature", include_in_schema=False)] = None,
) -> PaymentEventOut:
    metrics: ApiMetrics = request.app.state.metrics
    raw = await request.body()
    if len(raw) > MAX_WEBHOOK_BODY:
        metrics.webhook("rejected", "payload-too-large")
        raise PayloadTooLargeError(f"webhook bodies are limited to {MAX_WEBHOOK_BODY} bytes")
    try:
        result, created = await run_in_threadpool(services.payments.handle_webhook, raw, signature)
    except TokenbridgeError as exc:
        metrics.webhook("rejected", exc.code)
        raise
    metrics.webhook("processed" if created else "replayed")
    return PaymentEventOut.of(result, created=created)
