"""Refuse request bodies above `MAX_BODY_BYTES` from their Content-Length, before any is read.

Every route reads its whole body into memory (a JSON document is parsed at once), so without a
bound one client could make a worker hold any number of bytes. The largest legitimate body is a
batch of 1,000 gifts with 128-character ids, about 450 KB. The webhook route keeps its own,
smaller cap (64 KiB), which also applies while streaming.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .problems import problem

MAX_BODY_BYTES = 1 << 20  # 1 MiB


class BodyLimit:
    """Pure ASGI: answers 413 `payload-too-large` for a declared length above the limit."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    try:
                        declared = int(value)
                    except ValueError:
                        declared = -1
                    if declared > self.limit or declared < 0:
                        status, code, title = (
                            (413, "payload-too-large", "Payload too large")
                            if declared > self.limit
                            else (400, "bad-request", "Bad request")
                        )
                        detail = (
                            f"request bodies are limited to {self.limit} bytes"
                            if status == 413
                            else "the Content-Length header is not a number"
                        )
                        await problem(status, code, title, detail)(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
