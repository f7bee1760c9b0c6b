"""Engines and migrations, on SQLite and PostgreSQL: fresh databases, idempotent upgrades,
models that match the migrations, per-database connection settings, durability."""

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, column, insert, inspect, select, table, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from voiceplane.config import Config
from voiceplane.store import repository
from voiceplane.store.db import (
    CONNECTION_ATTRIBUTE,
    alembic_config,
    create_engine_for,
    current_revision,
    head_revision,
    migrate,
    migration_sql,
    normalize_url,
    reader_sessions,
    session_factory,
)
from voiceplane.store.models import Account, Base, Call, Number, UTCDateTime

TABLES = {
    "accounts",
    "api_keys",
    "numbers",
    "calls",
    "legs",
    "webhook_secrets",
    "outbox",
    "outbox_attempts",
    "blocklist",
    "account_policies",
    "number_policies",
    "flows",
    "flow_versions",
    "alembic_version",
}


def test_migrate_creates_a_fresh_sqlite_file_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "voiceplane.db"
    url = f"sqlite:///{path}"
    migrate(url)
    assert path.is_file()
    engine = create_engine_for(url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrate_works_on_the_configured_default_url(tmp_path: Path) -> None:
    config = Config.model_validate({"data": {"dir": str(tmp_path / "voiceplane-data")}})
    migrate(config.effective_store_url)
    assert (tmp_path / "voiceplane-data" / "voiceplane.db").is_file()


def test_migration_is_idempotent_and_keeps_data(database_url: str) -> None:
    migrate(database_url)
    engine = create_engine_for(database_url)
    try:
        with session_factory(engine).begin() as session:
            account, _key = repository.create_account(session, name="Acme")
            sid = account.sid
        migrate(database_url)  # a second run is a no-op
        assert current_revision(engine) == head_revision()
        with session_factory(engine)() as session:
            assert repository.get_account(session, sid=sid) is not None
    finally:
        engine.dispose()


def test_migrate_upgrades_an_empty_database_to_head(database_url: str) -> None:
    engine = create_engine_for(database_url)
    try:
        assert inspect(engine).get_table_names() == []
        migrate(database_url)
        assert set(inspect(engine).get_table_names()) == TABLES
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def _upgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes[CONNECTION_ATTRIBUTE] = connection
        command.upgrade(config, revision)


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes[CONNECTION_ATTRIBUTE] = connection
        command.downgrade(config, revision)


def test_upgrading_from_0001_keeps_the_legs_and_orders_them(database_url: str) -> None:
    """0002 on a database with data: one row per leg number becomes seq = leg."""
    engine = create_engine_for(database_url)
    try:
        _upgrade(engine, "0001")
        at = datetime(2025, 1, 1, tzinfo=UTC)
        accounts = table(
            "accounts",
            column("id"),
            column("sid"),
            column("name"),
            column("status_dialect"),
            column("created_at", UTCDateTime()),
        )
        calls = table(
            "calls",
            column("id"),
            column("account_id"),
            column("service"),
            column("state"),
            column("duration"),
            column("billsec"),
            column("created_at", UTCDateTime()),
            column("updated_at", UTCDateTime()),
        )
        legs = table("legs", column("call_id"), column("leg"), column("number"))
        with engine.begin() as connection:
            connection.execute(
                insert(accounts).values(
                    id=1, sid="VP1", name="Acme", status_dialect="voiceplane", created_at=at
                )
            )
            connection.execute(
                insert(calls).values(
                    id="VC1",
                    account_id=1,
                    service="click2call",
                    state="completed",
                    duration=0,
                    billsec=0,
                    created_at=at,
                    updated_at=at,
                )
            )
            connection.execute(
                insert(legs),
                [
                    {"call_id": "VC1", "leg": 2, "number": "+2"},
                    {"call_id": "VC1", "leg": 1, "number": "+1"},
                ],
            )
        migrate(database_url)
        assert current_revision(engine) == head_revision()
        with session_factory(engine).begin() as session:
            call = session.get_one(Call, "VC1")
            assert [(leg.leg, leg.seq, leg.number) for leg in call.legs] == [
                (1, 1, "+1"),
                (2, 2, "+2"),
            ]
            assert (call.retry, call.retry_interval, call.attempts) == (0, 60, 0)
            # What 0002 is for: a second try of leg 1.
            repository.record_leg(session, call=call, leg=1, number="+1")
        with session_factory(engine)() as session:
            tries = [(leg.leg, leg.seq) for leg in session.get_one(Call, "VC1").legs]
            assert tries == [(1, 1), (2, 2), (1, 3)]
    finally:
        engine.dispose()


def test_migrations_downgrade_to_nothing_and_upgrade_again(database_url: str) -> None:
    engine = create_engine_for(database_url)
    try:
        migrate(database_url)
        _downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        assert current_revision(engine) is None
        migrate(database_url)
        assert set(inspect(engine).get_table_names()) == TABLES
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_a_never_migrated_database_has_no_revision(database_url: str) -> None:
    engine = create_engine_for(database_url)
    try:
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_models_and_migrations_describe_the_same_schema(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_sqlite_connections_are_configured(sqlite_database_url: str) -> None:
    engine = create_engine_for(sqlite_database_url)
    try:
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 10_000
            assert pragma("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        engine.dispose()


def test_postgresql_connections_survive_a_server_side_disconnect(
    postgresql_database_url: str,
) -> None:
    """pool_pre_ping: a pooled connection the server dropped is replaced, not handed out."""
    engine = create_engine_for(postgresql_database_url)
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as connection:
            first_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        # The connection is back in the pool; the server ends it, as a restart would.
        killer = create_engine_for(postgresql_database_url, poolclass=NullPool)
        try:
            with killer.connect() as connection:
                ended = connection.execute(
                    # The timeout makes it wait until that backend is gone.
                    text("SELECT pg_terminate_backend(:pid, 5000)"),
                    {"pid": first_pid},
                ).scalar_one()
                assert ended is True
        finally:
            killer.dispose()
        with engine.connect() as connection:
            second_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
        assert second_pid != first_pid
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced(factory: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), factory.begin() as session:
        session.add(Number(account_id=12345, e164="+15550100", kind="did", channels=1))
        session.flush()


def test_check_constraints_refuse_unknown_vocabulary(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        account, _key = repository.create_account(session, name="Acme")
    with pytest.raises(IntegrityError), factory.begin() as session:
        session.add(Call(id="VCx", account_id=account.id, service="fax", state="queued"))
        session.flush()


def test_timestamps_are_utc_aware_and_naive_ones_are_refused(
    factory: sessionmaker[Session],
) -> None:
    with factory.begin() as session:
        account, _key = repository.create_account(session, name="Acme")
        account_id = account.id
    with factory() as session:
        created = session.scalars(select(Account.created_at)).one()
        assert created.tzinfo is UTC
    with pytest.raises(StatementError, match="naive datetime"), factory.begin() as session:
        stored = session.get_one(Account, account_id)
        stored.created_at = datetime(2025, 1, 1, 12, 0)
        session.flush()


def test_concurrent_read_then_write_transactions_do_not_fail(
    factory: sessionmaker[Session],
) -> None:
    """BEGIN IMMEDIATE: writers queue on the lock instead of failing with "database is locked"."""
    with factory.begin() as session:
        account, _key = repository.create_account(session, name="Acme")
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for step in range(10):
                with factory.begin() as session:
                    repository.count_calls(session, account=account)  # read first
                    repository.create_call(
                        session, account=account, service="outbound", to_number=f"{index}-{step}"
                    )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with factory() as session:
        assert repository.count_calls(session, account=account) == 40


def test_a_committed_call_survives_a_killed_process(database_url: str) -> None:
    """The writer commits and dies with SIGKILL (no clean shutdown); the call is there."""
    migrate(database_url)
    script = f"""
import os, signal
from voiceplane.store import repository
from voiceplane.store.db import create_engine_for, session_factory
engine = create_engine_for({database_url!r})
with session_factory(engine).begin() as session:
    account, _ = repository.create_account(session, name="Acme")
    call = repository.create_call(session, account=account, service="outbound", to_number="+1")
print(call.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -9, done.stderr
    call_id = done.stdout.strip()
    engine = create_engine_for(database_url)
    try:
        with session_factory(engine)() as session:
            call = repository.find_call(session, call_id=call_id)
            assert call is not None
            assert call.to_number == "+1"
    finally:
        engine.dispose()


def test_postgresql_urls_use_psycopg_3() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_the_migration_renders_for_postgresql_without_a_server() -> None:
    sql = migration_sql("postgresql://user:p%40ss@db.invalid/voiceplane")
    for name in ("accounts", "api_keys", "numbers", "calls", "legs"):
        assert f"CREATE TABLE {name} (" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql
    assert "BIGSERIAL" in sql  # legs.id is 64-bit there
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001')" in sql
    assert f"UPDATE alembic_version SET version_num='{head_revision()}'" in sql


def test_reader_sessions_do_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    """A writer holds SQLite's write lock; a reader still reads (deferred BEGIN, WAL)."""
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    migrate(url)
    engine = create_engine_for(url)
    try:
        writers = session_factory(engine)
        readers = reader_sessions(writers)
        with writers.begin() as writing:
            repository.create_account(writing, name="held")  # the write lock is taken and held
            started = time.monotonic()
            with readers.begin() as reading:
                assert reading.scalar(text("SELECT count(*) FROM accounts")) == 0
            assert time.monotonic() - started < 1  # did not wait for the busy timeout
    finally:
        engine.dispose()
