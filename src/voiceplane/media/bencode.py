"""Bencode (BEP 3), the encoding of rtpengine's ng control protocol. Sans-IO.

Values are integers, byte strings, lists and dictionaries. ``encode`` also takes ``str``
(written as UTF-8) and ``bool`` is refused, since bencode has no booleans and ``True`` as
``i1e`` would hide a bug. ``decode`` returns byte strings as ``bytes`` and dictionary keys
as ``str``: every key of the ng protocol is text, and a key that is not UTF-8 is an error.

BEP 3 wants dictionary keys sorted; rtpengine does not sort its replies, so ``decode``
accepts any order (but no key twice) while ``encode`` always sorts, for a deterministic
encoding. Integers must be canonical (no ``i-0e``, no leading zeros): the spec says so, and
anything laxer would give two encodings of one value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from .errors import MediaError

__all__ = ["BencodeError", "Value", "decode", "encode"]

# What decode returns. encode takes the same with str allowed for strings and keys.
Value: TypeAlias = int | bytes | list["Value"] | dict[str, "Value"]
Encodable: TypeAlias = int | bytes | str | Sequence["Encodable"] | Mapping[str, "Encodable"]

# Deeper than any ng message; a bound keeps hostile input from exhausting the stack.
MAX_DEPTH = 64


class BencodeError(MediaError):
    """Bytes that are not one well-formed bencoded value, or a value bencode cannot hold."""


def encode(value: Encodable) -> bytes:
    """The bencoding of ``value``; ``BencodeError`` for a type bencode has no form for."""
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def _encode(value: Encodable, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError(f"value nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, bool):  # before int: bool is an int subclass
        raise BencodeError("bencode has no booleans; send an int or a string")
    if isinstance(value, int):
        try:
            out.append(b"i%de" % value)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise BencodeError("integer too large to encode") from None
    elif isinstance(value, bytes | str):
        raw = value.encode() if isinstance(value, str) else value
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out, depth + 1)
        out.append(b"e")
    elif isinstance(value, Mapping):
        keys: dict[bytes, Encodable] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise BencodeError(f"dictionary keys must be str, got {type(key).__name__}")
            keys[key.encode()] = item
        out.append(b"d")
        for raw in sorted(keys):
            out.append(b"%d:" % len(raw))
            out.append(raw)
            _encode(keys[raw], out, depth + 1)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot bencode a {type(value).__name__}")


def decode(data: bytes) -> Value:
    """The one value ``data`` holds; ``BencodeError`` if malformed or followed by more."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError(f"{len(data) - end} stray bytes after the value at offset {end}")
    return value


def _decode(data: bytes, pos: int, depth: int) -> tuple[Value, int]:
    if depth > MAX_DEPTH:
        raise BencodeError(f"nested deeper than {MAX_DEPTH} levels at offset {pos}")
    if pos >= len(data):
        raise BencodeError(f"input ends at offset {pos} where a value should start")
    lead = data[pos : pos + 1]
    if lead == b"i":
        end = _find(data, b"e", pos + 1, "integer")
        return _integer(data[pos + 1 : end], pos), end + 1
    if lead.isdigit():
        return _string(data, pos)
    if lead == b"l":
        items: list[Value] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos + 1
    if lead == b"d":
        start = pos
        result: dict[str, Value] = {}
        pos += 1
        while data[pos : pos + 1] != b"e":
            if pos >= len(data):
                raise BencodeError(f"dictionary at offset {start} is not terminated")
            if not data[pos : pos + 1].isdigit():
                raise BencodeError(f"dictionary key at offset {pos} is not a string")
            raw, pos = _string(data, pos)
            try:
                key = raw.decode()
            except UnicodeDecodeError:
                raise BencodeError(f"dictionary key {raw!r} is not UTF-8") from None
            if key in result:
                raise BencodeError(f"dictionary key {key!r} appears twice")
            result[key], pos = _decode(data, pos, depth + 1)
        return result, pos + 1
    raise BencodeError(f"unexpected byte {lead!r} at offset {pos}")


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    colon = _find(data, b":", pos, "string length")
    digits = data[pos:colon]
    if not digits.isdigit() or (len(digits) > 1 and digits.startswith(b"0")):
        raise BencodeError(f"bad string length {digits!r} at offset {pos}")
    length = int(digits)
    end = colon + 1 + length
    if end > len(data):
        raise BencodeError(f"string at offset {pos} wants {length} bytes; the input ends first")
    return data[colon + 1 : end], end


def _integer(digits: bytes, pos: int) -> int:
    body = digits[1:] if digits.startswith(b"-") else digits
    canonical = body.isdigit() and not (len(body) > 1 and body.startswith(b"0"))
    if not canonical or digits == b"-0":
        raise BencodeError(f"bad integer {digits!r} at offset {pos}")
    try:
        return int(digits)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise BencodeError(f"integer at offset {pos} is too long") from None


def _find(data: bytes, byte: bytes, start: int, what: str) -> int:
    index = data.find(byte, start)
    if index < 0:
        raise BencodeError(f"{what} at offset {start} is not terminated by {byte!r}")
    return index
