"""The web config's ``rate_limit``: a token bucket per client address (:class:`RequestBucket`).

The probes are never limited (the router asks before it takes a token); one client spending its
bucket never touches another's.
"""

from __future__ import annotations

import collections
import threading
import time

from exporter.web.config import RateLimitSettings


class RequestBucket:
    """The web config's ``rate_limit``, per client: each client address has a token bucket of
    ``burst`` tokens, one more per ``interval``; a request without a token is answered 429
    (probes are never limited). One client spending its bucket never touches another's; a
    request that fails authentication gives its token back (:meth:`refund`)."""

    MAX_CLIENTS = 4096  # the least recently seen client's bucket goes first

    def __init__(self, settings: RateLimitSettings | None) -> None:
        self._settings = settings
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str = "") -> bool:
        """Spend one of ``client``'s tokens; False when it has none."""
        settings = self._settings
        if settings is None:
            return True
        with self._lock:
            now = time.monotonic()
            tokens, at = self._buckets.pop(client, (float(settings.burst), now))
            tokens = min(float(settings.burst), tokens + (now - at) / settings.interval)
            allowed = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
            while len(self._buckets) > self.MAX_CLIENTS:
                self._buckets.popitem(last=False)
            return allowed

    def refund(self, client: str = "") -> None:
        """Give ``client`` back the token its refused request took."""
        settings = self._settings
        if settings is None:
            return
        with self._lock:
            tokens, at = self._buckets.get(client, (float(settings.burst), time.monotonic()))
            self._buckets[client] = (min(float(settings.burst), tokens + 1.0), at)
