"""Click-to-call: ring the agent (leg 1); once answered, ring the customer (leg 2); bridge.

The audio is connected by third-party call control (RFC 3725): leg 1 is first offered our
own media session (the agent hears silence while the customer rings); leg 2 is offered the
SDP leg 1 answered with; once leg 2 answers, leg 1 is re-INVITEd with leg 2's SDP. From then
on the two parties send RTP to each other and we only keep the signalling. A hangup on
either side ends both.

With a flow as leg 2 (``to=ivr:<id>``, stored as the target ``flow:<id>``) nobody else is
dialled: once the agent answers, the flow runs on leg 1 over our media session
(:mod:`.leg_flow`). The status is then ANSWER (leg 1 answered and the flow ran), with the
flow's keys and recording in the record and the reason saying how the flow ended; an
unanswered leg 1 gets the usual leg-1 status.
"""

from __future__ import annotations

import asyncio
import contextlib

from voiceplane.media.backend import MediaBackend, MediaError, MediaSession
from voiceplane.sip.errors import SipParseError
from voiceplane.sip.outcome import Outcome
from voiceplane.sip.sdp import under_origin
from voiceplane.sip.ua import OutboundCall

from .dialing import Answered, finish_answered, hang_up, ring
from .flag import Flag
from .leg_flow import LegFlow, how, run_and_finish
from .outcome import LegVerdict, click_to_call_status, platform_failure
from .status import Status
from .tracker import BY_OTHER_LEG, BY_PLATFORM, CallTracker, LegTrack, WallClock
from .trunk import Trunk


async def run_click_to_call(
    tracker: CallTracker,
    trunk: Trunk,
    media: MediaBackend,
    *,
    ring_timeout: float,
    max_talk_s: float = 4 * 3600,
    flow: LegFlow | None = None,
) -> None:
    """Carry out a click-to-call and store how it ended; with ``flow``, leg 1 is
    connected to that flow instead of a second call."""
    command = tracker.command
    try:
        session = await media.open_session()
    except MediaError as error:
        verdict = platform_failure(f"media setup failed: {error}")
        tracker.new_leg(1, command.from_numbers[0]).fail(verdict)
        await tracker.complete(click_to_call_status(verdict, None), verdict.explanation)
        return
    try:
        our_offer = session.offer()
        if flow is not None:
            status_reason = await _to_flow(tracker, trunk, session, our_offer, ring_timeout, flow)
        else:
            status_reason = await _bridge(tracker, trunk, our_offer, ring_timeout, max_talk_s)
    finally:
        with contextlib.suppress(Exception):
            await session.close()
    await tracker.complete(*status_reason)


async def _ring_agent(
    tracker: CallTracker, trunk: Trunk, our_offer: bytes, ring_timeout: float
) -> Answered | tuple[Status, str]:
    """Ring leg 1 with our media offer: the agent who answered, else how the call ends."""
    command = tracker.command
    first = await ring(
        tracker, trunk, leg=1, numbers=command.from_numbers, caller_id=command.bridge,
        sdp=our_offer, ring_timeout=ring_timeout, stop=tracker.cancel_requested,
        stopped_by=lambda: tracker.cancelled_by,
    )  # fmt: skip
    if isinstance(first, Answered):
        return first
    return click_to_call_status(first.verdict, None), f"leg 1: {first.verdict.explanation}"


async def _bridge(
    tracker: CallTracker, trunk: Trunk, our_offer: bytes, ring_timeout: float, max_talk_s: float
) -> tuple[Status, str]:
    command = tracker.command
    cancel = tracker.cancel_requested
    to_wall = trunk.wall_clock()
    first = await _ring_agent(tracker, trunk, our_offer, ring_timeout)
    if not isinstance(first, Answered):
        return first
    agent, agent_track = first.call, first.track
    # Stored now, not with leg 2's first ring: after a crash in between, the record must
    # show that the agent had answered (FAILED_LEG2, not FAILED_LEG1).
    tracker.save()

    # Leg 2 rings until it answers, or until the agent hangs up or the API cancels.
    stop = Flag()

    def stop_ringing(_: object) -> None:
        stop.set()

    agent_gone = agent.ended()
    agent_gone.add_done_callback(stop_ringing)
    cancel.future.add_done_callback(stop_ringing)
    try:
        second = await ring(
            tracker, trunk, leg=2, numbers=command.to_numbers, caller_id=command.bridge,
            sdp=agent.remote_sdp, ring_timeout=ring_timeout, stop=stop,
            stopped_by=lambda: BY_OTHER_LEG if agent_gone.done() else tracker.cancelled_by,
        )  # fmt: skip
    finally:
        agent_gone.remove_done_callback(stop_ringing)
        cancel.future.remove_done_callback(stop_ringing)
    if not isinstance(second, Answered):
        agent_outcome = await hang_up(agent)
        by = None if agent_gone.done() and not cancel.is_set() else BY_PLATFORM
        if cancel.is_set():
            by = tracker.cancelled_by
        agent_verdict = finish_answered(agent_track, agent_outcome, by=by, to_wall=to_wall)
        status = click_to_call_status(
            agent_verdict, second.verdict,
            leg1_hung_up_while_leg2_rang=second.gave_up and agent_gone.done(),
        )  # fmt: skip
        return status, f"leg 2: {second.verdict.explanation}"

    customer, customer_track = second.call, second.track
    connected, agent_left = await _connect(agent, customer)
    if connected is not None:
        tracker.set_state("answered")
        ending = await _until_either_ends(agent, customer, cancel, max_talk_s)
    else:
        ending = agent if agent_left else None
    verdicts = await _end_both(
        (agent, agent_track), (customer, customer_track), ending, cancel, to_wall,
        tracker.cancelled_by,
    )
    if agent_left:
        # The agent hung up as the customer answered, before the two were connected: the
        # originator gave up, as when the customer's 200 crosses our CANCEL.
        status = click_to_call_status(verdicts[0], verdicts[1], leg1_hung_up_while_leg2_rang=True)
        return status, "leg 1 hung up as leg 2 answered"
    if connected is None:
        failure = platform_failure("the agent's phone refused the customer's media")
        return click_to_call_status(verdicts[0], failure), failure.explanation
    return click_to_call_status(verdicts[0], verdicts[1]), "both legs answered"


async def _to_flow(
    tracker: CallTracker,
    trunk: Trunk,
    session: MediaSession,
    our_offer: bytes,
    ring_timeout: float,
    flow: LegFlow,
) -> tuple[Status, str]:
    """Ring the agent (leg 1) and run the flow on that leg once it answers."""
    to_wall = trunk.wall_clock()
    first = await _ring_agent(tracker, trunk, our_offer, ring_timeout)
    if not isinstance(first, Answered):
        return first
    tracker.set_state("answered")
    try:
        session.accept_answer(first.call.remote_sdp)
    except MediaError as error:
        outcome = await hang_up(first.call)
        agent_verdict = finish_answered(first.track, outcome, by=BY_PLATFORM, to_wall=to_wall)
        failure = platform_failure(f"media setup failed: {error}")
        return click_to_call_status(agent_verdict, failure), failure.explanation
    _verdict, result = await run_and_finish(
        flow, first, session, media_sdp=our_offer, tracker=tracker, trunk=trunk,
        to_wall=to_wall,
    )  # fmt: skip
    return Status.ANSWER, f"leg 1 connected to flow {flow.flow_id}; {how(result)}"


async def _connect(agent: OutboundCall, customer: OutboundCall) -> tuple[bytes | None, bool]:
    """Re-INVITE the agent with the customer's SDP: the agent's new answer (None when it
    was refused or not sent), and whether the agent had hung up by then.

    The agent may hang up while the customer's 200 is on its way (its BYE then arrived
    first) or while the re-INVITE is (the BYE crosses it, and the re-INVITE gets 481: the
    dialog is gone, RFC 5057); neither is the agent refusing the customer's media.
    """
    if agent.outcome is not None:
        return None, True
    try:
        offer = under_origin(customer.remote_sdp, agent.leg.local_sdp)
    except SipParseError:  # the customer's answer was not usable SDP
        return None, False
    status, answer = await agent.reinvite(offer)
    if 200 <= status < 300:
        return answer, False
    return None, agent.outcome is not None or status == 481


async def _until_either_ends(
    agent: OutboundCall, customer: OutboundCall, cancel: Flag, limit_s: float
) -> OutboundCall | None:
    """The leg that hung up first; None when the API cancelled the connected call, or when
    it lasted ``limit_s`` (a far end that never sends BYE must not hold a call forever)."""
    ends = {agent.ended(): agent, customer.ended(): customer}
    waits: list[asyncio.Future[Outcome] | asyncio.Future[None]] = [cancel.future, *ends]
    await asyncio.wait(waits, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    for future, call in ends.items():
        if future.done():
            return call
    return None


async def _end_both(
    agent: tuple[OutboundCall, LegTrack],
    customer: tuple[OutboundCall, LegTrack],
    first_gone: OutboundCall | None,
    cancel: Flag,
    to_wall: WallClock,
    cancelled_by: str,
) -> tuple[LegVerdict, LegVerdict]:
    verdicts = []
    for call, track in (agent, customer):
        if first_gone is None:
            by: str | None = cancelled_by if cancel.is_set() else BY_PLATFORM
        elif call is first_gone:
            by = None  # its own BYE: the outcome says the callee hung up
        else:
            by = BY_OTHER_LEG
        outcome = await hang_up(call)
        verdicts.append(finish_answered(track, outcome, by=by, to_wall=to_wall))
    return verdicts[0], verdicts[1]
