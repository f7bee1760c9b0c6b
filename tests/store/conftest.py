"""Fixtures for the store tests: a freshly migrated database per test, SQLite and PostgreSQL.

``database_url`` (tests/conftest.py) is parametrized over both kinds, so every test that
uses ``engine`` or ``factory`` runs on each.
"""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.store.db import create_engine_for, migrate, session_factory


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = create_engine_for(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def db_url(database_url: str) -> str:
    """The former name of ``database_url`` here, kept for tests written against it."""
    return database_url
