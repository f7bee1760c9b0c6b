"""The interpreter against a scripted FlowCall: menus, retries, timeouts, dialling, recording,
hang-ups mid-step, loops, failures, office hours on a fixed clock, and a real webhook."""

from __future__ import annotations

import wave
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.calls.flows.receiver import Receiver, Reply, Request
from voiceplane.calls.flows.interpreter import (
    CallerHungUp,
    CallInfo,
    DialLeg,
    DialOutcome,
    FlowResult,
    run_flow,
)
from voiceplane.calls.flows.model import Flow, parse_flow
from voiceplane.calls.status import Status
from voiceplane.policy.hours import OfficeHours

KOLKATA = ZoneInfo("Asia/Kolkata")
AGENT_1, AGENT_2, AGENT_3 = "+919876543210", "+919876543211", "+919876543212"
HANG_UP = CallerHungUp  # a scripted input that means: the caller hangs up while we listen


@dataclass
class FakeCall:
    """A FlowCall that follows a script and logs what the flow asked of it."""

    inputs: list[str | type[CallerHungUp]] = field(default_factory=list)
    agents: dict[str, Status] = field(default_factory=dict)  # how each agent's leg ends
    hang_up_in: str | None = None  # the method in which the caller hangs up
    recorded_seconds: float = 3.5
    caller_leaves_while_bridged: bool = False
    fail_in: str | None = None  # a method that raises RuntimeError
    log: list[tuple[Any, ...]] = field(default_factory=list)
    _inputs: deque[str | type[CallerHungUp]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._inputs.extend(self.inputs)

    @property
    def info(self) -> CallInfo:
        return CallInfo("VC42", "+919000000001", "+918067000001", custom="order-7")

    def _enter(self, method: str, *details: Any) -> None:
        self.log.append((method, *details))
        if self.fail_in == method:
            raise RuntimeError(f"{method} broke")
        if self.hang_up_in == method:
            raise CallerHungUp

    @property
    def methods(self) -> list[str]:
        return [entry[0] for entry in self.log]

    async def answer(self) -> None:
        self._enter("answer")

    async def play(self, path: Path) -> None:
        self._enter("play", path)

    async def say(self, text: str, *, voice: str | None) -> None:
        self._enter("say", text)

    async def gather(self, *, max_digits: int, timeout: float, finish_key: str | None) -> str:
        self._enter("gather", max_digits, timeout, finish_key)
        item = self._inputs.popleft() if self._inputs else ""  # nothing scripted: a timeout
        if not isinstance(item, str):
            raise item()
        return item

    async def dial(self, numbers: Sequence[str], *, ring_timeout: float) -> DialOutcome:
        self._enter("dial", tuple(numbers), ring_timeout)
        legs = []
        answered = False
        for number in numbers:
            status = self.agents.get(number, Status.NOANSWER)
            if answered and status is Status.ANSWER:
                status = Status.CANCEL  # a parallel try that lost the race
            answered = answered or status is Status.ANSWER
            legs.append(DialLeg(number, status, 200 if status is Status.ANSWER else None))
        return DialOutcome(tuple(legs), caller_hung_up=self.caller_leaves_while_bridged)

    async def record(
        self,
        path: Path,
        *,
        max_length: float,
        finish_key: str | None,
        silence: float | None,
        beep: bool,
    ) -> float:
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(b"\0\0" * 8000 * 2)  # two seconds
        self._enter("record", path, max_length, finish_key, silence, beep)
        return self.recorded_seconds

    async def hangup(self) -> None:
        self._enter("hangup")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@dataclass
class Runner:
    http: httpx.AsyncClient
    tmp_path: Path
    now: datetime = datetime(2027, 2, 3, 11, 0, tzinfo=KOLKATA)  # a Wednesday morning
    number_hours: OfficeHours | None = None

    async def __call__(self, flow: Flow | dict[str, Any], call: FakeCall) -> FlowResult:
        if isinstance(flow, dict):
            flow = parse_flow(flow)
        return await run_flow(
            flow,
            call,
            http=self.http,
            media_dir=self.tmp_path / "media",
            recordings_dir=self.tmp_path / "recordings",
            clock=lambda: self.now,
            number_hours=self.number_hours,
        )


@pytest.fixture
def run(http: httpx.AsyncClient, tmp_path: Path) -> Runner:
    return Runner(http, tmp_path)


def support_line(**menu: Any) -> dict[str, Any]:
    return {
        "name": "Support line",
        "steps": {
            "welcome": {"kind": "say", "text": "Welcome to Acme.", "next": "menu"},
            "menu": {
                "kind": "menu",
                "prompt": {"play": "menu.wav"},
                "retry_prompt": {"say": "Sorry."},
                "branches": {"1": "sales", "2": "voicemail"},
                "invalid": "bye",
                **menu,
            },
            "sales": {
                "kind": "dial",
                "numbers": [AGENT_1, AGENT_2],
                "mode": "parallel",
                "ring_timeout": 20,
                "answered": "bye",
                "not_answered": "voicemail",
            },
            "voicemail": {"kind": "record", "max_length": 60, "next": "bye"},
            "bye": {"kind": "hangup"},
        },
    }


# --- menus and key presses -------------------------------------------------------------------


async def test_a_caller_presses_1_and_talks_to_an_agent(run: Runner, tmp_path: Path) -> None:
    call = FakeCall(inputs=["1"], agents={AGENT_2: Status.ANSWER})
    result = await run(support_line(), call)
    assert call.log == [
        ("answer",),
        ("say", "Welcome to Acme."),
        ("play", tmp_path / "media" / "menu.wav"),
        ("gather", 1, 5.0, "#"),
        ("dial", (AGENT_1, AGENT_2), 20),
        ("hangup",),
    ]
    assert result.status is Status.IVR_ANSWER and result.answered
    assert result.ended_by == "flow" and result.error is None
    assert result.steps == ("welcome", "menu", "sales", "bye")
    assert result.keypress == "1" and result.digits == {"menu": "1"}
    assert [(leg.number, leg.status) for leg in result.legs] == [
        (AGENT_1, Status.NOANSWER),
        (AGENT_2, Status.ANSWER),
    ]


async def test_a_wrong_key_gets_the_retry_prompt_and_another_try(run: Runner) -> None:
    call = FakeCall(inputs=["7", "2"])
    result = await run(support_line(), call)
    assert call.methods[:7] == ["answer", "say", "play", "gather", "say", "play", "gather"]
    assert call.log[4] == ("say", "Sorry.")
    assert result.keys == ("7", "2") and result.keypress == "7,2"
    assert result.steps == ("welcome", "menu", "voicemail", "bye")


async def test_silence_in_every_try_goes_to_no_input_or_else_invalid(run: Runner) -> None:
    call = FakeCall(inputs=["", "", ""])
    result = await run(support_line(no_input="voicemail"), call)
    assert call.methods.count("gather") == 3  # one try and two retries
    assert result.steps[2] == "voicemail" and result.keys == ()
    result = await run(support_line(retries=0), FakeCall(inputs=[""]))
    assert result.steps == ("welcome", "menu", "bye")


async def test_wrong_keys_in_every_try_go_to_invalid(run: Runner) -> None:
    result = await run(support_line(retries=1, no_input="voicemail"), FakeCall(inputs=["8", "9"]))
    assert result.steps == ("welcome", "menu", "bye") and result.keypress == "8,9"


async def test_gather_keeps_digits_by_step_and_honours_min_digits(run: Runner) -> None:
    flow = {
        "name": "PIN",
        "steps": {
            "pin": {
                "kind": "gather",
                "prompt": {"say": "Your PIN, then hash."},
                "min_digits": 4,
                "max_digits": 6,
                "timeout": 3,
                "retries": 1,
                "next": "thanks",
                "no_input": "bye",
            },
            "thanks": {"kind": "say", "text": "Thank you."},
            "bye": {"kind": "hangup"},
        },
    }
    call = FakeCall(inputs=["12", "4321"])
    result = await run(flow, call)
    assert ("gather", 6, 3.0, "#") in call.log
    assert result.digits == {"pin": "4321"} and result.keys == ("12", "4321")
    assert result.steps == ("pin", "thanks")
    assert call.methods[-1] == "hangup"  # the flow ran out of steps: hang up
    result = await run(flow, FakeCall(inputs=["", "9"]))
    assert result.steps == ("pin", "bye") and result.digits == {"pin": "9"}


# --- hanging up, loops, failures -------------------------------------------------------------


async def test_the_caller_hangs_up_during_a_prompt(run: Runner) -> None:
    call = FakeCall(hang_up_in="play")
    result = await run(support_line(), call)
    assert result.ended_by == "caller" and result.status is Status.IVR_ANSWER
    assert result.steps == ("welcome", "menu")
    assert "hangup" not in call.methods  # nobody to hang up on


async def test_the_caller_hangs_up_while_we_listen(run: Runner) -> None:
    result = await run(support_line(), FakeCall(inputs=["7", HANG_UP]))
    assert result.ended_by == "caller" and result.keys == ("7",)


async def test_a_caller_gone_before_the_answer_reads_ivr(run: Runner) -> None:
    call = FakeCall(hang_up_in="answer")
    result = await run(support_line(), call)
    assert not result.answered and result.status is Status.IVR
    assert result.ended_by == "caller" and result.steps == ("welcome",)


async def test_a_flow_that_hangs_up_without_answering_refuses_the_call(run: Runner) -> None:
    flow = {"name": "closed", "steps": {"bye": {"kind": "hangup"}}}
    call = FakeCall()
    result = await run(flow, call)
    assert call.methods == ["hangup"] and not result.answered and result.ended_by == "flow"


async def test_a_flow_that_loops_for_ever_is_stopped(run: Runner) -> None:
    document = support_line(retries=0)
    document["max_steps"] = 25
    document["steps"]["bye"] = {"kind": "say", "text": "Again.", "next": "menu"}
    call = FakeCall()  # never presses anything
    result = await run(document, call)
    assert result.ended_by == "loop" and len(result.steps) == 25
    assert call.methods[-1] == "hangup"


async def test_a_failing_call_ends_the_flow_with_the_error_and_a_hangup(run: Runner) -> None:
    call = FakeCall(fail_in="say")
    result = await run(support_line(), call)
    assert result.ended_by == "error" and result.error == "RuntimeError: say broke"
    assert call.methods == ["answer", "say", "hangup"]


# --- dialling and recording ------------------------------------------------------------------


def dial_flow(mode: str) -> dict[str, Any]:
    return {
        "name": "agents",
        "steps": {
            "agents": {
                "kind": "dial",
                "numbers": [AGENT_1, AGENT_2, AGENT_3],
                "mode": mode,
                "answered": "done",
                "not_answered": "sorry",
            },
            "done": {"kind": "hangup"},
            "sorry": {"kind": "say", "text": "Nobody is free."},
        },
    }


async def test_sequential_dialling_tries_each_agent_until_one_answers(run: Runner) -> None:
    agents = {AGENT_1: Status.BUSY, AGENT_2: Status.NOANSWER, AGENT_3: Status.ANSWER}
    call = FakeCall(agents=agents)
    result = await run(dial_flow("sequential"), call)
    assert [entry[1] for entry in call.log if entry[0] == "dial"] == [
        (AGENT_1,),
        (AGENT_2,),
        (AGENT_3,),
    ]
    assert [leg.status for leg in result.legs] == [Status.BUSY, Status.NOANSWER, Status.ANSWER]
    assert result.steps == ("agents", "done")
    # The flow answered the caller before ringing anyone.
    assert call.methods[0] == "answer"


async def test_sequential_dialling_stops_at_the_first_answer(run: Runner) -> None:
    call = FakeCall(agents={AGENT_1: Status.ANSWER})
    result = await run(dial_flow("sequential"), call)
    assert call.methods.count("dial") == 1 and len(result.legs) == 1


async def test_parallel_dialling_rings_all_at_once_and_nobody_answers(run: Runner) -> None:
    call = FakeCall(agents={AGENT_1: Status.BUSY})
    result = await run(dial_flow("parallel"), call)
    assert call.methods.count("dial") == 1
    assert [leg.status for leg in result.legs] == [Status.BUSY, Status.NOANSWER, Status.NOANSWER]
    assert result.steps == ("agents", "sorry")


async def test_the_caller_leaving_a_bridged_call_keeps_the_legs(run: Runner) -> None:
    call = FakeCall(agents={AGENT_1: Status.ANSWER}, caller_leaves_while_bridged=True)
    result = await run(dial_flow("sequential"), call)
    assert result.ended_by == "caller" and [leg.answered for leg in result.legs] == [True]
    assert "hangup" not in call.methods


async def test_no_agent_answers_so_the_caller_leaves_a_voicemail(
    run: Runner, tmp_path: Path
) -> None:
    call = FakeCall(inputs=["1"])
    result = await run(support_line(), call)
    path = tmp_path / "recordings" / "VC42" / "voicemail.wav"
    assert ("record", path, 60, "#", None, True) in call.log
    assert result.recording == path and path.is_file()
    assert result.recordings[0].duration == 3.5 and result.recordings[0].step == "voicemail"
    assert result.steps == ("welcome", "menu", "sales", "voicemail", "bye")


async def test_a_voicemail_ended_by_hanging_up_is_kept(run: Runner, tmp_path: Path) -> None:
    call = FakeCall(inputs=["2"], hang_up_in="record")
    result = await run(support_line(), call)
    assert result.ended_by == "caller"
    assert result.recording == tmp_path / "recordings" / "VC42" / "voicemail.wav"
    assert result.recordings[0].duration == 2.0  # read from the file left behind


async def test_a_second_recording_in_one_call_gets_its_own_file(run: Runner) -> None:
    flow = {
        "name": "twice",
        "max_steps": 3,
        "steps": {"note": {"kind": "record", "next": "note"}},
    }
    result = await run(flow, FakeCall())
    assert [r.path.name for r in result.recordings] == ["note.wav", "note-2.wav", "note-3.wav"]


# --- office hours ----------------------------------------------------------------------------

HOURS = {
    "timezone": "Asia/Kolkata",
    "slots": [{"days": "mon-fri", "open": "09:00", "close": "18:00"}],
    "country": "IN",
}


def hours_flow(hours: dict[str, Any] | None, holiday: str | None = "holiday") -> dict[str, Any]:
    step: dict[str, Any] = {"kind": "hours", "open": "open", "closed": "closed"}
    if hours is not None:
        step["hours"] = hours
    if holiday is not None:
        step["holiday"] = holiday
    return {
        "name": "hours",
        "steps": {
            "check": step,
            "open": {"kind": "say", "text": "Hello."},
            "closed": {"kind": "say", "text": "We are closed."},
            "holiday": {"kind": "say", "text": "Happy holidays."},
        },
    }


@pytest.mark.parametrize(
    ("now", "branch"),
    [
        (datetime(2027, 2, 3, 11, 0, tzinfo=KOLKATA), "open"),
        (datetime(2027, 2, 3, 20, 0, tzinfo=KOLKATA), "closed"),
        (datetime(2027, 2, 6, 11, 0, tzinfo=KOLKATA), "closed"),  # Saturday
        (datetime(2027, 1, 26, 5, 30, tzinfo=UTC), "holiday"),  # Republic Day, 11:00 IST
    ],
)
async def test_the_hours_step_branches_on_the_clock(
    run: Runner, now: datetime, branch: str
) -> None:
    run.now = now
    result = await run(hours_flow(HOURS), FakeCall())
    assert result.steps == ("check", branch)


async def test_a_holiday_without_its_own_branch_is_closed(run: Runner) -> None:
    run.now = datetime(2027, 1, 26, 11, 0, tzinfo=KOLKATA)
    result = await run(hours_flow(HOURS, holiday=None), FakeCall())
    assert result.steps == ("check", "closed")


async def test_the_hours_step_falls_back_on_the_numbers_schedule(run: Runner) -> None:
    run.now = datetime(2027, 2, 3, 20, 0, tzinfo=KOLKATA)
    run.number_hours = OfficeHours.model_validate(HOURS)
    assert (await run(hours_flow(None), FakeCall())).steps == ("check", "closed")
    run.number_hours = None  # no schedule anywhere: nothing to be closed by
    assert (await run(hours_flow(None), FakeCall())).steps == ("check", "open")


async def test_the_hours_step_does_not_answer_the_call(run: Runner) -> None:
    run.now = datetime(2027, 2, 3, 20, 0, tzinfo=KOLKATA)
    flow = hours_flow(HOURS)
    flow["steps"]["closed"] = {"kind": "hangup"}
    call = FakeCall()
    result = await run(flow, call)
    assert call.methods == ["hangup"] and not result.answered


# --- webhooks, against a real HTTP server -----------------------------------------------------


def webhook_flow(url: str, **step: Any) -> dict[str, Any]:
    return {
        "name": "crm",
        "steps": {
            "pin": {"kind": "gather", "max_digits": 4, "next": "ask"},
            "ask": {
                "kind": "webhook",
                "url": url,
                "next": "default",
                "on_error": "error",
                "dial_answered": "talked",
                "dial_not_answered": "missed",
                **step,
            },
            "default": {"kind": "say", "text": "default"},
            "error": {"kind": "say", "text": "error"},
            "vip": {"kind": "say", "text": "vip"},
            "talked": {"kind": "hangup"},
            "missed": {"kind": "say", "text": "missed"},
        },
    }


async def webhook_run(
    run: Runner, reply: Callable[[Request], Reply], **step: Any
) -> tuple[FlowResult, FakeCall, list[Request]]:
    async with Receiver(reply) as receiver:
        call = FakeCall(inputs=["1234"], agents={AGENT_1: Status.ANSWER})
        result = await run(webhook_flow(receiver.url(), **step), call)
        return result, call, receiver.requests


async def test_a_webhook_gets_the_calls_data_and_its_json_picks_the_step(run: Runner) -> None:
    result, _call, requests = await webhook_run(
        run, lambda r: Reply(body='{"next": "vip"}', content_type="application/json")
    )
    assert result.steps == ("pin", "ask", "vip")
    (request,) = requests
    assert request.method == "POST" and request.path == "/ivr"
    data = request.json()
    assert data["call_id"] == "VC42" and data["from"] == "+919000000001"
    assert data["to"] == "+918067000001" and data["custom"] == "order-7"
    assert data["step"] == "ask" and data["answered"] is True
    assert data["keypress"] == "1234" and data["digits"] == {"pin": "1234"}
    assert data["time"] == "2027-02-03T11:00:00+05:30"


async def test_a_get_webhook_sends_the_data_as_parameters(run: Runner) -> None:
    result, _call, requests = await webhook_run(run, lambda r: Reply(body="200"), method="GET")
    assert result.steps == ("pin", "ask", "default")  # a bare 200: the step's next
    query = requests[0].query
    assert query["from"] == "+919000000001" and query["digits.pin"] == "1234"
    assert query["keypress"] == "1234" and query["answered"] == "true"
    assert "flow_id" not in query  # None is left out


async def test_the_legacy_reply_dials_the_number_it_names(run: Runner) -> None:
    result, call, _requests = await webhook_run(
        run, lambda r: Reply(body="200|dial=919876543210\n"), dial_ring_timeout=15
    )
    assert ("dial", (AGENT_1,), 15) in call.log
    assert result.steps == ("pin", "ask", "talked")
    assert [(leg.number, leg.status) for leg in result.legs] == [(AGENT_1, Status.ANSWER)]


async def test_a_legacy_dial_nobody_answers_goes_to_dial_not_answered(run: Runner) -> None:
    result, call, _ = await webhook_run(run, lambda r: Reply(body="200|dial=+919876543211"))
    assert result.steps == ("pin", "ask", "missed") and call.methods.count("dial") == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=500, body='{"next": "vip"}'),
        Reply(body='{"next": "nowhere"}', content_type="application/json"),
        Reply(body="{broken"),
        Reply(body="404|dial=919876543210"),
        Reply(body="200|transfer=919876543210"),
        Reply(body="200|dial=12"),
        Reply(body="hello"),
        Reply(body="200", delay=1.0),  # later than the step's timeout
    ],
    ids=["500", "unknown-step", "bad-json", "legacy-404", "legacy-verb", "bad-number",
         "prose", "timeout"],
)  # fmt: skip
async def test_a_failed_webhook_goes_to_on_error(run: Runner, reply: Reply) -> None:
    result, call, requests = await webhook_run(run, lambda r: reply, timeout=0.3)
    assert result.steps == ("pin", "ask", "error")
    assert len(requests) == 1 and "dial" not in call.methods


async def test_a_webhook_that_cannot_be_reached_goes_to_on_error(run: Runner) -> None:
    async with Receiver() as receiver:
        url = receiver.url()
    result = await run(webhook_flow(url), FakeCall(inputs=["1"]))
    assert result.steps == ("pin", "ask", "error")


async def test_on_error_defaults_to_next(run: Runner) -> None:
    result, _call, _ = await webhook_run(run, lambda r: Reply(status=503), on_error=None)
    assert result.steps == ("pin", "ask", "default")
