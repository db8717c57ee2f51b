"""Alembic environment: one migration history for SQLite and PostgreSQL.

The URL comes from `config.attributes["url"]` (set by tokenbridge.adapters.db.migrate),
else `sqlalchemy.url`, else the tokenbridge settings. SQLite runs in batch mode so
ALTERs work there too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from tokenbridge.adapters.db import (
    models_deposits,  # noqa: F401  (registers the deposits/alarms tables)
    models_settlement,  # noqa: F401  (registers the settlement tables)
    models_tx,  # noqa: F401  (registers the tx manager's tables)
)
from tokenbridge.adapters.db.engine import make_engine
from tokenbridge.adapters.db.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from tokenbridge.config import get_settings

    return get_settings().database_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
