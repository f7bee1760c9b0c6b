"""Telephone numbers as users write them, to E.164."""

from __future__ import annotations

import pytest

from voiceplane.api.phone import NumberError, parse_prefix, stored, to_e164, to_e164_list


@pytest.mark.parametrize(
    ("text", "prefix", "e164"),
    [
        ("+919876543210", None, "+919876543210"),
        (" +91 98765 43210 ", None, "+919876543210"),
        ("+14155550100", 91, "+14155550100"),  # a + number ignores the prefix
        ("9876543210", 91, "+919876543210"),
        ("09876543210", 91, "+919876543210"),  # the trunk 0
        ("919876543210", 91, "+919876543210"),  # the country code written twice
        ("4155550100", 1, "+14155550100"),
        ("2079460000", 44, "+442079460000"),
    ],
)
def test_numbers_become_e164(text: str, prefix: int | None, e164: str) -> None:
    assert to_e164(text, prefix=prefix) == e164


@pytest.mark.parametrize(
    ("text", "prefix", "words"),
    [
        ("9876543210", None, "no country code"),
        ("919876543210", None, "no country code"),
        ("+91 98765", None, "not a valid telephone number"),
        ("+1-415-555-0100", None, "not a telephone number"),
        ("1-800-FLOWERS", 1, "not a telephone number"),
        ("+14155550100 ext 2", None, "not a telephone number"),
        ("", 91, "not a telephone number"),
        ("+99912345678", None, "not a valid telephone number"),
    ],
)
def test_unusable_numbers_are_refused_with_a_reason(
    text: str, prefix: int | None, words: str
) -> None:
    with pytest.raises(NumberError, match=words):
        to_e164(text, prefix=prefix)


@pytest.mark.parametrize(("text", "code"), [("91", 91), ("+44", 44), (" 1 ", 1)])
def test_prefixes(text: str, code: int) -> None:
    assert parse_prefix(text) == code


@pytest.mark.parametrize("text", ["", "0", "+", "9100", "999", "91a"])
def test_bad_prefixes(text: str) -> None:
    with pytest.raises(NumberError):
        parse_prefix(text)


def test_a_parallel_list_is_stored_comma_separated() -> None:
    numbers = to_e164_list("9876543210^+14155550100", separator="^", prefix=91)

    assert stored(numbers) == "+919876543210,+14155550100"


def test_a_list_may_not_repeat_a_number_nor_be_too_long() -> None:
    with pytest.raises(NumberError, match="twice"):
        to_e164_list("9876543210-09876543210", separator="-", prefix=91)
    with pytest.raises(NumberError, match="at most 10"):
        to_e164_list("-".join(["+919876543210"] * 11), separator="-")


def test_a_plus_that_form_encoding_turned_into_a_space_still_counts() -> None:
    assert to_e164(" 919876543210") == "+919876543210"
    with pytest.raises(NumberError, match="no country code"):
        to_e164("9876543210")
