"""When a poll may start: while fewer than ``room`` polls are under way.

A poll that has started holds some 16 KB, an enforcement poll some 35 KB (its tasks, frames,
the pages being read, the look-ups being resolved) until it ends. When many polls are due at
once (jobs without jitter, a start, a reload) they would all start and interleave, each holding
its bytes, and the pages such a wave touched are not given back: 1,000 tenants polled together
left some 13 MB more behind them than 50 at a time did. So a poll waits here, holding some
5 KB, while ``room`` polls are under way (the runtime gives room for what can be busy at once:
``concurrency`` requests at Graph and a thread per token being fetched).

A poll waiting on the reports' or the directory's budget (which the app's other tenants may
hold) or sleeping before a retry is not under way: its ticket is away meanwhile
(:meth:`Ticket.away`) and taken up again, without waiting for room, when it goes on. So one
app's paced tenants never keep another app's tenants from starting, and a poll once started is
never held back by admission. Admission is first come, first served.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator


class Ticket:
    """One admitted poll's place in the room, held until the poll ends except while it is
    :meth:`away` (waiting on the reports' or the directory's budget, or before a retry).

    The collectors of a poll run side by side and share its ticket: it is away while any of
    them waits, which lets a poll count for nothing while one collector waits on pacing and
    another reads (lenient, never a poll held back).
    """

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission
        self._away = 0  # how many of the poll's waits are under way

    @contextlib.contextmanager
    def away(self) -> Iterator[None]:
        """The poll waits on what may be other tenants' (a shared budget) or on time (a retry's
        delay): not under way meanwhile."""
        admission = self._admission
        if admission is None:
            yield
            return
        if self._away == 0:
            admission.release()
        self._away += 1
        try:
            yield
        finally:
            self._away -= 1
            if self._away == 0 and self._admission is not None:
                admission.readmit()

    def close(self) -> None:
        """The poll ended: its place goes to the next (once; later calls do nothing)."""
        admission, self._admission = self._admission, None
        if admission is not None and self._away == 0:
            admission.release()


class Admission:
    """At most ``room`` polls under way together (None: any number); polls past that wait,
    first come, first served."""

    def __init__(self, room: int | None) -> None:
        self.room = None if room is None else max(1, room)
        self.admitted = 0  # polls under way (their ticket held, not away)
        self._waiters: deque[asyncio.Future[None]] = deque()

    @contextlib.asynccontextmanager
    async def ticket(self) -> AsyncIterator[Ticket]:
        """Wait for room; the ticket is held until the poll ends."""
        if self._waiters or self._full():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.release()  # admitted just as the poll gave up: hand it back
                raise
        else:
            self.admitted += 1
        ticket = Ticket(self)
        try:
            yield ticket
        finally:
            ticket.close()

    def release(self) -> None:
        """A poll ended or went away: room for the next, once the step that made the room is
        over (a poll away for a pacing slot that is free at once is back in the same step)."""
        self.admitted -= 1
        if self._waiters:
            asyncio.get_running_loop().call_soon(self._wake)

    def _full(self) -> bool:
        return self.room is not None and self.admitted >= self.room

    def readmit(self) -> None:
        """A poll that was away goes on: it counts again, without waiting for room."""
        self.admitted += 1

    def _wake(self) -> None:
        while self._waiters and not self._full():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.admitted += 1
                waiter.set_result(None)
