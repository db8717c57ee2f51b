"""Readiness: the database answers and its schema is at the migrations' head."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from tokenbridge.adapters.db import migrate
from tokenbridge.domain.errors import NotReady


class HealthService:
    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self._head = migrate.head_revision(url)

    def ready(self) -> None:
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current = migrate.current_revision(self._engine)
        except SQLAlchemyError as exc:
            raise NotReady(f"database unreachable: {type(exc).__name__}") from None
        if current != self._head:
            raise NotReady(
                f"database schema at {current}, migrations head is {self._head}; run `tokenbridge db upgrade`"
            )
