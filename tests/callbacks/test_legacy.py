"""Legacy callback URLs: placeholders filled from the call record, every value URL-encoded."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceplane.callbacks import legacy
from voiceplane.calls.status import Dialect, Status

RECORD: dict[str, object] = {
    "id": "VC123",
    "service": "click2call",
    "state": "completed",
    "status": Status.NOANSWER_LEG2.value,
    "from": "+919900000001",
    "to": "+919900000002",
    "bridge": "+918067000001",
    "custom": "order 42 & more",
    "reason": None,
    "created_at": "2026-11-28T09:59:58.000Z",
    "start_time": "2026-11-28T10:00:00.250Z",
    "answer_time": "2026-11-28T10:00:05.000Z",
    "end_time": "2026-11-28T10:00:35.000Z",
    "duration": 35,
    "billsec": 30,
    "legs": [
        {"leg": 1, "number": "+919900000001", "status": Status.BUSY.value},
        {"leg": 1, "number": "+919900000001", "status": Status.ANSWER.value},
        {"leg": 2, "number": "+919900000002", "status": Status.NOANSWER.value},
    ],
}


def test_values_map_the_call_record() -> None:
    values = legacy.values(RECORD)
    assert set(values) == legacy.PLACEHOLDERS
    assert values["id"] == "VC123"
    assert (values["caller"], values["receiver"], values["callto"], values["callerid"]) == (
        "+919900000001",
        "+919900000002",
        "+919900000002",
        "+918067000001",
    )
    assert values["status"] == values["obdstatus"] == Status.NOANSWER_LEG2.value
    assert values["status1"] == Status.ANSWER.value  # the latest try of leg 1
    assert values["status2"] == Status.NOANSWER.value
    assert (values["duration"], values["billsec"]) == ("35", "30")
    assert values["starttime"] == "1795860000"  # 2026-11-28T10:00:00Z, whole seconds
    assert values["endtime"] == "1795860035"
    assert values["answertime"] == "1795860005"
    assert values["calltime"] == "28/11/2026 10:00 AM"
    assert values["recordpath"] == values["keypress"] == values["reason"] == ""
    assert values["custom"] == "order 42 & more"


def test_values_of_an_unfinished_outbound_call_and_another_dialect() -> None:
    record = {"id": "VC9", "service": "outbound", "to": "+1", "bridge": "+2", "legs": []}
    values = legacy.values(record)
    assert values["caller"] == "+2"  # an outbound call is placed from its bridge
    assert values["status"] == values["status1"] == values["starttime"] == ""
    spelled = legacy.values(RECORD, Dialect.KALEYRA_IO)
    assert spelled["status"] == "NOANSWER_CHANNEL2"


def test_render_fills_and_encodes_placeholders_in_query_and_path() -> None:
    template = "https://crm.example/cb/{id}?from={caller}&st={Status1}&c=%7Bcustom%7D&x={custom}"
    url = legacy.render(template, legacy.values(RECORD))
    assert url == (
        "https://crm.example/cb/VC123?from=%2B919900000001&st=ANSWER"
        "&c=order%2042%20%26%20more&x=order%2042%20%26%20more"
    )
    query = parse_qs(urlsplit(url).query)
    assert query["from"] == ["+919900000001"] and query["c"] == ["order 42 & more"]


def test_unknown_placeholders_are_refused_up_front_and_left_alone_later() -> None:
    with pytest.raises(ValueError, match="unknown callback placeholder.*nope"):
        legacy.check_template("https://crm.example/cb?a={nope}&b={caller}")
    with pytest.raises(ValueError, match="http or https"):
        legacy.check_template("ftp://crm.example/{caller}")
    legacy.check_template("https://crm.example/cb?a={CALLER}")  # names are case-insensitive
    url = legacy.render("https://crm.example/cb?a={nope}&b={id}", legacy.values(RECORD))
    assert url == "https://crm.example/cb?a=%7Bnope%7D&b=VC123"


def test_a_url_without_placeholders_is_not_legacy() -> None:
    assert not legacy.has_placeholders("https://crm.example/cb?a=1")
    assert legacy.has_placeholders("https://crm.example/cb?a=%7bid%7d")
    assert legacy.placeholders("https://x/{A}/{b}?c=%7Bc_1%7D") == ["a", "b", "c_1"]


@given(
    st.dictionaries(
        st.sampled_from(sorted(legacy.PLACEHOLDERS)),
        st.text(),  # any Unicode: &, =, #, %, /, ?, spaces, newlines, surrogates excluded
        min_size=1,
    )
)
def test_any_values_keep_the_url_valid_and_decode_back_exactly(values: dict[str, str]) -> None:
    names = sorted(values)
    query = "&".join(f"{name}={{{name}}}" for name in names)
    template = "https://crm.example/cb/{" + names[0] + "}/end?" + query
    url = legacy.render(template, values)
    assert url.isascii() and not any(char in url for char in " {}<>\"\\^`|")
    parsed = httpx.URL(url)  # a client accepts it as it is
    assert (parsed.scheme, parsed.host) == ("https", "crm.example")
    decoded = parse_qs(urlsplit(url).query, keep_blank_values=True, strict_parsing=False)
    for name in names:
        assert decoded[name] == [values[name]]
    segment = urlsplit(url).path.split("/")[2]
    assert unquote(segment, errors="strict") == values[names[0]]
