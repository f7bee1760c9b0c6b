"""Pre-dial settings and blocklists in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.policy import blocklist, settings
from voiceplane.policy.checks import AccountSettings
from voiceplane.policy.permissions import ACCOUNT_DEFAULT, NUMBER_DEFAULT, RuleError
from voiceplane.store import repository
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.models import Account, Number

BRIDGE = "+918047100000"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = create_engine_for(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def setup(factory: sessionmaker[Session]) -> tuple[Account, Account, Number]:
    with factory.begin() as session:
        acme, _ = repository.create_account(session, name="acme")
        other, _ = repository.create_account(session, name="other")
        number = repository.add_number(session, account=acme, e164=BRIDGE, kind="bridge")
        session.expunge_all()
    return acme, other, number


def test_an_account_without_settings_has_the_defaults(factory: sessionmaker[Session]) -> None:
    acme, _other, number = setup(factory)
    with factory() as session:
        assert settings.account_settings(session, account_id=acme.id) == AccountSettings()
        assert settings.number_rules(session, number_id=number.id) == NUMBER_DEFAULT
        policy = settings.call_policy(session, account_id=acme.id, bridge=BRIDGE)
    assert policy.account.rules == ACCOUNT_DEFAULT
    assert policy.bridge_rules == NUMBER_DEFAULT


def test_settings_round_trip_and_change_partially(factory: sessionmaker[Session]) -> None:
    acme, other, number = setup(factory)
    with factory.begin() as session:
        current = settings.account_settings(session, account_id=acme.id)
        changed = settings.changed_account(
            current, {"countries": ["IN"], "block_outgoing": "true", "dnd_category": 3}
        )
        settings.save_account(session, account_id=acme.id, settings=changed)
    with factory.begin() as session:
        stored = settings.account_settings(session, account_id=acme.id)
        assert stored == changed
        assert stored.rules.countries == frozenset({"IN"}) and stored.block_outgoing
        assert stored.dnd_category == 3
        # Premium rate stays off: the defaults were kept for what the change did not name.
        assert stored.rules.number_types == ACCOUNT_DEFAULT.number_types
        again = settings.changed_account(stored, {"countries": None, "international": False})
        settings.save_account(session, account_id=acme.id, settings=again)
    with factory() as session:
        final = settings.account_settings(session, account_id=acme.id)
        assert final.rules.countries is None and final.rules.international is False
        assert final.block_outgoing  # untouched by the second change
        assert settings.account_settings(session, account_id=other.id) == AccountSettings()

    with factory.begin() as session:
        rules = settings.changed_rules(NUMBER_DEFAULT, {"blocked_networks": "Airtel"})
        settings.save_number(session, number_id=number.id, rules=rules)
    with factory() as session:
        policy = settings.call_policy(session, account_id=acme.id, bridge=BRIDGE)
        assert policy.bridge_rules.blocked_networks == {"airtel"}
        # Another account's call through the same number does not get its rules.
        foreign = settings.call_policy(session, account_id=other.id, bridge=BRIDGE)
        assert foreign.bridge_rules == NUMBER_DEFAULT


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"international": "maybe"}, "international"),
        ({"countries": 7}, "countries"),
        ({"countries": ["ZZZ"]}, "countries"),
        ({"countries": " "}, "countries"),
        ({"promotional": 2}, "promotional"),
        ({"dnd_category": "x"}, "dnd_category"),
        ({"dnd_category": 9}, "dnd_category"),
        ({"dnd_category": True}, "dnd_category"),
    ],
)
def test_bad_changes_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(RuleError) as caught:
        settings.changed_account(AccountSettings(), changes)
    assert caught.value.field == field


def test_list_keywords() -> None:
    rules = settings.changed_rules(NUMBER_DEFAULT, {"countries": "none", "networks": "ANY"})
    assert rules.countries == frozenset() and rules.networks is None
    rules = settings.changed_rules(rules, {"blocked_networks": "Jio", "countries": "any"})
    assert rules.countries is None
    assert settings.changed_rules(rules, {"blocked_networks": "any"}).blocked_networks == set()


def test_number_settings_refuse_account_only_fields() -> None:
    with pytest.raises(RuleError) as caught:
        settings.changed_rules(NUMBER_DEFAULT, {"promotional": True})
    assert caught.value.field == "promotional"


def test_blocklist_add_remove_list_and_isolation(factory: sessionmaker[Session]) -> None:
    acme, other, _number = setup(factory)
    numbers = [f"+9198765{index:05d}" for index in range(5)]
    with factory.begin() as session:
        assert blocklist.change(session, acme.id, add=numbers) == (5, 0)
        assert blocklist.change(session, acme.id, add=numbers[:2]) == (0, 0)  # already there
    with factory.begin() as session:
        assert blocklist.is_blocked(session, acme.id, numbers[0])
        assert not blocklist.is_blocked(session, other.id, numbers[0])
        assert blocklist.blocklisted_among(session, acme.id, [numbers[1], BRIDGE]) == {
            numbers[1]
        }
        assert blocklist.change(session, acme.id, remove=[numbers[0], BRIDGE]) == (0, 1)
    with factory() as session:
        total, page = blocklist.entries(session, acme.id, limit=2, offset=1)
        assert total == 4
        assert [entry.number for entry in page] == numbers[2:4]
        assert page[0].created_at.tzinfo is not None
        assert blocklist.entries(session, other.id, limit=10) == (0, [])


def test_a_change_is_limited_to_a_hundred_numbers(factory: sessionmaker[Session]) -> None:
    acme, _other, _number = setup(factory)
    many = [f"+9198765{index:05d}" for index in range(101)]
    with factory.begin() as session, pytest.raises(ValueError):
        blocklist.change(session, acme.id, add=many[:60], remove=many[60:])
