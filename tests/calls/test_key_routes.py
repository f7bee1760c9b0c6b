"""KeyRoutes: SIP INFO keys go to the media session of the flow on their dialog."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from voiceplane.calls.key_routes import KeyRoutes
from voiceplane.media.backend import MediaSession


class Keys:
    """The one part of a media session KeyRoutes uses: its DTMF queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    def dtmf(self) -> asyncio.Queue[str]:
        return self.queue


def session() -> tuple[Keys, MediaSession]:
    keys = Keys()
    return keys, cast(MediaSession, keys)


def drained(keys: Keys) -> list[str]:
    return [keys.queue.get_nowait() for _ in range(keys.queue.qsize())]


def test_keys_reach_the_session_of_their_dialog_only_while_routed() -> None:
    routes = KeyRoutes()
    first, first_session = session()
    second, second_session = session()
    assert not routes.press("a@host", "1")  # no flow there yet
    with routes.route("a@host", first_session), routes.route("b@host", second_session):
        assert routes.press("a@host", "5") and routes.press("b@host", "#")
        assert routes.press("a@host", "9")
        assert len(routes) == 2
    assert not routes.press("a@host", "1")  # the flow has ended
    assert len(routes) == 0
    assert drained(first) == ["5", "9"] and drained(second) == ["#"]


def test_the_route_ends_when_the_flow_fails() -> None:
    routes = KeyRoutes()
    _, flow_session = session()
    with pytest.raises(RuntimeError), routes.route("a@host", flow_session):
        raise RuntimeError("the flow broke")
    assert not routes.press("a@host", "1")


def test_an_older_route_ending_late_leaves_the_newer_one() -> None:
    """Two flows in turn on one Call-ID (a retry): the first's end must not unroute the second."""
    routes = KeyRoutes()
    old, old_session = session()
    new, new_session = session()
    first = routes.route("a@host", old_session)
    first.__enter__()
    with routes.route("a@host", new_session):
        first.__exit__(None, None, None)
        assert routes.press("a@host", "7")
    assert drained(new) == ["7"] and drained(old) == []
