"""Every error leaves the API as RFC 9457 `application/problem+json`.

Body: `{"type", "title", "status", "detail"}`. `type` is a stable URI built from the error
class's `code` (`https://tokenbridge.dev/problems/<code>`); clients switch on it, never on
`title` or `detail`, which are for humans. A request the client got wrong is never a 500;
an unexpected exception is logged with its traceback server-side and leaves as a bare
`internal-error` problem that carries no traceback, no SQL and no secret.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from tokenbridge.domain.errors import TokenbridgeError

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://tokenbridge.dev/problems/"

log = logging.getLogger("tokenbridge.api")

# Codes that are not `TokenbridgeError` subclasses: produced by the HTTP layer itself.
_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-input", "Invalid input"),
    503: ("not-ready", "Service not ready"),
}


class Problem(BaseModel):
    """An RFC 9457 problem document; `type` is stable, `title`/`detail` are for humans."""

    type: str = Field(examples=[PROBLEM_BASE + "insufficient-funds"])
    title: str = Field(examples=["Insufficient funds"])
    status: int = Field(ge=100, le=599, examples=[409])
    detail: str = Field(examples=["user:alice:coins holds 5 units, the gift needs 10"])


def problem_type(code: str) -> str:
    return PROBLEM_BASE + code


def problem(status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = Problem(type=problem_type(code), title=title, status=status, detail=detail)
    return Response(body.model_dump_json(), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def error_problem(exc: TokenbridgeError) -> Problem:
    """The problem document for a domain error (also used for per-item batch results)."""
    return Problem(type=problem_type(exc.code), title=exc.title, status=exc.status, detail=exc.detail)


def problem_responses(*statuses: int, ok: dict[str, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries declaring problem+json bodies for the given statuses (+ an extra 200)."""
    out: dict[int | str, dict[str, Any]] = {200: ok} if ok else {}
    for status in statuses:
        _, title = _HTTP_CODES.get(status, ("error", "Error"))
        if status == 409:
            title = "Conflict (insufficient funds, idempotency key reused with another body)"
        elif status == 500:
            title = "Internal error"
        out[status] = {
            "model": Problem,
            "description": title,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return out


def _format_validation_errors(errors: Any) -> str:
    parts: list[str] = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)] or ["body"]
        msg = str(err.get("msg", "invalid"))
        if loc[-1] == "amount":
            msg += " (an amount is an integer number of base units, 0 < amount < 2**63)"
        parts.append(f"{'.'.join(loc)}: {msg}")
    return "; ".join(parts) or "request does not match the schema"


def error_response(exc: TokenbridgeError) -> Response:
    """The answer to a `TokenbridgeError` (what the app's handler sends; the gift fast path calls it)."""
    if exc.status >= 500:
        log.error("%s: %s", exc.code, exc.detail)
        # a chain or driver message may quote an RPC URL (with its API key) or SQL: keep it in the log
        detail = exc.detail if exc.status == 503 else f"{exc.title.lower()}; the incident was logged"
        return problem(exc.status, exc.code, exc.title, detail)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 and exc.code == "unauthorized" else None
    return problem(exc.status, exc.code, exc.title, exc.detail, headers)


def validation_response(errors: Any) -> Response:
    """The 422 for request validation errors (FastAPI's, or the same shape from the gift fast path)."""
    return problem(422, "invalid-input", "Invalid input", _format_validation_errors(errors))


def unreadable_body_response() -> Response:
    """FastAPI's "error parsing the body" (a 400 there) is a malformed input: a 422."""
    return problem(422, "invalid-input", "Invalid input", "the request body is not valid JSON")


async def _tokenbridge_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, TokenbridgeError)
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_response(exc.errors())


def _allowed_methods(request: Request) -> list[str]:
    """Every method any route serves at this path (Starlette's own 405 names only the first route's)."""
    methods: set[str] = set()
    path = request.scope.get("path", "")
    for context in iter_route_contexts(request.app.routes):
        regex = getattr(context, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(context.methods or ())
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 400:  # FastAPI's "error parsing the body": malformed input is a 422
        return unreadable_body_response()
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such resource"
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
    return problem(exc.status_code, code, title, detail, headers or None)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal-error", "Internal error", "internal error; the incident was logged")


def _document_validation_problems(app: FastAPI) -> None:
    """FastAPI documents its own 422 body, on routes with inputs only; ours is a problem and any
    route can answer it (an unknown query parameter is a 422 everywhere): say so for every route,
    so none can forget it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        for item in schema.get("paths", {}).values():
            for op in item.values():
                responses = op.setdefault("responses", {})
                if PROBLEM_MEDIA_TYPE not in responses.get("422", {}).get("content", {}):
                    responses["422"] = {
                        "description": "Invalid input",
                        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    }
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}"))
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    _document_validation_problems(app)
    app.add_exception_handler(TokenbridgeError, _tokenbridge_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
