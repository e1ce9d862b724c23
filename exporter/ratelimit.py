"""Client-side pacing to Graph's documented limits for identity and access reports.

Microsoft documents 5 requests per 10 seconds per app per tenant, and 122 requests per 10
seconds per app across all tenants, for these reports. One multi-tenant app registration that
serves many tenants must pace itself rather than collect 429s, so every Graph request (each
retry, each page) first reserves a slot in both sliding windows.

Reservations are first come, first served: each window keeps the times of its last ``limit``
reservations, and a new one goes no earlier than the oldest of them plus the window, and no
earlier than the newest. So no span of ``window`` seconds ever holds more than ``limit`` requests.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from exporter.config import RateLimit


class RateLimitedError(Exception):
    """The next free slot comes after the caller's deadline."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"client-side rate limit: next request slot in {wait:.1f}s")
        self.wait = wait


class SlidingWindow:
    """At most ``limit`` reservations in any ``window`` seconds, handed out in order."""

    __slots__ = ("_times", "limit", "window")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit.requests
        self.window = limit.per_seconds
        self._times: deque[float] = deque(maxlen=limit.requests)

    def earliest(self, not_before: float) -> float:
        """The earliest time at or after ``not_before`` that a reservation could take."""
        if not self._times:
            return not_before
        earliest = max(not_before, self._times[-1])
        if len(self._times) == self.limit:
            earliest = max(earliest, self._times[0] + self.window)
        return earliest

    def commit(self, when: float) -> None:
        """Record a reservation at ``when`` (never earlier than :meth:`earliest` said)."""
        self._times.append(when)

    def postpone_last(self, when: float) -> None:
        """The newest reservation was used later than reserved: record when it really was."""
        if self._times and when > self._times[-1]:
            self._times[-1] = when


class GraphRateLimiter:
    """Per (app, tenant) and per app sliding windows for Graph requests.

    A request first waits for its tenant's window, then for its app's. The app window only
    ever sees reservations made in real time order, so a tenant held back by its own limit
    never holds back the other tenants of the same app.
    """

    def __init__(
        self,
        per_app_per_tenant: RateLimit,
        per_app: RateLimit,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.per_app_per_tenant = per_app_per_tenant
        self.per_app = per_app
        self._clock = clock
        self._sleep = sleep
        self._tenant_windows: dict[tuple[str, str], SlidingWindow] = {}
        self._app_windows: dict[str, SlidingWindow] = {}

    def _windows(self, client_id: str, tenant_id: str) -> tuple[SlidingWindow, SlidingWindow]:
        key = (client_id.lower(), tenant_id.lower())
        tenant_window = self._tenant_windows.get(key)
        if tenant_window is None:
            tenant_window = self._tenant_windows[key] = SlidingWindow(self.per_app_per_tenant)
        app_window = self._app_windows.get(key[0])
        if app_window is None:
            app_window = self._app_windows[key[0]] = SlidingWindow(self.per_app)
        return tenant_window, app_window

    async def _take(self, window: SlidingWindow, deadline: float | None) -> float:
        now = self._clock()
        when = window.earliest(now)
        if deadline is not None and when > deadline:
            raise RateLimitedError(when - now)
        window.commit(when)  # no await between earliest() and commit(): atomic on the loop
        if when > now:
            await self._sleep(when - now)
        return when

    async def acquire(self, client_id: str, tenant_id: str, deadline: float | None = None) -> float:
        """Wait until a request may be sent; return how long that took.

        Raises :class:`RateLimitedError` if the slot would come after ``deadline``.
        """
        started = self._clock()
        tenant_window, app_window = self._windows(client_id, tenant_id)
        await self._take(tenant_window, deadline)
        sent_at = await self._take(app_window, deadline)
        tenant_window.postpone_last(sent_at)
        return max(0.0, self._clock() - started)

    def forget(self, keep: set[tuple[str, str]]) -> None:
        """Drop the windows of (client_id, tenant_id) pairs no longer configured."""
        keep_lower = {(c.lower(), t.lower()) for c, t in keep}
        for key in list(self._tenant_windows):
            if key not in keep_lower:
                del self._tenant_windows[key]
        apps = {c for c, _ in keep_lower}
        for app in list(self._app_windows):
            if app not in apps:
                del self._app_windows[app]
