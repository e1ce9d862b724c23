"""Client-side pacing to Graph's identity and access *service* limits (users, groups, directory
objects, role management, policies): resource units, not requests.

Microsoft counts resource units per app and tenant — 3,500, 5,000 or 8,000 per 10 seconds for
a tenant of under 50, up to 500, or over 500 users — and 150,000 per 20 seconds per app across
tenants; each request costs what Microsoft's table says (:func:`request_cost`). Until a
tenant's size is known (its first report), the smallest budget is assumed. When Graph answers
``x-ms-throttle-limit-percentage`` (sent from 0.8 of a limit on), that app and tenant is paced
to half its budget for one window. Replicas sharing an app split the per-app budget (``share``).
These requests never spend the identity and access *reports* budget
(:mod:`exporter.graph.pacing`), and report pages never spend this one.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import MappingProxyType

from exporter.graph.pacing import drop_idle, drop_spent, hold

WINDOW_SECONDS = 10.0
# (most users, resource units per 10 s) per app and tenant, by tenant size.
TENANT_BUDGETS = ((49, 3_500), (500, 5_000), (None, 8_000))
APP_BUDGET, APP_WINDOW_SECONDS = 150_000, 20.0
SLOW_DOWN_AT = 0.8  # x-ms-throttle-limit-percentage from which Graph says we are close
SLOW_DOWN_FACTOR = 0.5
# Base costs from Microsoft's table (GET); any other identity path costs 1.
_BASE_COSTS = MappingProxyType(
    {
        "applications": 2,
        "contracts": 3,
        "groups/*/members": 3,
        "groups/*/transitiveMembers": 5,
        "oauth2PermissionGrants": 2,
        "subscribedSkus": 3,
        "users": 2,
    }
)
_POST_COSTS = MappingProxyType({"directoryObjects/getByIds": 5, "getObjectsById": 5})


def request_cost(method: str, url: str) -> int:
    """Resource units of one request, by Microsoft's table: the path's base cost, ``$select``
    -1, ``$expand`` +1, ``$top`` under 20 -1, never under 1 (``getByIds`` with ``$select``: 2)."""
    parts = urllib.parse.urlsplit(url)
    segments = [s for s in parts.path.split("/") if s][1:]  # without v1.0 / beta
    generic = "/".join("*" if i % 2 else s for i, s in enumerate(segments))
    path = "/".join(segments)
    query = urllib.parse.parse_qs(parts.query)
    if method == "POST":
        base = _POST_COSTS.get(path, 1)
        if base == 5 and "$select" in query:
            return 2
    else:
        base = _BASE_COSTS.get(path, _BASE_COSTS.get(generic, 1))
    cost = base - ("$select" in query) + ("$expand" in query)
    top = query.get("$top", [""])[0]
    if top.isdigit() and int(top) < 20:
        cost -= 1
    return max(1, cost)


def tenant_budget(users: int | None) -> int:
    """Resource units per 10 s for an app in a tenant of ``users`` (None: not known yet)."""
    if users is None:
        return TENANT_BUDGETS[0][1]
    return next(units for most, units in TENANT_BUDGETS if most is None or users <= most)


class UnitWindow:
    """At most ``limit`` units in flight or completed within the last ``window`` seconds;
    waiters served first come, first served."""

    def __init__(self, limit: float, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._completed: list[tuple[float, int]] = []
        self._used = 0
        # Made at the first wait, dropped when empty: most windows never wait, and an empty
        # deque is some 600 bytes (a window per tenant and app).
        self._waiters: deque[tuple[asyncio.Future[None], int]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._slow_until = 0.0

    def slow_down(self) -> None:
        """Graph says we are close: use a share of the limit for one window."""
        self._slow_until = self._clock() + self.window

    def _room(self, now: float) -> float:
        horizon = now - self.window
        while self._completed and self._completed[0][0] <= horizon:
            self._used -= self._completed.pop(0)[1]
        limit = self.limit * (SLOW_DOWN_FACTOR if now < self._slow_until else 1.0)
        return limit - self._used

    def _dispatch(self) -> None:
        now = self._clock()
        while self._waiters and self._waiters[0][0].done():
            self._waiters.popleft()
        while self._waiters and self._room(now) >= min(self._waiters[0][1], self.limit):
            waiter, units = self._waiters.popleft()
            if not waiter.done():
                self._used += units
                waiter.set_result(None)
        if not self._waiters:
            self._waiters = None
        elif self._timer is None:
            oldest = self._completed[0][0] if self._completed else now
            delay = max(0.01, oldest + self.window - now, self._slow_until - now)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    async def enter(self, units: int = 1) -> None:
        """Wait until ``units`` fit (a request dearer than the whole limit waits for it empty)."""
        if not self._waiters and self._room(self._clock()) >= min(units, self.limit):
            self._used += units
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = deque()
        self._waiters.append((waiter, units))
        self._dispatch()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave(units, sent=False)
            raise

    @property
    def idle(self) -> bool:
        """True when nothing waits and nothing is in flight (the window may be dropped)."""
        waiting = any(not waiter.done() for waiter, _ in self._waiters or ())
        return not waiting and self._used == sum(units for _, units in self._completed)

    def spent(self, now: float) -> bool:
        """True when the window is as a new one of its limit would be: nothing waits or is
        in flight, nothing completed within its window, and it is not slowed down."""
        self._room(now)  # forgets what left the window
        return (
            not self._waiters
            and self._timer is None
            and self._used == 0
            and now >= self._slow_until
        )

    def leave(self, units: int = 1, sent: bool = True) -> None:
        """Give the units back; a request that was sent keeps them for ``window`` seconds."""
        if sent:
            self._completed.append((self._clock(), units))
        else:
            self._used -= units
        self._dispatch()


class ServiceBudget:
    """Resource-unit windows per (app, tenant) and per app, for directory requests."""

    def __init__(self, share: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.share = share
        self._clock = clock
        self._sizes: dict[tuple[str, str], int] = {}
        self._tenants: dict[tuple[str, str], UnitWindow] = {}
        self._apps: dict[str, UnitWindow] = {}

    def use(self, keep: set[tuple[str, str]], share: float) -> None:
        """Budget the (client_id, tenant_id) pairs in ``keep`` from now on, with ``share`` of
        each app's budget (a replica's part when replicas share the app): the windows and sizes
        of pairs no longer configured go (windows once idle), so tenants that come and go leave
        nothing behind."""
        kept = {(client.lower(), tenant.lower()) for client, tenant in keep}
        self._sizes = {key: size for key, size in self._sizes.items() if key in kept}
        drop_idle(self._tenants, kept)
        drop_idle(self._apps, {client for client, _ in kept})
        if share != self.share:
            self.share = share
            for window in self._apps.values():
                window.limit = APP_BUDGET * share

    def sweep(self) -> None:
        """Drop the windows as good as new (their limit follows from the tenant's size and
        the share, both kept here, so a new one is the same)."""
        now = self._clock()
        drop_spent(self._tenants, now)
        drop_spent(self._apps, now)

    def tracked(self) -> tuple[int, int]:
        """How many (app, tenant) windows and app windows are held."""
        return len(self._tenants), len(self._apps)

    def note_size(self, client_id: str, tenant_id: str, users: int) -> None:
        """The tenant has ``users`` users: its budget follows from now on."""
        key = (client_id.lower(), tenant_id.lower())
        self._sizes[key] = users
        window = self._tenants.get(key)
        if window is not None:
            window.limit = tenant_budget(users)

    def note_load(self, client_id: str, tenant_id: str, percentage: float) -> None:
        """Graph's ``x-ms-throttle-limit-percentage``: from 0.8 on, slow down."""
        if percentage >= SLOW_DOWN_AT:
            self._windows(client_id, tenant_id)[0].slow_down()

    def _windows(self, client_id: str, tenant_id: str) -> tuple[UnitWindow, UnitWindow]:
        key = (client_id.lower(), tenant_id.lower())
        tenant = self._tenants.get(key)
        if tenant is None:
            budget = tenant_budget(self._sizes.get(key))
            tenant = self._tenants[key] = UnitWindow(budget, WINDOW_SECONDS, self._clock)
        app = self._apps.get(key[0])
        if app is None:
            limit = APP_BUDGET * self.share
            app = self._apps[key[0]] = UnitWindow(limit, APP_WINDOW_SECONDS, self._clock)
        return tenant, app

    @asynccontextmanager
    async def slot(
        self, client_id: str, tenant_id: str, units: int, deadline: float | None = None
    ) -> AsyncIterator[float]:
        """Hold ``units`` in both windows for the body; yields the seconds waited."""
        async with hold(
            self._windows(client_id, tenant_id), units, deadline, self._clock
        ) as waited:
            yield waited
