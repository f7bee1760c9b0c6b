"""The status vocabulary: its words, the two dialects, and the one-module rule."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from voiceplane.calls.status import Dialect, Status, spell

SEED = [
    "BUSY", "CHANUNAVAIL", "CONGESTION", "NOANSWER", "ANSWER", "CANCEL", "FAILED",
    "BUSY_LEG1", "BUSY_LEG2", "NOANSWER_LEG1", "NOANSWER_LEG2", "FAILED_LEG1", "FAILED_LEG2",
    "IVR", "IVR-ANSWER", "MISWIG", "BLOCKED", "MAX-USE", "DND", "OFF-HOUR", "NOTALLOWED",
]  # fmt: skip

KALEYRA_IO = {
    Status.BUSY_LEG1: "BUSY_CHANNEL1",
    Status.BUSY_LEG2: "BUSY_CHANNEL2",
    Status.NOANSWER_LEG1: "NOANSWER_CHANNEL1",
    Status.NOANSWER_LEG2: "NOANSWER_CHANNEL2",
    Status.FAILED_LEG1: "FAILED_CHANNEL1",
    Status.FAILED_LEG2: "FAILED_CHANNEL2",
    Status.MAX_USE: "MAXUSE",
    Status.MISWIG: "MISS_CALL",
    Status.IVR_ANSWER: "FLOW_ANSWER",
}


def test_the_vocabulary_is_exactly_the_seed_list() -> None:
    assert sorted(member.value for member in Status) == sorted(SEED)


def test_hyphenated_words_have_python_names() -> None:
    assert Status.IVR_ANSWER.value == "IVR-ANSWER"
    assert Status.MAX_USE.value == "MAX-USE"
    assert Status.OFF_HOUR.value == "OFF-HOUR"
    assert str(Status.OFF_HOUR) == "OFF-HOUR"  # what JSON and f-strings will carry


@pytest.mark.parametrize("status", list(Status))
def test_every_word_has_a_meaning(status: Status) -> None:
    assert len(status.description) > 20


def test_pre_dial_words() -> None:
    pre_dial = {member for member in Status if member.decided_before_dialing}
    assert pre_dial == {
        Status.DND,
        Status.NOTALLOWED,
        Status.MAX_USE,
        Status.BLOCKED,
        Status.OFF_HOUR,
    }


@pytest.mark.parametrize("status", list(Status))
def test_voiceplane_dialect_is_the_value(status: Status) -> None:
    assert spell(status) == spell(status, Dialect.VOICEPLANE) == status.value


@pytest.mark.parametrize("status", list(Status))
def test_kaleyra_io_spelling(status: Status) -> None:
    assert spell(status, Dialect.KALEYRA_IO) == KALEYRA_IO.get(status, status.value)


@pytest.mark.parametrize("dialect", list(Dialect))
@pytest.mark.parametrize("status", list(Status))
def test_round_trip(status: Status, dialect: Dialect) -> None:
    assert Status.parse(spell(status, dialect)) is status


def test_no_word_names_two_statuses() -> None:
    owners: dict[str, set[Status]] = {}
    for status in Status:
        for dialect in Dialect:
            owners.setdefault(spell(status, dialect), set()).add(status)
    assert all(len(statuses) == 1 for statuses in owners.values())


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("maxuse", Status.MAX_USE),
        ("  off-hour\n", Status.OFF_HOUR),
        ("Busy_Channel2", Status.BUSY_LEG2),
    ],
)
def test_parse_ignores_case_and_blanks(text: str, status: Status) -> None:
    assert Status.parse(text) is status


@pytest.mark.parametrize("text", ["", "OFF_HOUR", "IVR_ANSWER", "BUSY_LEG3", "NOROUTE", "answered"])
def test_parse_rejects_other_words(text: str) -> None:
    with pytest.raises(ValueError, match="unknown call status .*expected one of: .*NOANSWER"):
        Status.parse(text)


# --- one vocabulary, in one module (DESIGN.md, "Layers") ---

SRC = Path(__file__).resolve().parents[2] / "src" / "voiceplane"
STATUS_MODULE = SRC / "calls" / "status.py"
ALL_SPELLINGS = {spell(s, d) for s in Status for d in Dialect}
# Words that mean nothing but a status, so they may not appear even inside a longer string.
# (ANSWER, BUSY, CANCEL, FAILED, IVR, DND and BLOCKED are also ordinary words or SIP names.)
DISTINCT = re.compile(
    r"(?<![\w-])("
    + "|".join(
        sorted(
            map(
                re.escape,
                ALL_SPELLINGS - {"ANSWER", "BUSY", "CANCEL", "FAILED", "IVR", "DND", "BLOCKED"},
            )
        )
    )
    + r")(?![\w-])"
)
SIP_METHODS = {"CANCEL"}  # in sip/ "CANCEL" is the request method, not our status


def _string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    )


def _offences(path: Path) -> list[str]:
    in_sip = path.parent.name == "sip"
    found = []
    for line, text in _string_literals(path):
        word = text.strip()
        exact = word in ALL_SPELLINGS and not (in_sip and word in SIP_METHODS)
        if exact or DISTINCT.search(text):
            found.append(f"{path.name}:{line}: {text!r}")
    return found


def test_no_other_module_spells_a_status() -> None:
    offences = [
        f"{path.parent.name}/{offence}"
        for path in sorted(SRC.rglob("*.py"))
        if path != STATUS_MODULE
        for offence in _offences(path)
    ]
    assert offences == [], "use voiceplane.calls.status.Status instead:\n" + "\n".join(offences)


def test_the_rule_catches_literals_but_not_prose(tmp_path: Path) -> None:
    module = tmp_path / "engine.py"
    module.write_text(
        '"""Ends with NOANSWER or CHANUNAVAIL, as the docs say."""\n'
        "def f(s):\n"
        '    """A NOANSWER here is prose."""\n'
        '    if s == "BUSY":\n'
        '        return f"{s}:MAX-USE"\n'
        '    return "NOANSWERED", "CANCEL"\n',
        encoding="utf-8",
    )
    assert [o.split(":")[1] for o in _offences(module)] == ["4", "5", "6"]
    sip = tmp_path / "sip"
    sip.mkdir()
    (sip / "transaction.py").write_text('METHOD = "CANCEL"\n', encoding="utf-8")
    assert _offences(sip / "transaction.py") == []
