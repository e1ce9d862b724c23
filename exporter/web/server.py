"""HTTP: ``/metrics``, ``/healthz``, ``/readyz``, ``/`` and ``POST /-/reload``.

A thread per connection, so a slow or silent client never holds up another scrape; every
handler only reads snapshots that the polls left behind and never waits on Graph.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter import __version__
from exporter.metrics.store import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, MetricsStore
from exporter.web.config import WebConfig
from exporter.web.connections import BUSY, IDLE, READING, ConnectionGuard
from exporter.web.pages import render_landing_page, render_tenant_page
from exporter.web.reload import LiveWebConfig

log = logging.getLogger("exporter.server")

MAX_REQUEST_BODY = 64 * 1024
# A connection that sends nothing for this long is closed (slow or silent clients).
CONNECTION_TIMEOUT_SECONDS = 30.0


PROBE_PATHS = ("/healthz", "/readyz")
TENANT_PAGES = "/tenants/"
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class ServerHooks:
    """What the HTTP server may ask of the running exporter, and how it is protected."""

    store: MetricsStore
    is_alive: Callable[[], bool]
    reload: Callable[[], tuple[bool, str]]
    telemetry_path: str = "/metrics"
    web: WebConfig = field(default_factory=WebConfig)
    # When a tenant is polled next (Unix time), for the pages.
    next_poll: Callable[[str], float | None] = lambda _name: None


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:9836`` → ("", 9836); ``127.0.0.1:0``; ``[::1]:9836``."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{address!r} is not HOST:PORT (e.g. :9836 or 127.0.0.1:9836)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def _weights(header: str) -> dict[str, float]:
    """Media range or content coding → q weight, from an Accept or Accept-Encoding header."""
    weights: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.partition(";")
        name = name.strip().lower()
        if name:
            weights[name] = _qvalue(params)
    return weights


def wants_openmetrics(accept: str) -> bool:
    """True when the Accept header prefers OpenMetrics to the text format (by q-value)."""
    weights = _weights(accept)
    openmetrics = weights.get("application/openmetrics-text", 0.0)
    text = weights.get("text/plain", weights.get("text/*", weights.get("*/*", 0.0)))
    return openmetrics > 0.0 and openmetrics >= text


def _qvalue(params: str) -> float:
    """The ``q`` weight among a coding's parameters (RFC 9110 §12.4.2); 1 when absent."""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                weight = float(value.strip())
            except ValueError:
                return 0.0
            return weight if 0.0 <= weight <= 1.0 else 0.0
    return 1.0


def wants_gzip(accept_encoding: str) -> bool:
    """True when the Accept-Encoding header allows gzip: a weight above 0, or ``*``'s."""
    weights = _weights(accept_encoding)
    return weights.get("gzip", weights.get("*", 0.0)) > 0.0


class ExporterRequestHandler(BaseHTTPRequestHandler):
    """Routes the exporter's few paths."""

    protocol_version = "HTTP/1.1"
    server_version = f"entra-registration-exporter/{__version__}"
    timeout = CONNECTION_TIMEOUT_SECONDS
    hooks: ServerHooks  # set on the subclass built by make_server

    server: ExporterHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            # Here, in the connection's own thread and under its timeout, not in accept(); the
            # guard counts the handshake as part of the request's arrival.
            self.connection.do_handshake()

    def handle(self) -> None:
        with contextlib.suppress(ssl.SSLError, ConnectionError, TimeoutError, ValueError):
            super().handle()

    def finish(self) -> None:
        self.server.guard.forget(self.request)
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def handle_one_request(self) -> None:
        """Wait idle for the next request, then give it the guard's deadline to arrive."""
        guard = self.server.guard
        guard.mark(self.request, IDLE)
        try:
            # Blocks until the first byte (or what a pipelining client already sent is in the
            # buffer), for at most the connection timeout; it reads nothing away.
            first = self.rfile.peek(1)  # type: ignore[attr-defined]
        except (OSError, ValueError):
            first = b""
        if not first:
            self.close_connection = True
            return
        guard.mark(self.request, READING)
        super().handle_one_request()

    def parse_request(self) -> bool:
        self.server.guard.mark(self.request, BUSY)  # the request line and headers are in
        return super().parse_request()

    def _authorized(self) -> bool:
        """Client certificate and basic auth; answers 403/401 itself when refused."""
        web = self.server.live.web
        if self._path() in PROBE_PATHS:
            return True  # Kubernetes probes can present neither certificates nor passwords
        if not self.server.live.requests.take():
            self._send(429, b"Too Many Requests\n", headers={"Retry-After": "1"})
            return False
        if (
            web.tls is not None
            and isinstance(self.connection, ssl.SSLSocket)
            and not web.tls.allows_client(self.connection.getpeercert())
        ):
            self._send(403, b"a client certificate (with an allowed name) is required\n")
            return False
        if web.basic_auth is not None and not web.basic_auth.check(
            self.headers.get("Authorization")
        ):
            self._send(
                401,
                b"unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="entra-registration-exporter"'},
            )
            return False
        return True

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):  # every request passes here: format only if shown
            log.debug(format % args, extra={"client": self.client_address[0]})

    def _send(
        self,
        status: int,
        body: bytes | tuple[bytes, ...],
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = (body,) if isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(len(part) for part in parts)))
        for name, value in {**self.server.live.web.headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            for part in parts:
                self.wfile.write(part)

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def _discard_body(self) -> bool:
        """Read and drop a request body; False (and 413 sent) when it is too large."""
        length_text = self.headers.get("Content-Length", "0")
        try:
            length = int(length_text)
        except ValueError:
            self._send(400, b"bad Content-Length\n")
            return False
        if length > MAX_REQUEST_BODY or length < 0:
            self.close_connection = True
            self._send(413, b"request body too large\n")
            return False
        if length:
            self.rfile.read(length)
        return True

    def do_GET(self) -> None:
        if not self._authorized():
            return
        path = self._path()
        if path == self.hooks.telemetry_path:
            self._metrics()
        elif path in PROBE_PATHS:
            self._probe(path)
        elif path == "/" or path.startswith(TENANT_PAGES):
            self._pages(path)
        elif path == "/-/reload":
            self._send(405, b"use POST\n", headers={"Allow": "POST"})
        else:
            self._send(404, b"not found\n")

    def _metrics(self) -> None:
        openmetrics = wants_openmetrics(self.headers.get("Accept", ""))
        gzipped = wants_gzip(self.headers.get("Accept-Encoding", ""))
        body = self.hooks.store.render_parts(openmetrics=openmetrics, gzipped=gzipped)
        headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzipped else {}
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        self._send(200, body, content_type, headers)

    def _probe(self, path: str) -> None:
        hooks = self.hooks
        if path == "/healthz":
            ok, good, bad = hooks.is_alive(), b"ok\n", b"event loop or scheduler stalled\n"
        else:
            ok, good, bad = hooks.store.all_polled(), b"ready\n", b"not every tenant polled yet\n"
        self._send(200 if ok else 503, good if ok else bad)

    def _pages(self, path: str) -> None:
        hooks = self.hooks
        if path == "/":
            snapshots = hooks.store.snapshots()
            self._send(
                200, render_landing_page(snapshots, hooks.telemetry_path, hooks.next_poll), HTML
            )
            return
        snapshot = hooks.store.snapshot(urllib.parse.unquote(path[len(TENANT_PAGES) :]))
        if snapshot is None:
            self._send(404, b"no such tenant\n")
        else:
            self._send(200, render_tenant_page(snapshot, hooks.next_poll), HTML)

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if not self._discard_body() or not self._authorized():
            return
        if self._path() != "/-/reload":
            known = {self.hooks.telemetry_path, "/healthz", "/readyz", "/"}
            if self._path() in known:
                self._send(405, b"method not allowed\n", headers={"Allow": "GET, HEAD"})
            else:
                self._send(404, b"not found\n")
            return
        ok, message = self.hooks.reload()
        self._send(200 if ok else 500, f"{message}\n".encode())

    def _not_allowed(self) -> None:
        self._send(405, b"method not allowed\n", headers={"Allow": "GET, HEAD, POST"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed


def _dual_stack() -> bool:
    """True when this machine can serve IPv4 and IPv6 on one IPv6 socket."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            probe.bind(("::", 0))
    except OSError:
        return False
    return True


class ExporterHTTPServer(ThreadingHTTPServer):
    """Threaded server with a connection ceiling.

    As Go exporters do, ``:PORT`` (and ``[::]:PORT``) listens on every address, IPv4 and IPv6,
    through one dual-stack socket (IPv4 only where the machine has no IPv6); an IPv6 host binds
    IPv6, an IPv4 host IPv4.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        host, port = address
        self._dual_stack = host in ("", "::") and _dual_stack()
        if self._dual_stack:
            address = ("::", port)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self.guard = ConnectionGuard()
        self.guard.run_reaper()
        self.live = LiveWebConfig(WebConfig())

    def get_request(self) -> tuple[Any, Any]:
        """Accept a connection, wrapped in TLS with the web config in force right now."""
        connection, address = self.socket.accept()
        context = self.live.current()
        if context is not None:
            connection = context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def server_bind(self) -> None:
        if self._dual_stack:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    @property
    def display_address(self) -> str:
        """``HOST:PORT`` as a person writes it: IPv6 in brackets, every address as ``[::]``."""
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        return f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"  # noqa: S104

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.guard.admit(request):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def server_close(self) -> None:
        self.guard.stop()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that breaks its connection is not worth a traceback."""
        error = sys.exc_info()[1]
        log.debug(
            "connection error",
            extra={"client": str(client_address[0]), "error": type(error).__name__},
        )


def make_server(address: str, hooks: ServerHooks) -> ExporterHTTPServer:
    """Bind the HTTP server (not yet serving); HTTPS when the web config has TLS."""
    handler = type("BoundRequestHandler", (ExporterRequestHandler,), {"hooks": hooks})
    server = ExporterHTTPServer(parse_listen_address(address), handler)
    server.live = LiveWebConfig(hooks.web, hooks.store.record_web_reload)
    return server


def serve_in_thread(server: ExporterHTTPServer) -> threading.Thread:
    """Serve until ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread
