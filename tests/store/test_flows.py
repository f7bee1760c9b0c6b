"""Flow versions and number routing in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.store import flows, repository
from voiceplane.store.models import Flow, FlowVersion, Number


def test_saves_at_the_same_time_get_distinct_versions(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        account, _key = repository.create_account(session, name="Acme")
        flow, _ = flows.create_flow(session, account=account, name="f", document="{}")
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def save(index: int) -> None:
        try:
            barrier.wait()
            with factory.begin() as session:
                flows.add_version(session, flow=flow, name=f"f{index}", document="{}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with factory.begin() as session:
        versions = session.scalars(
            select(FlowVersion.version).where(FlowVersion.flow_id == flow.id)
        ).all()
        assert sorted(versions) == [1, 2, 3, 4, 5]
        stored = session.get(Flow, flow.id)
        assert stored is not None and stored.latest_version == 5


def test_routing_of_an_unknown_number_is_none_and_a_bare_number_has_no_flow(
    factory: sessionmaker[Session],
) -> None:
    with factory.begin() as session:
        assert flows.route_for(session, e164="+918067000000") is None
        account, _key = repository.create_account(session, name="Acme")
        repository.add_number(session, account=account, e164="+918067000001", kind="did")
        route = flows.route_for(session, e164="+918067000001")
        assert route is not None
        assert (route.refusal, route.flow_id, route.document, route.hours) == (
            "no flow", None, None, None
        )  # fmt: skip


def test_a_number_can_only_route_to_a_flow_that_exists(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        account, _key = repository.create_account(session, name="Acme")
        number = repository.add_number(session, account=account, e164="+918067000001", kind="did")
        flow, _ = flows.create_flow(session, account=account, name="f", document="{}")
        flows.set_routing(session, number=number, flow=flow, hours=None, missed_call=3)
    with factory.begin() as session:
        stored = session.scalars(select(Number)).one()
        assert (stored.flow_id, stored.missed_call) == (flow.id, 3)
    with pytest.raises(IntegrityError), factory.begin() as session:
        stored = session.scalars(select(Number)).one()
        stored.flow_id = "VFnothing"
        session.flush()
