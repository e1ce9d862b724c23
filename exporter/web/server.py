"""The HTTP server: a thin adapter from sockets to :class:`~exporter.web.router.Router`.

A thread per connection, so a slow or silent client never holds up another scrape; the router
only reads snapshots that the polls left behind and never waits on Graph. Reading a request —
line, headers, body, deadlines — happens here and nowhere else (:meth:`ExporterRequestHandler.
handle_one_request` and :meth:`~ExporterRequestHandler.read_request`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter import __version__
from exporter.web.config import WebConfig
from exporter.web.connections import BUSY, IDLE, READING, ConnectionGuard
from exporter.web.reload import LiveWebConfig
from exporter.web.router import RELOAD_PATH, Request, Response, Router, ServerHooks, text

log = logging.getLogger("exporter.server")

MAX_REQUEST_BODY = 64 * 1024
# A connection that sends nothing for this long is closed (slow or silent clients).
CONNECTION_TIMEOUT_SECONDS = 30.0
# How long a connection closed on an unread body may take to say it is done.
LINGER_SECONDS = 0.5


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:9836`` → ("", 9836); ``127.0.0.1:0``; ``[::1]:9836``."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{address!r} is not HOST:PORT (e.g. :9836 or 127.0.0.1:9836)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


class ExporterRequestHandler(BaseHTTPRequestHandler):
    """Reads each request, asks the router, writes the answer."""

    protocol_version = "HTTP/1.1"
    server_version = f"entra-registration-exporter/{__version__}"
    timeout = CONNECTION_TIMEOUT_SECONDS

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

    _unread_body = False

    def finish(self) -> None:
        self.server.guard.forget(self.request)
        with contextlib.suppress(OSError, ValueError):
            super().finish()
        if self._unread_body:
            _linger(self.connection)

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

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):  # every request passes here: format only if shown
            log.debug(format % args, extra={"client": self.client_address[0]})

    def read_request(self) -> tuple[Request, int] | Response:
        """The request line and headers (parsed by http.server), and its body's length.

        One framing rule for every method: a body is framed by one ``Content-Length`` only;
        several different ones, a ``Transfer-Encoding``, or a length that is not a number are
        refused and the connection closed, so what follows can never be read as a request of
        its own.
        """
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if self.headers.get("Transfer-Encoding") is not None or len(lengths) > 1:
            self.close_connection = True
            return text(400, "one Content-Length, no Transfer-Encoding")
        length_text = next(iter(lengths), "0")
        if not length_text.isdigit():
            self.close_connection = True
            return text(400, "bad Content-Length")
        tls = isinstance(self.connection, ssl.SSLSocket)
        request = Request(
            method=self.command,
            target=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            tls=tls,
            peer_cert=self.connection.getpeercert() if tls else None,
            client=str(self.client_address[0]),
        )
        return request, int(length_text)

    def _take_body(self, request: Request, length: int) -> Response | None:
        """Read (and drop) a body only for the one route that takes one, once authorized;
        any other body is left unread and the connection closed after the answer."""
        if not length:
            return None
        if length > MAX_REQUEST_BODY:
            self.close_connection = True
            return text(413, "request body too large")
        takes_body = request.method == "POST" and request.path == RELOAD_PATH
        if not takes_body or not self.server.router.authorized(request):
            self.close_connection = True
            self._unread_body = True
            return None
        self.rfile.read(length)  # under the guard's deadline: the request is still arriving
        return None

    def _answer(self) -> None:
        read = self.read_request()
        if isinstance(read, Response):
            self._send(read)
            return
        request, length = read
        refused = self._take_body(request, length)
        self.server.guard.mark(self.request, BUSY)  # line, headers and body are in
        self._send(refused or self.server.router.handle(request))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(sum(len(part) for part in response.body)))
        for name, value in {**response.headers, **self.server.live.web.headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            for part in response.body:
                self.wfile.write(part)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer


def _linger(connection: socket.socket) -> None:
    """Close a connection whose body was left unread without a reset that could drop the
    answer on its way: stop sending, then drop what still arrives, briefly and boundedly."""
    with contextlib.suppress(OSError, ValueError):
        connection.shutdown(socket.SHUT_WR)
        connection.settimeout(LINGER_SECONDS)
        dropped = 0
        while dropped < MAX_REQUEST_BODY and (chunk := connection.recv(16384)):
            dropped += len(chunk)


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
        # Before binding: a refused bind calls server_close, which stops the guard.
        self.guard = ConnectionGuard()
        super().__init__(address, handler)
        self.guard.run_reaper()
        self.live = LiveWebConfig(WebConfig())
        self.router: Router

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
    server = ExporterHTTPServer(parse_listen_address(address), ExporterRequestHandler)
    server.live = LiveWebConfig(hooks.web, hooks.store.record_web_reload)
    server.router = Router(hooks, server.live)
    return server


def serve_in_thread(server: ExporterHTTPServer) -> threading.Thread:
    """Serve until ``server.shutdown()``."""
    # shutdown() waits for the loop to look: 0.1 s instead of socketserver's 0.5 s.
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), name="http", daemon=True)
    thread.start()
    return thread
