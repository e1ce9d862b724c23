"""Client-side pacing to Graph's documented limits for identity and access reports.

Microsoft documents 5 requests per 10 seconds per app per tenant, and 122 requests per 10
seconds per app across all tenants, for these reports. One multi-tenant app registration that
serves many tenants must pace itself rather than collect 429s, so every Graph request (each
retry, each page) first takes a slot in both sliding windows.

Graph counts requests when they arrive, which is some time after we decide to send them. So a
request holds its slot from the moment it is let through until its answer is complete, and
only then is it dated, at its completion time; a new request may start only while fewer than
``limit`` requests are in flight or completed within the last ``window`` seconds. Whatever the
network delays, no span of ``window`` seconds can then see more than ``limit`` arrivals.
Waiters are served first come, first served.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from exporter.config.model import RateLimit


class RateLimitedError(Exception):
    """No slot came free before the caller's deadline."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"client-side rate limit: no request slot within {waited:.1f}s")
        self.waited = waited


class SlidingWindow:
    """At most ``limit`` requests in flight or completed within the last ``window`` seconds."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit.requests
        self.window = limit.per_seconds
        self._clock = clock
        self._completed: list[float] = []
        self._in_flight = 0
        # Made at the first wait, dropped when empty: most windows never wait, and an empty
        # deque is some 600 bytes (a window per tenant and app).
        self._waiters: deque[asyncio.Future[None]] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def _used(self, now: float) -> int:
        horizon = now - self.window
        while self._completed and self._completed[0] <= horizon:
            self._completed.pop(0)
        return len(self._completed) + self._in_flight

    def _dispatch(self) -> None:
        """Let waiters through while there is room; else wake up when the oldest expires."""
        now = self._clock()
        while self._waiters and self._used(now) < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()  # cancelled waiters
        if not self._waiters:
            self._waiters = None
        if self._waiters and self._completed and self._timer is None:
            delay = max(0.0, self._completed[0] + self.window - now)
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    async def enter(self, units: int = 1) -> None:
        """Wait for a slot (first come, first served); every request is one unit here."""
        if not self._waiters and self._used(self._clock()) < self.limit:
            self._in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = deque()
        self._waiters.append(waiter)
        self._dispatch()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave(units, sent=False)  # granted just as we gave up: hand it back
            raise

    def leave(self, units: int = 1, sent: bool = True) -> None:
        """Release a slot; a request that was sent is dated now, one that was not is forgotten."""
        self._in_flight -= 1
        if sent:
            self._completed.append(self._clock())
        self._dispatch()

    @property
    def idle(self) -> bool:
        """True when nothing is in flight or waiting (the window may be dropped)."""
        return not self._in_flight and not self._waiters

    def spent(self, now: float) -> bool:
        """True when the window is as a new one would be: nothing in flight or waiting, and
        no request completed within its last ``window`` seconds."""
        return self.idle and self._timer is None and self._used(now) == 0


def drop_idle(windows: dict[Any, Any], kept: set[Any]) -> None:
    """Drop the idle windows whose key is not in ``kept`` (busy ones go at a later call)."""
    for key, window in list(windows.items()):
        if key not in kept and window.idle:
            del windows[key]


def drop_spent(windows: dict[Any, Any], now: float) -> None:
    """Drop the windows that are as good as new (:meth:`SlidingWindow.spent`): the next
    request makes the same one again. Between polls that is nearly every tenant's, and a
    window's queues are most of its bytes."""
    for key, window in list(windows.items()):
        if window.spent(now):
            del windows[key]


class Window(Protocol):
    """A budget a request takes ``units`` of and gives back (sent, or not)."""

    async def enter(self, units: int = 1) -> None: ...

    def leave(self, units: int = 1, sent: bool = True) -> None: ...


@asynccontextmanager
async def hold(
    windows: tuple[Window, Window],
    units: int,
    deadline: float | None,
    clock: Callable[[], float],
) -> AsyncIterator[float]:
    """Hold ``units`` of both windows (the narrower first) for the body of the ``async with``;
    yields the seconds waited. :class:`RateLimitedError` when ``deadline`` (monotonic) comes
    first; a window entered before the other refused is handed back unsent."""
    first, second = windows
    started = clock()
    timeout = None if deadline is None else max(0.0, deadline - started)
    try:
        async with asyncio.timeout(timeout):
            await first.enter(units)
            try:
                await second.enter(units)
            except BaseException:
                first.leave(units, sent=False)
                raise
    except TimeoutError:
        raise RateLimitedError(clock() - started) from None
    try:
        yield clock() - started
    finally:
        second.leave(units)
        first.leave(units)


class GraphRateLimiter:
    """Per (app, tenant) and per app sliding windows for Graph requests.

    A request first waits for its tenant's window, then for its app's, so a tenant held back by
    its own limit never holds back the other tenants of the same app.
    """

    def __init__(
        self,
        per_app_per_tenant: RateLimit,
        per_app: RateLimit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_app_per_tenant = per_app_per_tenant
        self.per_app = per_app
        self._clock = clock
        self._tenant_windows: dict[tuple[str, str], SlidingWindow] = {}
        self._app_windows: dict[str, SlidingWindow] = {}

    def _windows(self, client_id: str, tenant_id: str) -> tuple[SlidingWindow, SlidingWindow]:
        key = (client_id.lower(), tenant_id.lower())
        tenant_window = self._tenant_windows.get(key)
        if tenant_window is None:
            tenant_window = SlidingWindow(self.per_app_per_tenant, self._clock)
            self._tenant_windows[key] = tenant_window
        app_window = self._app_windows.get(key[0])
        if app_window is None:
            app_window = self._app_windows[key[0]] = SlidingWindow(self.per_app, self._clock)
        return tenant_window, app_window

    @asynccontextmanager
    async def slot(
        self, client_id: str, tenant_id: str, deadline: float | None = None
    ) -> AsyncIterator[float]:
        """Hold a request slot for the body of the ``async with``; yields the seconds waited.

        Raises :class:`RateLimitedError` if no slot comes free before ``deadline``
        (a ``time.monotonic()`` value).
        """
        tenant_window, app_window = self._windows(client_id, tenant_id)
        async with hold((tenant_window, app_window), 1, deadline, self._clock) as waited:
            yield waited

    def forget(self, keep: set[tuple[str, str]]) -> None:
        """Drop idle windows of (client_id, tenant_id) pairs no longer configured."""
        keep_lower = {(c.lower(), t.lower()) for c, t in keep}
        drop_idle(self._tenant_windows, keep_lower)
        drop_idle(self._app_windows, {c for c, _ in keep_lower})

    def sweep(self) -> None:
        """Drop the windows as good as new (:func:`drop_spent`)."""
        now = self._clock()
        drop_spent(self._tenant_windows, now)
        drop_spent(self._app_windows, now)

    def tracked(self) -> int:
        """How many windows are held."""
        return len(self._tenant_windows) + len(self._app_windows)


# Graph's "identity protection and conditional access" limit: 1 request per second per tenant,
# for all apps together (its 429 carries no Retry-After: the client backs off on its own).
CONDITIONAL_ACCESS_LIMIT = RateLimit(1, 1.0)


class _Open:
    """A window that never waits (the other half of a one-window hold)."""

    async def enter(self, units: int = 1) -> None:
        return None

    def leave(self, units: int = 1, sent: bool = True) -> None:
        return None


class TenantLimiter:
    """One sliding window per tenant, whatever the app: Conditional Access policy reads."""

    def __init__(
        self,
        limit: RateLimit = CONDITIONAL_ACCESS_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._windows: dict[str, SlidingWindow] = {}
        self._open = _Open()

    @asynccontextmanager
    async def slot(self, tenant_id: str, deadline: float | None = None) -> AsyncIterator[float]:
        """Hold the tenant's slot for the body; yields the seconds waited (see :func:`hold`)."""
        key = tenant_id.lower()
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = SlidingWindow(self.limit, self._clock)
        async with hold((window, self._open), 1, deadline, self._clock) as waited:
            yield waited

    def forget(self, keep: set[str]) -> None:
        """Drop idle windows of tenants no longer configured."""
        drop_idle(self._windows, {tenant.lower() for tenant in keep})

    def sweep(self) -> None:
        """Drop the windows as good as new (:func:`drop_spent`)."""
        drop_spent(self._windows, self._clock())
