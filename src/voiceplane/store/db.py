"""Engines, sessions and migrations.

:func:`create_engine_for` turns a store URL (``Config.effective_store_url``) into an engine:

- SQLite (the embedded default): the file's directory is created; every connection runs in
  WAL mode with foreign keys on, a busy timeout, and ``synchronous=FULL`` so a committed
  call survives a power cut, not only a crash of the process. Each transaction starts with
  ``BEGIN IMMEDIATE``: it takes SQLite's single write lock up front (waiting up to the busy
  timeout), so a transaction that reads and then writes never fails half-way with
  "database is locked", and reads inside it are repeatable. Readers outside a transaction
  are never blocked (WAL). Keep transactions short.
- PostgreSQL: ``postgresql://`` (and ``postgres://``) use the psycopg 3 driver
  (``pip install voiceplane[postgresql]``); connections are pinged before use so a
  restarted server costs no failed request.

:func:`migrate` upgrades a database to the newest schema with the Alembic migrations shipped
inside this package, with no ``alembic.ini``: a fresh database is created, an up-to-date one
is left alone. :func:`session_factory` makes the sessions the repository functions take.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS_DIR: Final = Path(__file__).resolve().with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
# Execution option marking a read-only transaction (see reader_sessions).
READ_ONLY_OPTION: Final = "voiceplane_read_only"

# Where env.py finds the connection to migrate (Config.attributes is Alembic's way to pass
# objects to env.py).
CONNECTION_ATTRIBUTE: Final = "connection"


def normalize_url(url: str | URL) -> URL:
    """The SQLAlchemy URL for a store URL: PostgreSQL URLs without a driver get psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory or URI-style database."""
    database = url.database
    if (
        not database
        or database == ":memory:"
        or url.query.get("uri")
        or database.startswith("file:")
    ):
        return None
    return Path(database)


def create_engine_for(url: str, **engine_options: Any) -> Engine:
    """An engine for ``url``; see the module docstring for what is set per database.

    ``engine_options`` go to :func:`sqlalchemy.create_engine` (``echo=True`` to debug).
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            path.absolute().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **engine_options)
        _configure_sqlite(engine)
        return engine
    engine_options.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **engine_options)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):  # pragma: no cover
            return
        # SQLAlchemy emits BEGIN itself (below); sqlite3's own transaction handling would
        # skip it before SELECTs and DDL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # On the driver itself: through SQLAlchemy's statement machinery this BEGIN was a
        # tenth of a small transaction's CPU (the store writer runs hundreds a second).
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            driver.execute("BEGIN")  # deferred: a reader never takes the lock
        else:
            driver.execute("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine``; objects stay readable after commit (no reload on access).

    Use one short transaction per unit of work::

        with factory.begin() as session:
            call = repository.create_call(session, account=account, service="outbound", ...)
    """
    return sessionmaker(engine, expire_on_commit=False)


def reader_sessions(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions like ``sessions`` for transactions that only read.

    On SQLite they begin with a plain (deferred) ``BEGIN`` instead of ``BEGIN IMMEDIATE``:
    in WAL mode a reader then neither waits for the single write lock nor holds it up, and
    sees one consistent snapshot. On PostgreSQL nothing changes.
    """
    bind = sessions.kw["bind"]
    if not isinstance(bind, Engine):
        raise TypeError("reader_sessions needs sessions bound to an engine")
    return session_factory(bind.execution_options(**{READ_ONLY_OPTION: True}))


# --- migrations ------------------------------------------------------------------------------


def alembic_config(url: str | None = None, *, output: io.StringIO | None = None) -> AlembicConfig:
    """An Alembic configuration for the migrations in this package, built in code.

    ``url`` is only needed for offline (``sql=True``) runs; ``output`` then receives the SQL.
    """
    config = AlembicConfig(output_buffer=output) if output is not None else AlembicConfig()
    # Values pass through configparser interpolation, where "%" is special.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision of the database behind ``engine``; None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate_engine(engine: Engine) -> None:
    """Upgrade the database behind ``engine`` to :func:`head_revision`, in one transaction."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes[CONNECTION_ATTRIBUTE] = connection
        command.upgrade(config, "head")


def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the newest schema; a no-op when it is up to date."""
    engine = create_engine_for(url)
    try:
        migrate_engine(engine)
    finally:
        engine.dispose()


def migration_sql(url: str) -> str:
    """The SQL that migrates an empty database of ``url``'s kind, without connecting to it."""
    output = io.StringIO()
    rendered = normalize_url(url).render_as_string(hide_password=False)
    command.upgrade(alembic_config(rendered, output=output), "head", sql=True)
    return output.getvalue()
