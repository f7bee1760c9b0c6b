"""Test-wide settings and fixtures.

Async tests run on uvloop, the loop ``voiceplane serve`` uses. ``database_url`` (and
``sqlite_database_url``, ``postgresql_database_url``) give a test a fresh database on SQLite
and on PostgreSQL: see ``tests/support/databases.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import uvloop
from hypothesis import HealthCheck, settings

from tests.support.databases import postgres_database_from_environment, sqlite_url

# Property tests: thorough locally, bounded in CI so the suite stays well under its budget.
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"uvloop": uvloop.new_event_loop}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgresql: the test runs on the PostgreSQL of VOICEPLANE_TEST_POSTGRES_URL"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that ask for PostgreSQL alone get the marker the database_url case has.
    for item in items:
        if "postgresql_database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgresql)


@pytest.fixture
def sqlite_database_url(tmp_path: Path) -> str:
    """A SQLite file of this test's own (not created yet)."""
    return sqlite_url(tmp_path / "sqlite")


@pytest.fixture
def postgresql_database_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database of this test's own, dropped after it."""
    yield from postgres_database_from_environment(os.environ)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of this test's own, once on each kind the store supports."""
    url: str = request.getfixturevalue(f"{request.param}_database_url")
    return url
