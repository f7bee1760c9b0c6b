"""Status callbacks delivered from the durable outbox to a local receiver.

    .venv/bin/python bench/callbacks.py [--rates 1000,2000,3000] [--seconds 10]
                                        [--per-destination 32] [--store-url URL]
                                        [--sender child|inline]

The platform's own parts, as ``voiceplane serve`` runs them: the store (SQLite in a
temporary directory, ``synchronous=FULL``: every commit is durable), its group-commit writer
and the callback dispatcher, its HTTP attempts (``voiceplane.callbacks.http1``) made by a
sender process of its own as in ``serve`` (``--sender inline``: in the bench's process).
The receiver is a plain HTTP server in a process of its own (``_callback_receiver.py``)
that answers 204 and notes when each callback arrived.

At each rate, calls end open-loop (one every 1/rate s): each end is the engine's real
report (``LeasedReports``: the completed snapshot and its status callback in one
transaction, handed to the dispatcher once committed) for a call with a ``callback`` URL.
The figure is the callbacks per second delivered, and the time
from each call's end (its ``end_time``) to its callback's arrival at the receiver: p50 and
p99. A rate passes when every callback arrived, exactly once, and the p99 is under 100 ms.

The ceiling to compare with: the same receiver, the same HTTP client (``Http1Client``) and
concurrency, with no store at all (``ceiling`` line): what the HTTP part alone could do here.

Each rate also prints the CPU time spent per callback delivered (user + system, from the
first call's end to the last delivery) by the bench's own process (the engine's reports,
the store writer and the dispatcher), by the sender process and by the receiver, and the
machine's load average when the rate began: on this shared 2-core machine, CPU per
callback stays honest when other work distorts the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _procfs import cpu_seconds, free_port
from sqlalchemy import select

from voiceplane.callbacks.child import ChildSender
from voiceplane.callbacks.dispatcher import Dispatcher, DispatcherSettings
from voiceplane.callbacks.http1 import Http1Client
from voiceplane.calls.reporting import LeasedReports, Report
from voiceplane.calls.status import Status
from voiceplane.runtime import tune_gc
from voiceplane.store import repository
from voiceplane.store.models import Outbox
from voiceplane.store.outbox import OutboxMessage
from voiceplane.store.progress import CallProgress
from voiceplane.store.service import StoreService

HERE = Path(__file__).resolve().parent
P99_LIMIT_MS = 100.0
TARGET_RATE = 2000


class ReceiverProcess:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port(socket.SOCK_STREAM)
        self.out = workdir / f"arrivals-{self.port}.json"
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "_callback_receiver.py"), str(self.port), str(self.out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the receiver did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callbacks"

    def arrivals(self) -> list[tuple[str, float]]:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        data: list[tuple[str, float]] = [tuple(item) for item in json.loads(self.out.read_text())]
        return data


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def completed(call_id: str, ended: datetime) -> CallProgress:
    return CallProgress(
        call_id=call_id,
        state="completed",
        status=Status.ANSWER.value,
        reason=None,
        start_time=ended,
        answer_time=ended,
        end_time=ended,
        duration=1,
        billsec=1,
        attempts=1,
        scheduled_at=None,
    )


async def run_rate(
    rate: int,
    seconds: float,
    per_destination: int,
    workdir: Path,
    store_url: str | None,
    sender: str,
) -> dict[str, float]:
    total = int(rate * seconds)
    data = workdir / f"rate-{rate}"
    data.mkdir()
    receiver = ReceiverProcess(workdir)
    store = StoreService(store_url or f"sqlite:///{data / 'voiceplane.db'}")
    await store.start()
    with store.sessions.begin() as session:
        account, _key = repository.create_account(session, name="bench")
        rows = [
            repository.call_row(
                account_id=account.id,
                service="outbound",
                to_number=f"+9198765{index:05d}",
                bridge="+918047100000",
                callback_url=receiver.url,
                state="answered",
            )
            for index in range(total)
        ]
        repository.insert_calls(session, rows)
    call_ids = [row["id"] for row in rows]
    # The bench's own set-up (a dict per call, thousands) is dropped before the run: the
    # collector's full passes would scan them, which serve does not have.
    del rows
    settings = DispatcherSettings(per_destination=per_destination, max_in_flight=4000)
    child = ChildSender(settings.sender) if sender == "child" else None
    dispatcher = Dispatcher(store.sessions, writer=store.writer, settings=settings, sender=child)
    await dispatcher.start()
    if child is not None:
        await asyncio.wait_for(child.ready(), 60)  # its start-up is not part of the figure
    tune_gc()  # as serve does once it has started
    load = os.getloadavg()[0]
    # As the engine does in serve (voiceplane.calls.reporting.Handover): new callbacks are
    # stored leased to this process and handed straight to the dispatcher.
    leased_reports = LeasedReports(dispatcher.settings.lease_s)

    committed: dict[str, float] = {}
    # Reports not stored yet: counted, not kept (thousands of futures holding messages would
    # be the bench's, not the platform's, and every full pass of the collector scans them).
    waiting = 0
    all_stored = asyncio.Event()

    def hand_over(future: asyncio.Future[tuple[OutboxMessage, ...]]) -> None:
        nonlocal waiting
        waiting -= 1
        if waiting == 0:
            all_stored.set()
        moment = time.time()
        if not future.exception() and future.result():
            for message in future.result():
                committed[message.call_id] = moment
            dispatcher.send_now(future.result())
        else:
            dispatcher.wake()

    ended: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    child_pid = child.pid if child is not None else None
    cpu_before = (
        time.process_time(),
        time.thread_time(),  # the event loop's thread
        cpu_seconds(child_pid) if child_pid else 0.0,
        cpu_seconds(receiver.process.pid),
    )
    batches_before = store.writer.batches
    started = loop.time()
    tick = 0.005
    for index, call_id in enumerate(call_ids):
        due = started + index / rate
        if due - loop.time() > tick:
            await asyncio.sleep(due - loop.time())
        now = datetime.now(UTC)
        ended[call_id] = now.timestamp()
        report = Report(completed(call_id, now), ("completed",))
        future = store.writer.submit_item(leased_reports, report)
        future.add_done_callback(hand_over)
        waiting += 1
    while waiting:
        all_stored.clear()
        await asyncio.wait_for(all_stored.wait(), 120)
    produced_s = loop.time() - started
    deadline = loop.time() + 60
    while dispatcher.delivered < total and loop.time() < deadline:
        await asyncio.sleep(0.05)
    delivered_s = loop.time() - started
    cpu_after = (
        time.process_time(),
        time.thread_time(),
        cpu_seconds(child_pid) if child_pid else 0.0,
        cpu_seconds(receiver.process.pid),
    )
    batches = store.writer.batches - batches_before
    await dispatcher.stop()
    with store.sessions() as session:
        outbox_rows = session.execute(select(Outbox.id, Outbox.call_id))
        call_of = {ident: call for ident, call in outbox_rows}
    await store.stop()
    gc.unfreeze()  # the next rate starts afresh
    arrivals = receiver.arrivals()
    latencies = [
        (arrived - ended[call_of[webhook_id]]) * 1000
        for webhook_id, arrived in arrivals
        if webhook_id in call_of
    ]
    to_commit = [(committed[call] - ended[call]) * 1000 for call in committed]
    distinct = {webhook_id for webhook_id, _ in arrivals}
    per_callback_us = [
        (after - before) / max(1, dispatcher.delivered) * 1e6
        for before, after in zip(cpu_before, cpu_after, strict=True)
    ]
    return {
        "load": load,
        "batches_per_s": batches / delivered_s,
        "cpu_main_us": per_callback_us[0],
        "cpu_loop_us": per_callback_us[1],
        "cpu_sender_us": per_callback_us[2],
        "cpu_receiver_us": per_callback_us[3],
        "rate": rate,
        "calls": total,
        "arrived": len(distinct & call_of.keys()),
        "duplicates": len(arrivals) - len(distinct),
        "produced_s": produced_s,
        "delivered_per_s": len(distinct) / delivered_s if delivered_s else 0.0,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) if latencies else float("nan"),
        # of which: from the end to the commit of the report that carries its callback
        "commit_p50_ms": statistics.median(to_commit) if to_commit else float("nan"),
        "commit_p99_ms": percentile(to_commit, 0.99) if to_commit else float("nan"),
    }


async def ceiling(count: int, per_destination: int, workdir: Path) -> float:
    """The HTTP client alone against the same receiver: the HTTP part's own limit here."""
    receiver = ReceiverProcess(workdir)
    semaphore = asyncio.Semaphore(per_destination)
    client = Http1Client(connect_timeout_s=5)

    async def one(index: int) -> None:
        async with semaphore:
            headers = {"webhook-id": f"c{index}", "content-type": "application/json"}
            await client.request("POST", receiver.url, headers=headers, body=b'{"x": 1}')

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(count)))
    elapsed = time.perf_counter() - started
    await client.close()
    receiver.arrivals()
    return count / elapsed


async def main(args: argparse.Namespace) -> int:
    rates = [int(rate) for rate in args.rates.split(",")]
    best: dict[str, float] | None = None
    with tempfile.TemporaryDirectory(prefix="voiceplane-bench-callbacks-") as tmp:
        workdir = Path(tmp)
        top = await ceiling(10_000, args.per_destination, workdir)
        print(f"ceiling: the HTTP client alone, no store: {top:,.0f} callbacks/s "
              f"({args.per_destination} connections)")  # fmt: skip
        for rate in rates:
            result = await run_rate(
                rate, args.seconds, args.per_destination, workdir, args.store_url, args.sender
            )
            ok = (
                result["arrived"] == result["calls"]
                and result["duplicates"] == 0
                and result["p99_ms"] < P99_LIMIT_MS
            )
            print(
                f"{rate:>5}/s offered: {result['arrived']}/{result['calls']} arrived, "
                f"{result['duplicates']} duplicates, {result['delivered_per_s']:,.0f}/s "
                f"delivered, end->arrival p50 {result['p50_ms']:.1f} ms "
                f"p99 {result['p99_ms']:.1f} ms (stored p50 {result['commit_p50_ms']:.1f} ms, "
                f"p99 {result['commit_p99_ms']:.1f} ms)  {'ok' if ok else 'FAIL'}\n"
                f"       CPU per callback: {result['cpu_main_us']:.0f} us main process "
                f"(of which {result['cpu_loop_us']:.0f} us the event loop: the engine's "
                f"reports, the dispatcher; the rest the store writer's thread), "
                f"{result['cpu_sender_us']:.0f} us "
                f"sender process, {result['cpu_receiver_us']:.0f} us receiver; "
                f"load average {result['load']:.2f} at the start; "
                f"{result['batches_per_s']:.0f} store transactions/s",
                flush=True,
            )
            if ok and (best is None or rate > best["rate"]):
                best = result  # every rate runs: a failing one still shows its figures
    if best is None:
        print(f"no rate passed (target: {TARGET_RATE}/s with p99 < {P99_LIMIT_MS:.0f} ms)")
        return 1
    verdict = "PASS" if best["rate"] >= TARGET_RATE else "FAIL"
    print(
        f"highest passing rate: {best['rate']}/s, end->arrival p50 {best['p50_ms']:.1f} ms, "
        f"p99 {best['p99_ms']:.1f} ms; target {TARGET_RATE}/s with p99 < "
        f"{P99_LIMIT_MS:.0f} ms: {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,2000,3000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--per-destination", type=int, default=32)
    parser.add_argument(
        "--sender",
        choices=("child", "inline"),
        default="child",
        help="where the HTTP attempts are made: a process of their own, as serve does "
        "(child), or the bench's own process (inline)",
    )
    parser.add_argument(
        "--store-url",
        help="an empty database to use instead of a fresh SQLite file (one rate per run: "
        "the calls of a rate stay in it)",
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if os.environ.get("SWITCH"):
        sys.setswitchinterval(float(os.environ["SWITCH"]))
    sys.exit(asyncio.run(main(parser.parse_args())))
