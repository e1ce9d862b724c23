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
