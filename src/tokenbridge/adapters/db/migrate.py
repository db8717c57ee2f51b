"""Alembic, driven programmatically (no alembic.ini on the command line).

Every entry point turns what an operator can get wrong (an unknown URL scheme, a server
that does not answer, a SQLite file in a directory that does not exist, a database that
was never migrated) into one-line `ConfigurationError`s, never a driver traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, exc
from sqlalchemy.engine import URL

from tokenbridge.domain.errors import ConfigurationError

from .engine import make_engine, normalise_url

T = TypeVar("T")

NOT_MIGRATED = "database not migrated: run `tokenbridge db upgrade`"
_MISSING_TABLE = ("no such table", "undefinedtable", "does not exist")


def _parse(url: str) -> URL:
    """The normalised URL, or a one-line error for a string that is not a usable database URL."""
    try:
        u = normalise_url(url)
        backend = u.get_backend_name()
    except (exc.ArgumentError, ValueError) as e:
        raise ConfigurationError(f"invalid database URL: {_first_line(e)}") from None
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(f"unsupported database URL scheme {u.drivername!r}: use sqlite:/// or postgresql://")
    try:
        u.get_dialect()
    except (exc.NoSuchModuleError, exc.ArgumentError) as e:
        raise ConfigurationError(f"unsupported database URL scheme {u.drivername!r}: {_first_line(e)}") from None
    return u


def _shown(u: URL) -> str:
    return u.render_as_string(hide_password=True)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _is_sqlite_file(u: URL) -> bool:
    db = u.database
    return u.get_backend_name() == "sqlite" and bool(db) and db != ":memory:" and not str(db).startswith("file:")


def _require_sqlite_parent(u: URL) -> None:
    """A SQLite file is created by upgrade, but never its directory (a typo must not build a tree)."""
    db = u.database
    if _is_sqlite_file(u):
        parent = Path(str(db)).parent
        if not parent.is_dir():
            raise ConfigurationError(f"cannot create the SQLite database {db}: directory {parent} does not exist")


def database_error(error: BaseException, url: str | URL | None = None) -> ConfigurationError | None:
    """A one-line ConfigurationError for a driver error an operator causes, or None for anything else."""
    where = _shown(normalise_url(url)) if url is not None else "the database"
    if isinstance(error, exc.DBAPIError):
        text = str(error.orig if error.orig is not None else error).lower()
        if isinstance(error, (exc.OperationalError, exc.ProgrammingError)) and any(m in text for m in _MISSING_TABLE):
            return ConfigurationError(NOT_MIGRATED)
        if error.connection_invalidated or isinstance(error, (exc.OperationalError, exc.InterfaceError)):
            return ConfigurationError(f"cannot connect to {where}: {_first_line(error.orig or error)}")
    return None


@contextmanager
def translate_errors(url: str | URL | None = None) -> Iterator[None]:
    """Re-raise an operator's database mistake as a one-line ConfigurationError."""
    try:
        yield
    except exc.SQLAlchemyError as e:
        translated = database_error(e, url)
        if translated is None:
            raise
        raise translated from None


def _run(url: str, fn: Callable[[URL], T]) -> T:
    u = _parse(url)
    _require_sqlite_parent(u)  # make_engine would otherwise create the directories
    with translate_errors(u):
        return fn(u)


def alembic_config(url: str) -> Config:
    here = files("tokenbridge.adapters.db") / "migrations"
    cfg = Config(str(here / "alembic.ini"))
    cfg.set_main_option("script_location", str(here))
    cfg.attributes["url"] = normalise_url(url).render_as_string(hide_password=False)
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    _run(url, lambda _u: command.upgrade(alembic_config(url), revision))


def downgrade(url: str, revision: str = "-1") -> None:
    _run(url, lambda _u: command.downgrade(alembic_config(url), revision))


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """Raw driver errors (health checks map them to `not-ready`); `current_revision_for` translates."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def current_revision_for(url: str) -> str | None:
    def read(u: URL) -> str | None:
        engine = make_engine(u)
        try:
            return current_revision(engine)
        finally:
            engine.dispose()

    return _run(url, read)
