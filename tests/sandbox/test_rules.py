"""The sandbox's dial plan: numbers, default outcomes, rules from the settings, bad rules."""

from pathlib import Path

import pytest

from voiceplane.config import ConfigError, SandboxSettings, load_config
from voiceplane.sandbox.rules import (
    Action,
    Decision,
    DialPlan,
    dialled_number,
    normalize_number,
    q850_cause,
    reason_phrase,
)


def plan(**settings: object) -> DialPlan:
    return DialPlan.from_settings(SandboxSettings.model_validate(settings))


# --- the dialled number --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "number"),
    [
        ("sip:+15550100@127.0.0.1:5070", "+15550100"),
        ("sip:15550486@sandbox", "15550486"),
        ("sips:+4930123@example.com;transport=tcp", "+4930123"),
        ("sip:+1-555-(010)0.486;phone-context=+1@host;user=phone", "+15550100486"),
        ("sip:%2B15550100@host", "+15550100"),
        ("tel:+1-555-0100", "+15550100"),
        ("sip:alice@host", None),
        ("sip:host", None),
        ("sip:++1555@host", None),
        ("sip:1555+@host", None),
        ("http://example.com/1555", None),
        ("", None),
    ],
)
def test_dialled_number(uri: str, number: str | None) -> None:
    assert dialled_number(uri) == number


def test_normalize_number_bounds_the_length() -> None:
    assert normalize_number("1" * 32) == "1" * 32
    assert normalize_number("1" * 33) is None


# --- codes, phrases, causes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "phrase", "cause"),
    [
        (486, "Busy Here", 17),
        (600, "Busy Everywhere", 17),
        (404, "Not Found", 1),
        (480, "Temporarily Unavailable", 18),  # RFC 3398 (chan_pjsip would say 19)
        (503, "Service Unavailable", 41),  # RFC 3398 (chan_pjsip would say 34)
        (408, "Request Timeout", 102),
        (484, "Address Incomplete", 28),
        (603, "Decline", 21),
        (487, "Request Terminated", 127),  # no RFC 3398 cause: chan_pjsip's
        (488, "Not Acceptable Here", 58),  # RFC 3398 goes by Warning: chan_pjsip's
        (580, "Precondition Failure", 34),  # unlisted 5xx: chan_pjsip's default
        (499, "Request Failure", 127),  # no phrase, no cause: the class name, interworking
        (599, "Server Failure", 34),
        (699, "Global Failure", 127),
    ],
)
def test_reason_phrase_and_cause(code: int, phrase: str, cause: int) -> None:
    assert reason_phrase(code) == phrase
    assert q850_cause(code) == cause


@pytest.mark.parametrize("code", [200, 399, 700])
def test_codes_outside_400_699_are_refused(code: int) -> None:
    with pytest.raises(ValueError, match="400-699"):
        reason_phrase(code)
    with pytest.raises(ValueError, match="400-699"):
        q850_cause(code)


# --- the defaults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "code", "phrase", "cause"),
    [
        ("+15550486", 486, "Busy Here", 17),
        ("15550503", 503, "Service Unavailable", 41),
        ("404", 404, "Not Found", 1),
        ("+15550400", 400, "Bad Request", 41),
        ("+15550699", 699, "Global Failure", 127),
    ],
)
def test_last_three_digits_400_to_699_reject(
    number: str, code: int, phrase: str, cause: int
) -> None:
    decision = plan(reject_after_ms=250).decide(number)

    assert decision == Decision(
        Action.REJECT, delay_s=0.25, code=code, reason=phrase, cause=cause, rule=None
    )
    assert decision.reason_header == f"Q.850;cause={cause}"


@pytest.mark.parametrize("number", ["+15550000", "000", "+1000"])
def test_000_rings_forever(number: str) -> None:
    assert plan().decide(number) == Decision(Action.RING)


@pytest.mark.parametrize("number", ["+15550100", "15550399", "15550700", "15550999", "12", "+7"])
def test_anything_else_is_answered_then_hung_up(number: str) -> None:
    decision = plan(answer_after_ms=1500, hold_s=3.5).decide(number)

    assert decision == Decision(Action.ANSWER, delay_s=1.5, hold_s=3.5)
    assert decision.reason_header is None


def test_default_timers_are_the_documented_ones() -> None:
    settings = SandboxSettings()
    assert (settings.answer_after_ms, settings.reject_after_ms, settings.hold_s) == (1000, 200, 20)
    assert plan().decide("+15550100") == Decision(Action.ANSWER, delay_s=1.0, hold_s=20.0)
    assert plan().decide("+15550486").delay_s == 0.2


def test_not_a_number_is_not_found() -> None:
    decision = plan().decide(None)

    assert (decision.action, decision.code, decision.reason, decision.cause) == (
        Action.REJECT, 404, "Not Found", 1,
    )  # fmt: skip


# --- rules ---------------------------------------------------------------------------------


def test_rules_come_before_the_defaults_and_the_first_match_wins() -> None:
    rules = [
        {"match": "+15550100", "code": 486},
        {"suffix": "777", "action": "answer", "hold_s": 5},
        {"prefix": "+44", "action": "ring"},
        {"suffix": "7", "code": 480, "reason": "Nobody Home", "cause": 17, "after_ms": 50},
        {"suffix": "486", "action": "answer"},  # overrides a default rejection
    ]
    dial = plan(rules=rules, answer_after_ms=100, reject_after_ms=20, hold_s=9)

    assert dial.decide("+15550100") == Decision(
        Action.REJECT, delay_s=0.02, code=486, reason="Busy Here", cause=17, rule=0
    )
    assert dial.decide("15550100") == dial.decide("+15550100")  # a leading + never matters
    assert dial.decide("+155501001") == Decision(Action.ANSWER, delay_s=0.1, hold_s=9, rule=None)
    assert dial.decide("+1555777") == Decision(Action.ANSWER, delay_s=0.1, hold_s=5, rule=1)
    assert dial.decide("+447700900777") == Decision(Action.ANSWER, delay_s=0.1, hold_s=5, rule=1)
    assert dial.decide("447700900123") == Decision(Action.RING, rule=2)
    assert dial.decide("+1555127") == Decision(
        Action.REJECT, delay_s=0.05, code=480, reason="Nobody Home", cause=17, rule=3
    )
    assert dial.decide("+1555486") == Decision(Action.ANSWER, delay_s=0.1, hold_s=9, rule=4)
    assert dial.decide("+1555503").code == 503  # no rule: the defaults


def test_all_matchers_of_a_rule_must_match() -> None:
    dial = plan(rules=[{"prefix": "+1", "suffix": "100", "code": 404}])

    assert dial.decide("+1555100").code == 404
    assert dial.decide("+4455100").action is Action.ANSWER
    assert dial.decide("+1555101").action is Action.ANSWER


def test_a_rule_can_answer_at_once_and_never_hang_up() -> None:
    dial = plan(rules=[{"suffix": "1", "action": "answer", "after_ms": 0, "hold_s": 0}])

    assert dial.decide("+15550001") == Decision(Action.ANSWER, delay_s=0, hold_s=0, rule=0)


def test_dial_plan_refuses_negative_timers() -> None:
    with pytest.raises(ValueError, match="negative"):
        DialPlan(hold_s=-1)


# --- rules from the file and the environment -----------------------------------------------


def test_rules_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "voiceplane.toml"
    path.write_text(
        "[sandbox]\n"
        'transports = ["udp"]\n'
        "answer_after_ms = 0\n"
        "hold_s = 0.5\n"
        "\n[[sandbox.rules]]\n"
        'match = "+15550100"\ncode = 486\n'
        "\n[[sandbox.rules]]\n"
        'suffix = "777"\naction = "answer"\nhold_s = 5\n'
    )

    settings = load_config(path, {}).sandbox

    assert settings.transports == ("udp",)
    assert [(r.match, r.suffix, r.action, r.code, r.hold_s) for r in settings.rules] == [
        ("+15550100", None, "reject", 486, None),
        (None, "777", "answer", None, 5.0),
    ]
    assert DialPlan.from_settings(settings).decide("+1555777").hold_s == 5.0


@pytest.mark.parametrize(
    "text",
    [
        '[{ suffix = "777", action = "answer", hold_s = 5 }]',  # TOML, as in the file
        '[{"suffix": "777", "action": "answer", "hold_s": 5}]',  # JSON
    ],
)
def test_rules_from_the_environment(text: str) -> None:
    environ = {
        "VOICEPLANE_SANDBOX_RULES": text,
        "VOICEPLANE_SANDBOX_HOLD_S": "0.25",
        "VOICEPLANE_SANDBOX_ANSWER_AFTER_MS": "0",
        "VOICEPLANE_SANDBOX_REJECT_AFTER_MS": "10",
        "VOICEPLANE_SANDBOX_TRANSPORTS": "tcp",
    }

    settings = load_config(None, environ).sandbox

    assert settings.transports == ("tcp",)
    assert (settings.hold_s, settings.answer_after_ms, settings.reject_after_ms) == (0.25, 0, 10)
    dial = DialPlan.from_settings(settings)
    assert dial.decide("+1555777") == Decision(Action.ANSWER, delay_s=0, hold_s=5, rule=0)
    assert dial.decide("+1555123") == Decision(Action.ANSWER, delay_s=0, hold_s=0.25)


def test_empty_rules_variable_means_no_rules(tmp_path: Path) -> None:
    path = tmp_path / "voiceplane.toml"
    path.write_text('[sandbox]\nrules = [{ suffix = "1", code = 404 }]\n')

    assert load_config(path, {"VOICEPLANE_SANDBOX_RULES": ""}).sandbox.rules == ()


@pytest.mark.parametrize(
    ("toml", "key", "complaint"),
    [
        ('rules = [{ suffix = "486", code = 999 }]', "sandbox.rules[0][code]", "less than or"),
        ('rules = [{ suffix = "486", code = 200 }]', "sandbox.rules[0][code]", "greater than"),
        ('rules = [{ sufix = "486", code = 486 }]', "sandbox.rules[0]", "unknown key 'sufix'"),
        ("rules = [{ code = 486 }]", "sandbox.rules[0]", "needs match, prefix or suffix"),
        ('rules = [{ suffix = "4a6" }]', "sandbox.rules[0][suffix]", "must be digits"),
        ('rules = [{ suffix = "+486" }]', "sandbox.rules[0][suffix]", "must be digits"),
        ('rules = [{ match = "alice" }]', "sandbox.rules[0][match]", "digits with an optional"),
        ('rules = [{ prefix = "" }]', "sandbox.rules[0][prefix]", "digits with an optional"),
        ('rules = [{ suffix = "1", action = "dance" }]', "sandbox.rules[0][action]", "'ring'"),
        ('rules = [{ suffix = "1", action = "reject" }]', "sandbox.rules[0]", "needs a code"),
        (
            'rules = [{ suffix = "1", action = "answer", code = 486 }]',
            "sandbox.rules[0]",
            'code only goes with action = "reject"',
        ),
        (
            'rules = [{ suffix = "1", action = "ring", cause = 17 }]',
            "sandbox.rules[0]",
            'cause only goes with action = "reject"',
        ),
        ('rules = [{ suffix = "1", code = 486, hold_s = 3 }]', "sandbox.rules[0]", "hold_s only"),
        (
            'rules = [{ suffix = "1", action = "ring", after_ms = 5 }]',
            "sandbox.rules[0]",
            "after_ms does not go",
        ),
        ('rules = [{ suffix = "1", code = 486, cause = 0 }]', "rules[0][cause]", "or equal to 1"),
        ('rules = [{ suffix = "1", code = 486, cause = 128 }]', "sandbox.rules[0][cause]", "127"),
        ('rules = [{ suffix = "1", code = 486, reason = "a\\r\\nb" }]', "[reason]", "printable"),
        ('rules = [{ suffix = "1", after_ms = -1 }]', "rules[0][after_ms]", "or equal to 0"),
        ('rules = [{ suffix = "1", hold_s = -1 }]', "sandbox.rules[0][hold_s]", "or equal to 0"),
        ('rules = [{ suffix = "1", hold_s = true }]', "sandbox.rules[0][hold_s]", "seconds"),
        ('rules = [{ suffix = "1" }, "x"]', "sandbox.rules[1]", "must be a table"),
        ('rules = { suffix = "1" }', "sandbox.rules", "tuple"),
        ("answer_after_ms = -1", "sandbox.answer_after_ms", "greater than or equal to 0"),
        ("reject_after_ms = true", "sandbox.reject_after_ms", "milliseconds"),
        ("hold_s = -0.5", "sandbox.hold_s", "greater than or equal to 0"),
        ("hold_s = nan", "sandbox.hold_s", "or equal to 0"),
        ("hold_s = inf", "sandbox.hold_s", "finite"),
        ('transports = ["udp", "udp"]', "sandbox.transports", "twice"),
        ('transports = ["sctp"]', "sandbox.transports[0]", "'udp' or 'tcp'"),
        ("transports = []", "sandbox.transports", "at least one transport"),
    ],
)
def test_bad_sandbox_settings_name_the_key(
    tmp_path: Path, toml: str, key: str, complaint: str
) -> None:
    path = tmp_path / "voiceplane.toml"
    path.write_text(f"[sandbox]\n{toml}\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    issues = caught.value.issues
    assert len(issues) == 1, issues
    assert key in issues[0].key
    assert issues[0].source == f"config file {path}"
    assert complaint in issues[0].message


def test_bad_rules_variable_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"VOICEPLANE_SANDBOX_RULES": "[{suffix: 1}]"})

    message = str(caught.value)
    assert "sandbox.rules" in message
    assert "VOICEPLANE_SANDBOX_RULES" in message
    assert "expected a TOML array of tables" in message
