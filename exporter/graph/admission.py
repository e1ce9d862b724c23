"""When a poll may start: while the transport has room for its requests.

A poll that starts holds some 16 KB until it ends (its tasks, frames, requests being built).
When many polls are due at once (jobs without jitter, a start, a reload) and the transport is
what they wait for, they would all start and queue at its semaphore, each holding its bytes:
1,000 tenants polled together left some 13 MB more behind them than 50 at a time did, and
the pages freed by such a wave are not given back. So a poll waits here, holding almost
nothing, while the requests queued for a connection and the polls admitted but not yet at
their first request are ``room`` or more together.

Polls waiting on Graph's pacing (their tenant's or app's budget) do not count: a poll's
ticket is spent when its first request goes to be paced, so one app's paced tenants never
keep another app's tenants from starting. Admission is first come, first served.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class Ticket:
    """One admitted poll's claim on the room, given back when its first request is on its
    way (:meth:`spend`, once; later calls do nothing) or when the poll ends."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def spend(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission.release()


class Admission:
    """At most ``room`` requests queued for a connection and polls admitted but not yet
    at their first request, together; polls past that wait, first come, first served."""

    def __init__(self, room: int) -> None:
        self.room = max(1, room)
        self.admitted = 0  # polls admitted whose ticket is not spent
        self.queued = 0  # requests waiting for a connection
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._wake_due = False

    def _full(self) -> bool:
        return self.admitted + self.queued >= self.room

    @contextlib.asynccontextmanager
    async def ticket(self) -> AsyncIterator[Ticket]:
        """Wait for room; the ticket is spent by the poll's first request, or at the end."""
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
            ticket.spend()

    def release(self) -> None:
        """A ticket was spent: room for the next poll, once the step that made the room is
        over (a poll spends its ticket on the way to the transport's queue, which counts it
        again in the same step)."""
        self.admitted -= 1
        self._wake_soon()

    def enqueued(self) -> None:
        """A request waits for a connection."""
        self.queued += 1

    def dequeued(self) -> None:
        """A request queued for a connection got it (or gave up)."""
        self.queued -= 1
        self._wake_soon()

    def _wake_soon(self) -> None:
        if self._waiters and not self._wake_due:
            self._wake_due = True
            asyncio.get_running_loop().call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_due = False
        while self._waiters and not self._full():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.admitted += 1
                waiter.set_result(None)
