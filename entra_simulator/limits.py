"""Graph's documented limits for identity and access reports, enforced as Graph would.

Sliding windows per app and per app + tenant, counted when a request arrives; a request that
would cross either is answered 429 with ``Retry-After`` (the seconds until the oldest request
leaves the window) and is not counted. The simulator reports how many it refused, so a
benchmark can show an exporter pacing right up to the limits without crossing them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``requests`` arrivals in any ``seconds``."""

    requests: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Limit:
        """``5/10s`` (the simulator's flags use seconds only)."""
        count, _, window = text.partition("/")
        return cls(int(count), float(window.rstrip("s")))


# Microsoft's documented limits for identity and access reports.
PER_APP_PER_TENANT = Limit(5, 10.0)
PER_APP = Limit(122, 10.0)


class GraphLimits:
    """The two windows of every app and app + tenant; thread-safe."""

    def __init__(self, per_app_per_tenant: Limit, per_app: Limit) -> None:
        self.per_app_per_tenant = per_app_per_tenant
        self.per_app = per_app
        self._tenant_windows: dict[tuple[str, str], deque[float]] = {}
        self._app_windows: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.refused = 0

    def admit(self, client_id: str, tenant_id: str, now: float | None = None) -> float | None:
        """None if the request may pass (and count it), else the seconds to retry after."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tenant = self._tenant_windows.setdefault((client_id, tenant_id), deque())
            app = self._app_windows.setdefault(client_id, deque())
            waits = [
                _wait(window, limit, now)
                for window, limit in ((tenant, self.per_app_per_tenant), (app, self.per_app))
            ]
            if any(wait > 0 for wait in waits):
                self.refused += 1
                return max(waits)
            tenant.append(now)
            app.append(now)
            return None


def _wait(window: deque[float], limit: Limit, now: float) -> float:
    """Seconds until ``window`` has room for one more arrival (0: it has room now)."""
    while window and window[0] <= now - limit.seconds:
        window.popleft()
    if len(window) < limit.requests:
        return 0.0
    return window[0] + limit.seconds - now


def retry_after(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up (Graph's way)."""
    return str(max(1, math.ceil(seconds)))


# Graph's identity and access service limits: resource units per app and tenant by tenant size
# (under 50 users, up to 500, more), and per app across tenants.
SERVICE_TENANT_UNITS = ((49, 3_500), (500, 5_000), (None, 8_000))
SERVICE_WINDOW = 10.0
SERVICE_APP = Limit(150_000, 20.0)


class ServiceLimits:
    """Resource-unit windows per app + tenant (by its size) and per app; thread-safe.

    :meth:`admit` also says how much of the tenant's budget is used (Graph's
    ``x-ms-throttle-limit-percentage``, sent from 0.8 on).
    """

    def __init__(self, app: Limit = SERVICE_APP, scale: float = 1.0) -> None:
        self.app = app
        self.scale = scale  # tests shrink the budgets to reach them quickly
        self._tenant_windows: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self._app_windows: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()
        self.refused = 0

    def tenant_budget(self, users: int) -> float:
        units = next(u for most, u in SERVICE_TENANT_UNITS if most is None or users <= most)
        return units * self.scale

    def admit(
        self, client_id: str, tenant_id: str, users: int, units: int, now: float | None = None
    ) -> tuple[float | None, float]:
        """(None, load) if the request may pass (and count it), else (seconds to wait, load)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tenant = self._tenant_windows.setdefault((client_id, tenant_id), deque())
            app = self._app_windows.setdefault(client_id, deque())
            budget = self.tenant_budget(users)
            tenant_used = _units(tenant, SERVICE_WINDOW, now)
            app_used = _units(app, self.app.seconds, now)
            load = (tenant_used + units) / budget
            if tenant_used + units > budget or app_used + units > self.app.requests * self.scale:
                self.refused += 1
                return max(tenant[0][0] + SERVICE_WINDOW - now if tenant else 1.0, 0.1), load
            tenant.append((now, units))
            app.append((now, units))
            return None, load


def _units(window: deque[tuple[float, int]], seconds: float, now: float) -> int:
    while window and window[0][0] <= now - seconds:
        window.popleft()
    return sum(units for _, units in window)


def directory_cost(path: str, query: str) -> int:
    """Resource units of a directory GET, by Microsoft's table (only the paths served here):
    role assignments 1 (+1 for ``$expand``), a group's transitiveMembers 5 (-1 for ``$select``)."""
    base = 5 if path.endswith("/transitiveMembers") else 1
    cost = base + ("$expand=" in query) - ("$select=" in query)
    return max(1, cost)


class TenantRate:
    """At most ``requests`` per ``seconds`` per tenant, whatever the app (Conditional Access:
    1 per second); refusals counted. Thread-safe."""

    def __init__(self, requests: int = 1, seconds: float = 1.0) -> None:
        self.requests, self.seconds = requests, seconds
        self._windows: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.refused = 0

    def admit(self, tenant_id: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            window = self._windows.setdefault(tenant_id, deque())
            while window and window[0] <= now - self.seconds:
                window.popleft()
            if len(window) >= self.requests:
                self.refused += 1
                return False
            window.append(now)
            return True
