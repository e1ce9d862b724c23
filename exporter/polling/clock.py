"""The scheduler's heartbeat and its repair when the wall clock steps: :class:`ClockWatch`.

APScheduler 3.x's triggers run on wall time: stepped back an hour, every job would wait an
hour. The watch ticks on the event loop's monotonic clock; each tick is the heartbeat
``/healthz`` reads (a stuck loop stops it), and a tick that finds wall time moved apart from
monotonic time by more than :data:`CLOCK_STEP_SECONDS` calls the repair (the scheduler
reschedules every job from now).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger("exporter.scheduler")

HEARTBEAT_SECONDS = 5.0
# Wall time moving this far apart from monotonic time between two heartbeats is a step.
CLOCK_STEP_SECONDS = 2.0


class ClockWatch:
    """A heartbeat every :data:`HEARTBEAT_SECONDS`, and ``on_step`` when the wall clock steps."""

    def __init__(self, on_step: Callable[[], None]) -> None:
        self._on_step = on_step
        self.heartbeat = time.monotonic()  # the last tick, monotonic seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start ticking; call inside the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def stop(self) -> None:
        """Stop ticking (nothing if it never started)."""
        if self._task is not None:
            self._task.cancel()

    async def _tick(self) -> None:
        offset = time.time() - time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self.heartbeat = time.monotonic()
            now_offset = time.time() - time.monotonic()
            if abs(now_offset - offset) > CLOCK_STEP_SECONDS:
                log.warning(
                    "the wall clock stepped: every tenant's polls are rescheduled from now",
                    extra={"step_seconds": round(now_offset - offset, 1)},
                )
                self._on_step()
            offset = now_offset
