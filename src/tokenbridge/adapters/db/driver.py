"""The psycopg connection under SQLAlchemy's, for the hot paths that skip SQLAlchemy's
per-statement machinery (gifts, withdrawals, deposits), and their errors raised as
SQLAlchemy's so the callers' handling does not depend on which way a statement went."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session


def dbapi(conn: Connection) -> Any:
    """The psycopg connection under SQLAlchemy's, inside the same transaction."""
    return conn.connection.dbapi_connection


@contextmanager
def sqlalchemy_errors(statement: str, params: dict[str, Any]) -> Iterator[None]:
    """Raise driver errors as SQLAlchemy's, as if the statement had gone through it: a lost
    unique-id race must be an `sqlalchemy.exc.IntegrityError` for `retry_on_race`."""
    try:
        yield
    except psycopg.IntegrityError as exc:
        raise sa_exc.IntegrityError(statement, params, exc) from exc
    except psycopg.OperationalError as exc:
        raise sa_exc.OperationalError(statement, params, exc) from exc
    except psycopg.DatabaseError as exc:
        raise sa_exc.DatabaseError(statement, params, exc) from exc


def is_deadlock(exc: BaseException) -> bool:
    """Whether a SQLAlchemy error is PostgreSQL's deadlock abort (SQLSTATE 40P01): the whole
    transaction was rolled back and running it again is safe."""
    return isinstance(exc, sa_exc.OperationalError) and getattr(exc.orig, "sqlstate", None) == "40P01"


class SessionSql:
    """Base of the hot-path SQL adapters (gifts, withdrawals, deposits): bound to one unit of
    work's session, they run in its transaction and branch on the dialect."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def _conn(self) -> tuple[Connection, bool]:
        """The session's connection, and whether it is PostgreSQL."""
        conn = self.s.connection()
        return conn, conn.dialect.name == "postgresql"
