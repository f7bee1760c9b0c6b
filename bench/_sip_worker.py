"""One voiceplane SIP process for bench/sip_cps.py: a UAS that answers every call, or a UAC
that places calls at a fixed rate. It prints one JSON line of results when it is done."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from voiceplane.sip.addressing import Address
from voiceplane.sip.outcome import EndCause
from voiceplane.sip.ua import InboundCall, UserAgent

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


async def run_uas(port: int, transport: str, seconds: float) -> dict[str, float]:
    answered = 0

    def on_call(call: InboundCall) -> None:
        nonlocal answered
        answered += 1
        call.answer(SDP)

    ua = UserAgent(listen=[(transport, "127.0.0.1", port)], on_call=on_call)
    await ua.start()
    print("ready", flush=True)
    # The controller tells us when the SIPp run is over by closing stdin.
    loop = asyncio.get_running_loop()
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    await loop.run_in_executor(None, sys.stdin.read)
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    assert ua.endpoint is not None
    result = {"answered": answered, "retransmissions": ua.endpoint.retransmissions,
              "cpu": cpu, "wall": wall}  # fmt: skip
    await ua.stop()
    return result


async def run_uac(target: int, transport: str, rate: float, seconds: float) -> dict[str, float]:
    ua = UserAgent(listen=[(transport, "127.0.0.1", 0)])
    await ua.start()
    dest = Address("127.0.0.1", target, transport)
    total = int(rate * seconds)
    ok = failed = 0
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def one_call() -> None:
        nonlocal ok, failed
        call = ua.invite(to_uri=f"sip:bench@127.0.0.1:{target}", from_uri="sip:vp@127.0.0.1",
                         destination=dest, sdp=SDP, ring_timeout=30)  # fmt: skip
        if await call.answered():
            call.hangup()
        outcome = await call.ended()
        if outcome.cause is EndCause.LOCAL_HANGUP and outcome.status == 200:
            ok += 1
        else:
            failed += 1
        if ok + failed == total:
            done.set()

    tasks = set()
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    start = loop.time()
    tick = 0.005
    sent = 0
    while sent < total:
        due = min(total, int((loop.time() - start) * rate) + 1)
        while sent < due:
            task = loop.create_task(one_call())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(tick)
    send_wall = time.monotonic() - wall0
    try:
        await asyncio.wait_for(done.wait(), timeout=40)
    except TimeoutError:
        pass
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    assert ua.endpoint is not None
    result = {"ok": ok, "failed": failed + (total - ok - failed), "offered": total,
              "send_seconds": send_wall, "retransmissions": ua.endpoint.retransmissions,
              "cpu": cpu, "wall": wall}  # fmt: skip
    print(json.dumps(result), flush=True)
    # Keep the connections open until SIPp has finished its last call's timewait: closing a
    # TCP connection under it makes SIPp count that call as failed (FailedTcpClosed).
    await loop.run_in_executor(None, sys.stdin.read)
    await ua.stop()
    return {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["uas", "uac"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--transport", default="udp")
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        if args.role == "uas":
            result = runner.run(run_uas(args.port, args.transport, args.seconds))
            print(json.dumps(result), flush=True)
        else:
            runner.run(run_uac(args.port, args.transport, args.rate, args.seconds))


if __name__ == "__main__":
    main()
