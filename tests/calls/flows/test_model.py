"""The flow format: a documented example parses; every kind of mistake is named precisely."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from voiceplane.calls.flows.model import (
    DialStep,
    FlowError,
    MenuStep,
    NumberRouting,
    parse_flow,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "flows.md"


def support_line() -> dict[str, Any]:
    return {
        "name": "Support line",
        "steps": {
            "welcome": {"kind": "say", "text": "Welcome to Acme.", "next": "menu"},
            "menu": {
                "kind": "menu",
                "prompt": {"play": "menu.wav"},
                "branches": {"1": "sales", "2": "voicemail"},
                "invalid": "bye",
            },
            "sales": {
                "kind": "dial",
                "numbers": ["+91 98765 43210", "+919876543211"],
                "mode": "parallel",
                "not_answered": "voicemail",
            },
            "voicemail": {"kind": "record", "prompt": {"say": "Leave a message."}, "next": "bye"},
            "bye": {"kind": "hangup"},
        },
    }


def error_of(document: dict[str, Any]) -> FlowError:
    with pytest.raises(FlowError) as caught:
        parse_flow(document)
    return caught.value


def test_a_flow_parses_with_defaults_and_normalised_numbers() -> None:
    flow = parse_flow(support_line())
    assert flow.start_step == "welcome"  # the first step written
    menu = flow.step("menu")
    assert isinstance(menu, MenuStep)
    assert (menu.max_digits, menu.timeout, menu.retries, menu.finish_key) == (1, 5.0, 2, "#")
    dial = flow.step("sales")
    assert isinstance(dial, DialStep)
    assert dial.numbers == ["+919876543210", "+919876543211"]
    assert (dial.mode, dial.ring_timeout, dial.answered) == ("parallel", 30, None)
    assert flow.warnings() == []
    assert list(flow.media_files()) == [("steps.menu.prompt.play", "menu.wav")]


def test_the_example_in_the_docs_is_a_valid_flow() -> None:
    text = DOCS.read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    flows = [json.loads(block) for block in blocks if '"steps"' in block]
    assert flows, "docs/flows.md has no example flow"
    for document in flows:
        parse_flow(document)


def test_a_transition_to_a_missing_step_names_the_step_and_the_field() -> None:
    document = support_line()
    document["steps"]["menu"]["branches"]["2"] = "voicemial"
    error = error_of(document)
    assert error.field == "steps.menu.branches.2"
    assert error.message == (
        "step 'menu': branches.2 points at 'voicemial', which is not a step of this flow"
    )


def test_an_unknown_start_step_is_refused() -> None:
    document = {**support_line(), "start": "hello"}
    error = error_of(document)
    assert error.field == "start" and "'hello'" in error.message


def test_an_unreachable_step_is_a_warning_not_an_error() -> None:
    document = support_line()
    document["steps"]["orphan"] = {"kind": "say", "text": "nobody hears this"}
    flow = parse_flow(document)
    assert flow.warnings() == ["step 'orphan' cannot be reached from the start step 'welcome'"]


def test_loops_are_allowed() -> None:
    document = support_line()
    document["steps"]["bye"] = {"kind": "say", "text": "Again.", "next": "menu"}
    assert parse_flow(document).reachable() == set(document["steps"])


@pytest.mark.parametrize(
    ("step", "field", "complaint"),
    [
        ({"kind": "jump"}, "steps.s.kind", "kind must be one of: answer, play, say"),
        ({"kind": "say"}, "steps.s.text", "step 's': text: this field is required"),
        ({"kind": "say", "text": "hi", "nxt": "s"}, "steps.s.nxt", "unknown field"),
        ({"kind": "play", "file": "/etc/passwd.wav"}, "steps.s.file", "relative to the media"),
        ({"kind": "play", "file": "../up.wav"}, "steps.s.file", "without '..'"),
        ({"kind": "play", "file": "song.mp3"}, "steps.s.file", "not a .wav file"),
        ({"kind": "gather", "finish_key": "A"}, "steps.s.finish_key", "not a key"),
        ({"kind": "gather", "min_digits": 5, "max_digits": 4}, "steps.s", "min_digits 5"),
        ({"kind": "gather", "timeout": 0}, "steps.s.timeout", "greater than 0"),
        ({"kind": "menu", "branches": {"1": "s"}}, "steps.s.invalid", "required"),
        ({"kind": "menu", "branches": {"12": "s"}, "invalid": None}, "steps.s", "max_digits 1"),
        ({"kind": "menu", "branches": {"x": "s"}, "invalid": None}, "steps.s.branches", "0-9"),
        ({"kind": "menu", "branches": {}, "invalid": None}, "steps.s.branches", "at least 1"),
        ({"kind": "dial", "numbers": ["98765 43210"]}, "steps.s.numbers.0", "E.164"),
        ({"kind": "dial", "numbers": ["+9112"]}, "steps.s.numbers.0", "not a valid number"),
        ({"kind": "dial", "numbers": []}, "steps.s.numbers", "at least 1"),
        ({"kind": "dial", "numbers": ["+919876543210"], "mode": "ring"}, "steps.s.mode", ""),
        ({"kind": "webhook", "url": "ftp://x"}, "steps.s.url", "not an http"),
        ({"kind": "hours", "hours": {"timezone": "Nowhere"}}, "steps.s.hours.timezone", "zone"),
        ({"kind": "say", "text": "hi", "next": "bad name"}, "steps.s.next", "not a step name"),
        ({"kind": "record", "prompt": {"say": "x", "play": "a.wav"}}, "steps.s.prompt", "either"),
    ],
)  # fmt: skip
def test_bad_steps_are_refused_naming_the_step_and_field(
    step: dict[str, Any], field: str, complaint: str
) -> None:
    error = error_of({"name": "f", "steps": {"s": step}})
    assert error.field == field
    assert error.message.startswith("step 's'")
    assert complaint in error.message


def test_a_flow_needs_a_name_and_steps() -> None:
    assert error_of({"steps": {"s": {"kind": "hangup"}}}).field == "name"
    error = error_of({"name": "f", "steps": {}})
    assert error.field == "steps" and "at least 1" in error.message


def test_a_step_name_must_be_usable_in_a_path() -> None:
    error = error_of({"name": "f", "steps": {"a b": {"kind": "hangup"}}})
    assert error.field is not None and error.field.startswith("steps.a b")
    assert "not a step name" in error.message


def test_number_routing_reads_hours_with_an_off_hour_prompt() -> None:
    routing = NumberRouting.model_validate(
        {
            "flow": "VF1",
            "hours": {
                "timezone": "Asia/Kolkata",
                "slots": [{"days": "mon-fri", "open": "09:00", "close": "18:00"}],
                "country": "IN",
                "off_hour_prompt": {"say": "We are closed."},
            },
            "missed_call": 5,
        }
    )
    assert routing.hours is not None and routing.hours.off_hour_prompt is not None
    assert routing.hours.off_hour_prompt.say == "We are closed."
    assert routing.missed_call == 5


def test_parse_flow_does_not_change_its_input() -> None:
    document = support_line()
    before = copy.deepcopy(document)
    parse_flow(document)
    assert document == before
