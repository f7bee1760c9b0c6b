"""Dialing permissions against phonenumbers' real data: country, international, number type,
network; the account's and the bridge's rules together; settings read from user input."""

from __future__ import annotations

import pytest

from voiceplane.policy.permissions import (
    ACCOUNT_DEFAULT,
    NUMBER_DEFAULT,
    DialingRules,
    RuleError,
    check_number,
    check_numbers,
    facts_of,
    is_international,
)
from voiceplane.policy.refusal import (
    RULE_COUNTRY,
    RULE_INTERNATIONAL,
    RULE_NETWORK,
    RULE_NUMBER_TYPE,
    RefusalKind,
)

IN_BRIDGE = "+918047100000"  # Bengaluru fixed line
IN_AIRTEL = "+919876500111"  # Indian mobile, Airtel's range
IN_IDEA = "+919812345678"  # Indian mobile, Idea's range
US_NUMBER = "+14155550123"  # fixed_line_or_mobile, as every US number
US_TOLL_FREE = "+18005551234"
US_PREMIUM = "+19005551234"
GB_PREMIUM = "+449001234567"
GG_MOBILE = "+447911123456"  # a +44 number in Guernsey, not Great Britain
FR_MOBILE = "+33612345678"
CA_NUMBER = "+16135550123"


def account(rules: DialingRules) -> list[tuple[str, DialingRules]]:
    return [("account", rules)]


def test_facts_come_from_phonenumbers_data() -> None:
    airtel = facts_of(IN_AIRTEL)
    assert (airtel.region, airtel.country_code, airtel.number_type, airtel.network) == (
        "IN", 91, "mobile", "Airtel",
    )  # fmt: skip
    assert facts_of(GG_MOBILE).region == "GG"
    assert facts_of(US_PREMIUM).number_type == "premium_rate"
    assert facts_of(US_TOLL_FREE).number_type == "toll_free"
    assert facts_of(US_NUMBER).number_type == "fixed_line_or_mobile"


def test_a_number_that_cannot_be_placed_gets_its_calling_codes_main_region() -> None:
    odd = facts_of("+447700900123")  # a range phonenumbers holds invalid
    assert (odd.region, odd.number_type, odd.network) == ("GB", "unknown", "")
    garbage = facts_of("not a number")
    assert (garbage.region, garbage.country_code) == (None, 0)


def test_the_defaults_allow_everything_but_premium_rate() -> None:
    for number in (IN_AIRTEL, US_NUMBER, US_TOLL_FREE, FR_MOBILE, "+447700900123"):
        assert check_number(number, bridge=IN_BRIDGE, scopes=account(ACCOUNT_DEFAULT)) is None
    refusal = check_number(US_PREMIUM, bridge=IN_BRIDGE, scopes=account(ACCOUNT_DEFAULT))
    assert refusal is not None and refusal.rule == RULE_NUMBER_TYPE
    assert check_number(US_PREMIUM, bridge=IN_BRIDGE, scopes=[("n", NUMBER_DEFAULT)]) is None


def test_country_allow_list() -> None:
    rules = DialingRules.build(countries=["in", "GB"])
    assert check_number(IN_AIRTEL, bridge=IN_BRIDGE, scopes=account(rules)) is None
    refusal = check_number(FR_MOBILE, bridge=IN_BRIDGE, scopes=account(rules))
    assert refusal is not None
    assert (refusal.kind, refusal.rule) == (RefusalKind.NOT_PERMITTED, RULE_COUNTRY)
    assert "FR" in refusal.explanation and "GB, IN" in refusal.explanation
    assert refusal.explanation.startswith("account: ")
    # Guernsey shares +44 but is not GB: the region decides, not the calling code.
    guernsey = check_number(GG_MOBILE, bridge=IN_BRIDGE, scopes=account(rules))
    assert guernsey is not None and guernsey.rule == RULE_COUNTRY


def test_an_empty_country_list_allows_no_country() -> None:
    rules = DialingRules.build(countries=[])
    refusal = check_number(IN_AIRTEL, bridge=IN_BRIDGE, scopes=account(rules))
    assert refusal is not None and refusal.rule == RULE_COUNTRY


def test_international_dialing_off() -> None:
    rules = DialingRules.build(international=False)
    assert check_number(IN_AIRTEL, bridge=IN_BRIDGE, scopes=account(rules)) is None
    refusal = check_number(US_NUMBER, bridge=IN_BRIDGE, scopes=account(rules))
    assert refusal is not None and refusal.rule == RULE_INTERNATIONAL
    assert "IN" in refusal.explanation and "US" in refusal.explanation
    # Same calling code, different country: still international.
    assert is_international(facts_of(CA_NUMBER), facts_of(US_NUMBER))
    assert check_number(CA_NUMBER, bridge=US_NUMBER, scopes=account(rules)) is not None
    assert check_number("+12025550123", bridge=US_NUMBER, scopes=account(rules)) is None


def test_number_types() -> None:
    mobiles = DialingRules.build(number_types=["MOBILE"])
    assert check_number(IN_AIRTEL, bridge=IN_BRIDGE, scopes=account(mobiles)) is None
    refusal = check_number(IN_BRIDGE, bridge=IN_BRIDGE, scopes=account(mobiles))
    assert refusal is not None and refusal.rule == RULE_NUMBER_TYPE
    assert "fixed_line" in refusal.explanation
    # A US number could be either: it passes when either kind is allowed.
    assert check_number(US_NUMBER, bridge=IN_BRIDGE, scopes=account(mobiles)) is None
    toll_free = DialingRules.build(number_types=["toll_free"])
    assert check_number(US_NUMBER, bridge=IN_BRIDGE, scopes=account(toll_free)) is not None
    assert check_number(US_TOLL_FREE, bridge=IN_BRIDGE, scopes=account(toll_free)) is None


def test_networks_allowed_and_refused() -> None:
    only_airtel = DialingRules.build(networks=["airtel"])
    assert check_number(IN_AIRTEL, bridge=IN_BRIDGE, scopes=account(only_airtel)) is None
    refusal = check_number(IN_IDEA, bridge=IN_BRIDGE, scopes=account(only_airtel))
    assert refusal is not None and refusal.rule == RULE_NETWORK and "Idea" in refusal.explanation
    # No known network (a fixed line): an allow list refuses it.
    assert check_number(IN_BRIDGE, bridge=IN_BRIDGE, scopes=account(only_airtel)) is not None

    no_airtel = DialingRules.build(blocked_networks="Airtel, SFR")
    for number in (IN_AIRTEL, FR_MOBILE):
        refusal = check_number(number, bridge=IN_BRIDGE, scopes=account(no_airtel))
        assert refusal is not None and refusal.rule == RULE_NETWORK
    assert check_number(IN_IDEA, bridge=IN_BRIDGE, scopes=account(no_airtel)) is None
    assert check_number(IN_BRIDGE, bridge=IN_BRIDGE, scopes=account(no_airtel)) is None


def test_the_account_and_the_bridge_both_apply_and_the_stricter_wins() -> None:
    loose = DialingRules.build()
    strict = DialingRules.build(countries=["IN"])
    both = ([("account", loose), ("bridge", strict)], [("account", strict), ("bridge", loose)])
    for scopes in both:
        refusal = check_number(US_NUMBER, bridge=IN_BRIDGE, scopes=scopes)
        assert refusal is not None and refusal.rule == RULE_COUNTRY
    scopes = [("account", loose), ("bridge +91", strict)]
    refusal = check_number(US_NUMBER, bridge=IN_BRIDGE, scopes=scopes)
    assert refusal is not None and refusal.explanation.startswith("bridge +91: ")
    assert check_number(IN_AIRTEL, bridge=IN_BRIDGE, scopes=[("a", loose), ("b", strict)]) is None


def test_rules_are_tried_in_order_country_first() -> None:
    rules = DialingRules.build(countries=["IN"], international=False, number_types=["mobile"])
    refusal = check_number(US_PREMIUM, bridge=IN_BRIDGE, scopes=account(rules))
    assert refusal is not None and refusal.rule == RULE_COUNTRY
    rules = DialingRules.build(international=False, number_types=["mobile"])
    refusal = check_number(US_PREMIUM, bridge=IN_BRIDGE, scopes=account(rules))
    assert refusal is not None and refusal.rule == RULE_INTERNATIONAL


def test_every_number_of_a_call_is_checked() -> None:
    rules = DialingRules.build(countries=["IN"])
    refusal = check_numbers([IN_AIRTEL, FR_MOBILE], bridge=IN_BRIDGE, scopes=account(rules))
    assert refusal is not None and FR_MOBILE in refusal.explanation
    assert check_numbers([IN_AIRTEL, IN_IDEA], bridge=IN_BRIDGE, scopes=account(rules)) is None


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"countries": ["XX"]}, "countries"),
        ({"countries": ["India"]}, "countries"),
        ({"number_types": ["cellular"]}, "number_types"),
        ({"networks": [""]}, "networks"),
        ({"blocked_networks": ["x" * 101]}, "blocked_networks"),
    ],
)
def test_bad_settings_name_their_field(settings: dict[str, list[str]], field: str) -> None:
    with pytest.raises(RuleError) as caught:
        DialingRules.build(**settings)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_settings_are_normalised_and_shown_sorted() -> None:
    rules = DialingRules.build(
        countries="us, in", number_types=["Mobile"], networks=["Airtel"], international=False
    )
    assert rules.as_dict() == {
        "countries": ["IN", "US"],
        "international": False,
        "number_types": ["mobile"],
        "networks": ["airtel"],
        "blocked_networks": [],
    }
    assert DialingRules.build().as_dict()["countries"] is None
