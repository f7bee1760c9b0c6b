"""``voiceplane sandbox``: the operator alone, in the foreground, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

from voiceplane.config import SandboxSettings
from voiceplane.runtime import tune_gc
from voiceplane.sip.timers import TimerValues

from .operator import SandboxOperator

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_sandbox(
    settings: SandboxSettings,
    *,
    timer_values: TimerValues | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a sandbox operator until SIGINT/SIGTERM, or until ``stop`` is set.

    Raises ``OSError`` when it cannot listen (the port is taken, the host is not local).
    """
    stop = stop if stop is not None else asyncio.Event()
    operator = SandboxOperator(settings, timer_values)
    with _stop_on_signals(stop):
        await operator.start()
        tune_gc()
        try:
            log.info("%s", describe(settings))
            await stop.wait()
        finally:
            await operator.stop()
    log.info("sandbox operator stopped")


def describe(settings: SandboxSettings) -> str:
    """The dial plan in one line, for the newcomer reading the log."""
    hold = f"hung up after {settings.hold_s:g} s" if settings.hold_s > 0 else "never hung up"
    rules = f"; {len(settings.rules)} rule(s) from the settings first" if settings.rules else ""
    return (
        f"dial any number: ...400 to ...699 ring {settings.reject_after_ms} ms then get that "
        f"code, ...000 rings until you give up, others are answered after "
        f"{settings.answer_after_ms} ms and {hold}{rules}"
    )


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, _on_signal, sig, stop)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or no signals here: ``stop`` still works
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("%s: stopping the sandbox operator", sig.name)
    stop.set()
