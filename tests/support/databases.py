"""Databases for tests: whatever touches the store runs on SQLite and on PostgreSQL.

The fixtures are in ``tests/conftest.py``, so every test package can use them:

* ``database_url``: parametrized over ``sqlite`` and ``postgresql``, so a test (or a fixture)
  that requests it runs once per database, with ids ``test_x[sqlite]`` and
  ``test_x[postgresql]``. The URL names a fresh, empty database that nobody else uses;
  migrate it yourself (``voiceplane.store.db.migrate(database_url)``) or test what happens
  without migrating. It is dropped after the test.
* ``sqlite_database_url`` / ``postgresql_database_url``: one database kind only, for tests
  of something only that kind has (SQLite's pragmas, PostgreSQL's row locks).

Example, an API test on both databases::

    @pytest.fixture
    def app(database_url: str) -> FastAPI:
        migrate(database_url)
        return create_app(load_config(None, {"VOICEPLANE_STORE_URL": database_url}))

SQLite is a file in the test's ``tmp_path``. PostgreSQL needs a server: ``scripts/test.sh``
starts a private one with ``scripts/postgres.sh`` and passes its URL to pytest in
``VOICEPLANE_TEST_POSTGRES_URL`` (a role that may create databases). Each test gets a new
database on it (``CREATE DATABASE``, then ``DROP DATABASE ... WITH (FORCE)``). Run by hand::

    export VOICEPLANE_TEST_POSTGRES_URL="$(./scripts/postgres.sh)"
    .venv/bin/pytest -q tests/store

Without the variable the PostgreSQL cases are skipped, except in CI (``CI`` set), where
they fail: CI must never pass by testing less than it claims. ``-m "not postgresql"``
deselects them.
"""

from __future__ import annotations

import os
import re
import secrets
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from voiceplane.store.db import normalize_url

POSTGRES_URL_VARIABLE: Final = "VOICEPLANE_TEST_POSTGRES_URL"
# Names of the per-test databases: the prefix tells a leftover of a killed run.
DATABASE_PREFIX: Final = "vp_test_"
_SAFE_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def running_in_ci(environ: Mapping[str, str]) -> bool:
    """True when ``CI`` is set to anything but empty, ``0`` or ``false``."""
    return environ.get("CI", "").strip().lower() not in {"", "0", "false"}


def sqlite_url(directory: Path) -> str:
    """The URL of a SQLite file in ``directory`` (created by the store on first use)."""
    return f"sqlite:///{directory / 'voiceplane.db'}"


def postgres_server_url(environ: Mapping[str, str]) -> URL:
    """The PostgreSQL server to create test databases on, from ``VOICEPLANE_TEST_POSTGRES_URL``.

    Skips the calling test when the variable is unset, fails it instead in CI, and fails it
    when the value is not a PostgreSQL URL.
    """
    value = environ.get(POSTGRES_URL_VARIABLE, "").strip()
    if not value:
        reason = f"{POSTGRES_URL_VARIABLE} is not set (start one: ./scripts/postgres.sh)"
        if running_in_ci(environ):
            pytest.fail(f"CI must test PostgreSQL too, but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        url = normalize_url(value)  # psycopg 3 for a plain postgresql:// URL, as the store does
    except ArgumentError as exc:
        pytest.fail(
            f"{POSTGRES_URL_VARIABLE}={value!r} is not a database URL: {exc}", pytrace=False
        )
    if url.get_backend_name() != "postgresql":
        pytest.fail(
            f"{POSTGRES_URL_VARIABLE} must be a postgresql:// URL, got {value!r}", pytrace=False
        )
    return url


def new_database_name() -> str:
    """A fresh database name: the prefix and 16 random hex digits."""
    return DATABASE_PREFIX + secrets.token_hex(8)


@contextmanager
def fresh_postgres_database(server: URL, name: str | None = None) -> Iterator[str]:
    """Create an empty database on ``server``, yield its URL, drop it (even if still in use).

    ``server`` is a URL of any existing database there, for a role with CREATEDB.
    """
    name = name or new_database_name()
    if not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"not a plain lower-case database name: {name!r}")
    # CREATE/DROP DATABASE cannot run in a transaction; NullPool: no connection outlives this.
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except OperationalError as exc:
            pytest.fail(
                f"cannot create a database on {server.render_as_string(hide_password=True)} "
                f"({POSTGRES_URL_VARIABLE}); is it running? ./scripts/postgres.sh starts it.\n"
                f"{exc}",
                pytrace=False,
            )
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            _drop(admin, name)
    finally:
        admin.dispose()


def _drop(admin: Engine, name: str) -> None:
    """Drop database ``name``; a backend we may not end (autovacuum, run by the server's
    superuser) can hold it for a moment, so retry a few times before giving up with a
    warning: a leftover test database must not fail the test that used it."""
    for attempt in range(20):
        try:
            with admin.connect() as connection:
                # FORCE: a test that left a connection open must not keep its database.
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except DBAPIError as exc:
            last = exc
            time.sleep(0.05 * (attempt + 1))
    warnings.warn(f"test database {name} could not be dropped: {last}", stacklevel=2)


def postgres_database_from_environment(
    environ: Mapping[str, str] = os.environ,
) -> Iterator[str]:
    """The ``postgresql_database_url`` fixture's body (skip, fail or a fresh database)."""
    with fresh_postgres_database(postgres_server_url(environ)) as url:
        yield url
