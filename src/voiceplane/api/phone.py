"""Telephone numbers as users write them, turned into E.164 with the phonenumbers library.

The rules (the same for the kaleyra.io-style and the legacy API):

- A number is digits with an optional leading ``+``; blanks inside are ignored. Nothing else
  is read (no letters, dashes, brackets or extensions), so ``1-800-FLOWERS`` and
  ``+91 98765 43210 ext 2`` are refused rather than guessed at.
- ``+`` and a country code: the number is international as written. A leading space
  followed by digits counts as a ``+``: that is what an unencoded ``+`` in a form body
  (``curl -d to=+91...``) turns into.
- No ``+``: the ``prefix`` (a country calling code, ``91`` or ``+91``) says which country the
  number is in. A national number (``9876543210``, ``09876543210``) and one that already
  starts with that country code (``919876543210``) both work: libphonenumber tells them
  apart.
- No ``+`` and no prefix: refused, naming the field. Guessing a country would dial a wrong
  number somewhere in the world.
- The result must be a valid number for its country (libphonenumber's metadata), not only a
  plausible string of digits.

Lists ring in parallel: leg 2 of click-to-call is written ``a^b``, leg 1 ``a-b`` (legacy).
The store keeps a list as E.164 numbers joined with ``,``, which the engine splits again.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

import phonenumbers

MAX_PARALLEL: Final = 10
STORED_SEPARATOR: Final = ","
LEG1_SEPARATOR: Final = "-"
LEG2_SEPARATOR: Final = "^"

_PREFIX = re.compile(r"\+?([1-9][0-9]{0,2})")
_NUMBER = re.compile(r"\+?[0-9]{3,17}")


class NumberError(ValueError):
    """The text is not a usable telephone number; ``str()`` says why, for the user."""


def parse_prefix(text: str) -> int:
    """The country calling code in ``text`` (``91`` or ``+91``)."""
    found = _PREFIX.fullmatch(text.strip())
    if found is None:
        raise NumberError(f"{text!r} is not a country calling code; write it like 91 or +91")
    code = int(found.group(1))
    if phonenumbers.region_code_for_country_code(code) == phonenumbers.UNKNOWN_REGION:
        raise NumberError(f"+{code} is not a country calling code")
    return code


def to_e164(text: str, *, prefix: int | None = None) -> str:
    """``text`` as an E.164 number (``+919876543210``); see the module docstring."""
    found = _to_e164_cached(text, prefix)
    if isinstance(found, NumberError):
        raise NumberError(str(found))
    return found


# libphonenumber takes about 100 µs a number, and an application places call after call
# from the same agents and bridge: the answer (or the refusal) is remembered per spelling.
@lru_cache(maxsize=65_536)
def _to_e164_cached(text: str, prefix: int | None) -> str | NumberError:
    try:
        return _to_e164(text, prefix)
    except NumberError as error:
        return error


def _to_e164(text: str, prefix: int | None) -> str:
    compact = "".join(text.split())
    if text[:1] == " " and compact[:1].isdigit():
        # A form body sent without encoding its + (curl -d to=+91...) arrives as a space.
        compact = "+" + compact
    if not _NUMBER.fullmatch(compact):
        raise NumberError(
            f"{text!r} is not a telephone number: use digits, with a leading + and the "
            "country code"
        )
    if compact.startswith("+"):
        number = _parse(compact, None, text)
    elif prefix is not None:
        # As dialled in that country: libphonenumber strips a trunk 0 or a repeated country
        # code, and reads an international access code (00 ...) as dialled from there.
        number = _parse(compact, phonenumbers.region_code_for_country_code(prefix), text)
    else:
        raise NumberError(
            f"{text!r} has no country code: write it as +<country code><number>, or give "
            "the country code in prefix"
        )
    if not phonenumbers.is_valid_number(number):
        raise NumberError(f"{text!r} is not a valid telephone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def to_e164_list(text: str, *, separator: str, prefix: int | None = None) -> list[str]:
    """Several numbers separated by ``separator`` (parallel ringing), each as E.164."""
    parts = text.split(separator)
    if len(parts) > MAX_PARALLEL:
        raise NumberError(f"at most {MAX_PARALLEL} numbers can ring at once, got {len(parts)}")
    numbers = [to_e164(part, prefix=prefix) for part in parts]
    if len(set(numbers)) != len(numbers):
        raise NumberError(f"{text!r} lists the same number twice")
    return numbers


def stored(numbers: list[str]) -> str:
    """The store's spelling of a list of E.164 numbers."""
    return STORED_SEPARATOR.join(numbers)


def _parse(digits: str, region: str | None, original: str) -> phonenumbers.PhoneNumber:
    try:
        return phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        raise NumberError(f"{original!r} is not a valid telephone number") from None
