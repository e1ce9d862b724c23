"""A ceiling on the HTTP server's connections and on how long a request may take to arrive.

The server runs a thread per connection, so without a ceiling a client that opens many
connections and trickles one byte now and then holds as many threads as it likes. Here:

- at most :data:`MAX_CONNECTIONS` connections; a new one first evicts the connection idle the
  longest (a keep-alive waiting for its next request), else the one that has been sending its
  request the longest; if every connection is busy answering, the new one is closed;
- a request (TLS handshake, request line and headers) must arrive within
  :data:`REQUEST_DEADLINE_SECONDS` of its first byte; a reaper closes those that do not.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass

MAX_CONNECTIONS = 64
REQUEST_DEADLINE_SECONDS = 10.0
REAP_EVERY_SECONDS = 1.0
IDLE, READING, BUSY = "idle", "reading", "busy"


@dataclass(slots=True)
class _Connection:
    state: str
    since: float


class ConnectionGuard:
    """Tracks every open connection's state; evicts and reaps as the module doc says."""

    def __init__(
        self,
        max_connections: int = MAX_CONNECTIONS,
        request_deadline: float = REQUEST_DEADLINE_SECONDS,
    ) -> None:
        self.max_connections = max_connections
        self.request_deadline = request_deadline
        self._connections: dict[socket.socket, _Connection] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.evicted = 0
        self.refused = 0
        self.reaped = 0

    def admit(self, sock: socket.socket) -> bool:
        """Make room for ``sock`` and track it; False if it must be closed instead."""
        with self._lock:
            if len(self._connections) >= self.max_connections:
                victim = self._victim()
                if victim is None:
                    self.refused += 1
                    return False
                self.evicted += 1
                del self._connections[victim]
                _close(victim)
            self._connections[sock] = _Connection(READING, time.monotonic())
            return True

    def _victim(self) -> socket.socket | None:
        idle = [(c.since, s) for s, c in self._connections.items() if c.state == IDLE]
        reading = [(c.since, s) for s, c in self._connections.items() if c.state == READING]
        for candidates in (idle, reading):
            if candidates:
                return min(candidates, key=lambda item: item[0])[1]
        return None

    def mark(self, sock: socket.socket, state: str) -> None:
        """The connection is now ``idle``, ``reading`` a request, or ``busy`` answering it."""
        with self._lock:
            connection = self._connections.get(sock)
            if connection is not None and connection.state != state:
                connection.state, connection.since = state, time.monotonic()

    def forget(self, sock: socket.socket) -> None:
        """The connection is closed."""
        with self._lock:
            self._connections.pop(sock, None)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def reap(self, now: float | None = None) -> int:
        """Close connections whose request has not arrived within the deadline."""
        now = time.monotonic() if now is None else now
        with self._lock:
            late = [
                s
                for s, c in self._connections.items()
                if c.state == READING and now - c.since > self.request_deadline
            ]
            for sock in late:
                del self._connections[sock]
        for sock in late:
            _close(sock)
        self.reaped += len(late)
        return len(late)

    def run_reaper(self) -> threading.Thread:
        """Reap every :data:`REAP_EVERY_SECONDS` until :meth:`stop`."""

        def loop() -> None:
            while not self._stopped.wait(REAP_EVERY_SECONDS):
                self.reap()

        thread = threading.Thread(target=loop, name="http-reaper", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stopped.set()


def _close(sock: socket.socket) -> None:
    """Wake the thread blocked reading ``sock``; that thread closes it."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
