"""The served path of POST /v1/gifts and POST /v1/gifts/batch, without FastAPI's per-request machinery.

FastAPI spent most of a single gift's server CPU on itself (dependency resolution, the
thread-pool hand-off, its exit stacks and response wrappers) rather than on the gift.
`GiftFastPath` is a pure ASGI middleware in front of the router: it answers exactly these
two operations and passes everything else on. It reproduces, in the same order, what the
declared FastAPI routes (routes/gifts.py) do with a request, and then calls the same code:

1. read the body; as FastAPI (strict content type): JSON is parsed only when the
   `Content-Type` is `application/json` or `application/*+json`, malformed JSON is a 422
   whatever the key, an unreadable body is FastAPI's 400, which problems.py turns into a 422;
2. an unknown query parameter is a 422 (`no_unknown_query`);
3. the API key (`Authorization: Bearer`, parsed like `HTTPBearer`) and its scope: 401 / 403;
4. the body against the same pydantic models (422 with the same `loc` and messages);
5. the route's own code (`routes.gifts.post_one` / `post_many`): authorisation of the
   sender, the group committer, the metrics counters, the JSON answer.

Errors leave through the same problem builders as the app's exception handlers, and an
unexpected exception propagates to the app's last-resort handler (a 500 problem) as it
would from the route. The route object is put in the scope so `MetricsMiddleware` labels
the request with its template, as for any routed request. tests/api/test_gift_fast_path.py
sends the same requests (good and bad) to an app with and without this middleware and
compares the answers.
"""

from __future__ import annotations

import email.message
import json
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenbridge.domain.errors import InvalidInput, TokenbridgeError
from tokenbridge.gc_pause import gc_paused

from . import problems
from .deps import _query_names, authenticate, bearer_token, check_app_scope
from .routes.gifts import post_many, post_one
from .schemas import GiftBatch, PostGiftBody

SINGLE = "/v1/gifts"
BATCH = "/v1/gifts/batch"
_JSON_TYPES = (b"application/json",)


class _Unreadable(Exception):
    """The body could not be read or decoded (FastAPI answers 400 there; problems.py makes it a 422)."""


class _Invalid(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("request validation failed")
        self.errors = errors


_MISSING = object()


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise _Unreadable("client disconnected")


def _is_json(content_type: bytes) -> bool:
    if content_type in _JSON_TYPES:
        return True
    message = email.message.Message()  # FastAPI's own test of the media type
    message["content-type"] = content_type.decode("latin-1")
    if message.get_content_maintype() == "application":
        subtype = message.get_content_subtype()
        return subtype == "json" or subtype.endswith("+json")
    return False


def _parse(body: bytes, content_type: bytes | None) -> Any:
    """What FastAPI validates: nothing (empty body), the JSON value, or the raw bytes."""
    if not body:
        return _MISSING
    if not content_type or not _is_json(content_type):
        return body  # strict content type: not parsed, and so not a valid object
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise _Invalid([{"type": "json_invalid", "loc": ("body", e.pos), "msg": "JSON decode error"}]) from e
    except Exception as e:
        raise _Unreadable(str(e)) from e


def _validate(model: type[BaseModel], value: Any) -> Any:
    if value is _MISSING:
        raise _Invalid([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        return model.model_validate(value, from_attributes=True)  # as FastAPI validates a body
    except ValidationError as exc:
        raise _Invalid([{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]) from None


def _validate_json(model: type[BaseModel], body: bytes) -> Any:
    """The model straight from the JSON bytes (pydantic's parser: about half the CPU of
    `json.loads` + `model_validate`), or None when that fails for any reason: the caller then
    takes the way above, whose errors are FastAPI's. Used only on success, so where the two
    parsers differ (a UTF-8 byte-order mark, UTF-16 bodies: `json.loads` takes them, this
    refuses), the answer is still FastAPI's; both keep the last of duplicate keys (tested)."""
    try:
        with gc_paused():  # a batch is 1,000 models: see tokenbridge.gc_pause (never held across an await)
            return model.model_validate_json(body)
    except ValueError:  # ValidationError, including malformed JSON
        return None


class GiftFastPath:
    """ASGI middleware answering POST /v1/gifts and /v1/gifts/batch (see the module docstring)."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._routes: dict[str, tuple[Any, set[str]]] | None = None

    def _route(self, path: str) -> tuple[Any, set[str]] | None:
        if self._routes is None:
            found: dict[str, tuple[Any, set[str]]] = {}
            for context in iter_route_contexts(self.api.routes):
                cpath = getattr(context, "path", None)
                if cpath in (SINGLE, BATCH) and "POST" in (getattr(context, "methods", None) or ()):
                    dependant = getattr(context, "dependant", None)
                    found[cpath] = (context, _query_names(dependant) if dependant is not None else set())
            self._routes = found
        return self._routes.get(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in (SINGLE, BATCH)
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        found = self._route(scope["path"])
        if found is None:  # not served by this app (a test app without the gift routes)
            await self.app(scope, receive, send)
            return
        route, query_names = found
        scope["route"] = route  # what the router would set: MetricsMiddleware labels by its template
        try:
            status, payload = await self._answer(scope, receive, query_names)
        except TokenbridgeError as exc:
            response: Response = problems.error_response(exc)
        except _Invalid as exc:
            response = problems.validation_response(exc.errors)
        except _Unreadable:
            response = problems.unreadable_body_response()
        else:
            headers = [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, query_names: set[str]) -> tuple[int, bytes]:
        content_type = authorization = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                if content_type is None:
                    content_type = value
            elif name == b"authorization" and authorization is None:
                authorization = value
        body = await _read_body(receive)
        model: type[BaseModel] = PostGiftBody if scope["path"] == SINGLE else GiftBatch
        valid = _validate_json(model, body) if content_type in _JSON_TYPES else None
        value = _parse(body, content_type) if valid is None else valid
        if scope["query_string"]:
            unknown = sorted(set(QueryParams(scope["query_string"])) - query_names)
            if unknown:
                raise InvalidInput(f"unknown query parameter(s): {', '.join(unknown)[:200]}")
        state = self.api.state
        plaintext = bearer_token(authorization.decode("latin-1") if authorization is not None else None)
        key = check_app_scope(await authenticate(state, plaintext))
        if valid is None:
            valid = _validate(model, value)
        if scope["path"] == SINGLE:
            return await post_one(state, key, valid)
        return 200, await post_many(state, key, valid)
