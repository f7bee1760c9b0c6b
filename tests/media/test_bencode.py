"""The bencode codec: round trips, canonical forms, and clear errors on malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceplane.media.bencode import MAX_DEPTH, BencodeError, Value, decode, encode
from voiceplane.media.errors import MediaError

values: st.SearchStrategy[Value] = st.recursive(
    st.integers() | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


@given(values)
def test_round_trip(value: Value) -> None:
    assert decode(encode(value)) == value


@given(values)
def test_encoding_is_deterministic_and_canonical(value: Value) -> None:
    data = encode(value)
    assert encode(decode(data)) == data


@given(values, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_refused(value: Value, junk: bytes) -> None:
    with pytest.raises(BencodeError, match="stray bytes"):
        decode(encode(value) + junk)


@given(values)
def test_every_truncation_is_refused(value: Value) -> None:
    data = encode(value)
    for end in range(len(data)):
        with pytest.raises(BencodeError):
            decode(data[:end])


@given(st.binary(max_size=60))
def test_arbitrary_bytes_decode_or_raise_bencode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except BencodeError:
        return
    assert decode(encode(value)) == value


def test_known_encodings() -> None:
    assert encode({"command": "ping"}) == b"d7:command4:pinge"
    assert encode({"b": 1, "a": [b"x", -3]}) == b"d1:al1:xi-3ee1:bi1ee"  # keys sorted
    assert encode("é") == b"2:\xc3\xa9"
    assert encode(("a", 0)) == b"l1:ai0ee"
    assert decode(b"d6:result4:ponge") == {"result": b"pong"}


def test_unsorted_keys_are_accepted() -> None:
    # rtpengine does not sort the keys of its replies.
    assert decode(b"d6:result2:ok3:sdp1:xe") == {"result": b"ok", "sdp": b"x"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "input ends"),
        (b"i12", "not terminated"),
        (b"i-0e", "bad integer"),
        (b"i03e", "bad integer"),
        (b"ie", "bad integer"),
        (b"i1.5e", "bad integer"),
        (b"5:abc", "input ends first"),
        (b"03:abc", "bad string length"),
        (b"3abc", "not terminated"),
        (b"l1:a", "input ends"),
        (b"d1:a", "input ends"),
        (b"d1:ai1e", "not terminated"),
        (b"di1ei2ee", "key at offset 1 is not a string"),
        (b"d1:ai1e1:ai2ee", "appears twice"),
        (b"d1:\xffi1ee", "not UTF-8"),
        (b"x", "unexpected byte"),
        (b"i" + b"9" * 5000 + b"e", "too long"),
    ],
)
def test_malformed_input_raises_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(BencodeError, match=message):
        decode(data)


def test_errors_are_media_errors() -> None:
    assert issubclass(BencodeError, MediaError)


def test_nesting_is_bounded() -> None:
    deep = b"l" * (MAX_DEPTH + 2) + b"e" * (MAX_DEPTH + 2)
    with pytest.raises(BencodeError, match="nested deeper"):
        decode(deep)
    value: Value = []
    for _ in range(MAX_DEPTH + 2):
        value = [value]
    with pytest.raises(BencodeError, match="nested deeper"):
        encode(value)


@pytest.mark.parametrize("value", [True, 1.5, None, {1: 2}, {b"k": 1}])
def test_unencodable_values_are_refused(value: object) -> None:
    with pytest.raises(BencodeError):
        encode(value)  # type: ignore[arg-type]
