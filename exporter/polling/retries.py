"""When a failed tenant is asked again: backoff with jitter, and Graph's ``Retry-After`` kept.

A failed tenant is retried sooner than its interval, its failed collectors only (the runtime
asks). The delay doubles with each failure in a row, never past the interval, and is jittered
(equal jitter: half of it fixed, half at random), so tenants that failed together are not asked
again together. A ``Retry-After`` that Graph named is remembered across polls: the retry never
comes before it, for that tenant, and for every tenant of the same app when the refusal looks
per app (Graph does not say which limit refused: tenants of one app refused with overlapping
``Retry-After`` are taken as the app's limit, 122 per 10 s shared by all its tenants).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

FIRST_RETRY_SECONDS = 30.0
# Remembered refusals at most (a tenant's is replaced by its next; expired ones go first).
MAX_REMEMBERED = 100_000


def retry_delay(failures: int, interval: float, rng: random.Random | None = None) -> float:
    """Seconds until a failed tenant is polled again: 30 s doubling per failure in a row, never
    later than its interval, then jittered to between half of that and all of it."""
    base = min(interval, FIRST_RETRY_SECONDS * float(2 ** max(0, failures - 1)))
    return base * (rng or random).uniform(0.5, 1.0)


class RetryAfterMemory:
    """Until when Graph asked each tenant, and each app, to wait (monotonic time)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tenants: dict[str, tuple[str, float]] = {}  # name -> (client_id, until)
        self._apps: dict[str, float] = {}

    def note(self, tenant: str, client_id: str, seconds: float) -> None:
        """Graph answered ``tenant`` (of app ``client_id``) with ``Retry-After: seconds``."""
        now = self._clock()
        self._prune(now)
        until = now + max(0.0, seconds)
        app = client_id.lower()
        refused_too = any(
            other != tenant and their_app == app and their_until > now
            for other, (their_app, their_until) in self._tenants.items()
        )
        self._tenants[tenant] = (app, max(until, self._tenants.get(tenant, (app, 0.0))[1]))
        if refused_too:
            self._apps[app] = max(until, self._apps.get(app, 0.0))

    def wait(self, tenant: str, client_id: str) -> float:
        """Seconds before ``tenant`` may be asked again (0 when Graph named no later time)."""
        now = self._clock()
        own = self._tenants.get(tenant, ("", 0.0))[1]
        app = self._apps.get(client_id.lower(), 0.0)
        return max(0.0, own - now, app - now)

    def forget(self, tenant: str) -> None:
        """The tenant left the config: its refusal goes with it."""
        self._tenants.pop(tenant, None)

    def _prune(self, now: float) -> None:
        """Drop what has passed (a 429 is rare: a pass over the rest costs little), and past
        :data:`MAX_REMEMBERED`, the refusals that end first."""
        self._tenants = {k: v for k, v in self._tenants.items() if v[1] > now}
        self._apps = {k: v for k, v in self._apps.items() if v > now}
        if len(self._tenants) >= MAX_REMEMBERED:
            latest = sorted(self._tenants.items(), key=lambda item: item[1][1])
            self._tenants = dict(latest[len(latest) - MAX_REMEMBERED // 2 :])
