"""A one-way flag that ``asyncio.wait`` can wait on without a task.

``asyncio.Event`` can only be waited on by a coroutine, so racing one against other futures
(a call's answer, its hangup) took a task per race: ``ensure_future(event.wait())``,
cancelled afterwards. A click-to-call ran four of them; each cost a task's steps, its
cancellation and a CancelledError with a traceback. A ``Flag`` is set once and for all, and
its ``future`` goes straight into ``asyncio.wait``.
"""

from __future__ import annotations

import asyncio


class Flag:
    """Set once, never cleared; the ``asyncio.Event`` calls the call flows use, plus
    ``future``."""

    __slots__ = ("_set", "_future")

    def __init__(self) -> None:
        self._set = False
        self._future: asyncio.Future[None] | None = None  # made when first asked for

    def set(self) -> None:
        self._set = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def is_set(self) -> bool:
        return self._set

    @property
    def future(self) -> asyncio.Future[None]:
        """Done once the flag is set. Shared: wait on it with ``asyncio.wait`` (which never
        cancels what it waits on), not by awaiting it in a task that may be cancelled."""
        if self._future is None or self._future.cancelled():  # awaited and cancelled
            self._future = asyncio.get_running_loop().create_future()
            if self._set:
                self._future.set_result(None)
        return self._future

    async def wait(self) -> None:
        if not self._set:
            await asyncio.shield(self.future)
