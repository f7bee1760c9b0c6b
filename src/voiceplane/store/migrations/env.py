"""Alembic environment for voiceplane's store; run by :mod:`voiceplane.store.db`.

Online, it migrates the connection that :func:`voiceplane.store.db.migrate_engine` put in
``config.attributes["connection"]`` (or opens one from ``sqlalchemy.url``). Offline
(``sql=True``), it writes the SQL for ``sqlalchemy.url``'s dialect without connecting.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from voiceplane.store.db import CONNECTION_ATTRIBUTE, create_engine_for
from voiceplane.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite changes tables by copying them; later migrations get that for free.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get(CONNECTION_ATTRIBUTE)
    if isinstance(connection, Connection):
        _run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url to migrate")
    engine = create_engine_for(url)
    try:
        with engine.begin() as opened:
            _run_on(opened)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
