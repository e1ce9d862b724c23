"""The exporter's routes as a pure function of a request: :meth:`Router.handle`.

No socket, no thread: the server adapter (:mod:`exporter.web.server`) reads a request into a
:class:`Request` and writes the :class:`Response` back, so every route, its authentication and
its rate limit can be tested by calling :meth:`Router.handle`. Paths: the telemetry path,
``/healthz``, ``/readyz``, ``/``, ``/tenants/<name>`` and ``POST /-/reload``.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from exporter.metrics.store import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, MetricsStore
from exporter.web.config import WebConfig
from exporter.web.pages import render_landing_page, render_tenant_page
from exporter.web.reload import LiveWebConfig

PROBE_PATHS = ("/healthz", "/readyz")
TENANT_PAGES = "/tenants/"
RELOAD_PATH = "/-/reload"
HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
# Every answer is plain text or self-contained HTML: nothing may load, frame or sniff it.
SECURITY_HEADERS = MappingProxyType(
    {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
            "form-action 'self'; base-uri 'none'"
        ),
        "Referrer-Policy": "no-referrer",
    }
)
# Connections that slow routes (pages, reloads) may keep busy at once; the rest of the server's
# connections stay free for /healthz, /readyz and the telemetry path.
SLOW_ROUTES_AT_ONCE = 48


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


@dataclass(frozen=True, slots=True)
class Request:
    """A request as read off the connection (its body, if any, already read and dropped).

    ``headers`` names are lower case; ``peer_cert`` is the client's certificate (``None``
    without one), ``tls`` whether the connection is TLS.
    """

    method: str
    target: str
    headers: Mapping[str, str] = field(default_factory=dict)
    tls: bool = False
    peer_cert: Mapping[str, Any] | None = None
    client: str = ""  # the client's address (its rate-limit bucket)

    @property
    def path(self) -> str:
        """The target without its query."""
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str:
        """A header's value, empty when absent."""
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True, slots=True)
class Response:
    """What to send: status, body parts (sent one after the other), type, extra headers."""

    status: int
    body: tuple[bytes, ...]
    content_type: str = TEXT
    headers: Mapping[str, str] = field(default_factory=dict)


def text(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """A one-line plain-text answer."""
    return Response(status, (f"{message}\n".encode(),), TEXT, headers or {})


def _query(target: str, name: str) -> str:
    """The first value of ``name`` in the target's query (at most 200 characters)."""
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query).get(name, [""])
    return values[0][:200]


def cross_site(request: Request) -> bool:
    """True for a request a page on another site made a browser send (a form's POST needs no
    permission): browsers mark it (``Sec-Fetch-Site``) and name its origin (``Origin``, on
    every cross-origin POST). curl, Prometheus and scripts send neither, and pass."""
    if request.header("Sec-Fetch-Site").lower() in ("cross-site", "same-site"):
        return True
    origin = request.header("Origin")
    return bool(origin) and urllib.parse.urlsplit(origin).netloc != request.header("Host")


def _weights(header: str) -> dict[str, float]:
    """Media range or content coding → q weight, from an Accept or Accept-Encoding header."""
    weights: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.partition(";")
        name = name.strip().lower()
        if name:
            weights[name] = _qvalue(params)
    return weights


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


def wants_openmetrics(accept: str) -> bool:
    """True when the Accept header prefers OpenMetrics to the text format (by q-value)."""
    weights = _weights(accept)
    openmetrics = weights.get("application/openmetrics-text", 0.0)
    plain = weights.get("text/plain", weights.get("text/*", weights.get("*/*", 0.0)))
    return openmetrics > 0.0 and openmetrics >= plain


def wants_gzip(accept_encoding: str) -> bool:
    """True when the Accept-Encoding header allows gzip: a weight above 0, or ``*``'s."""
    weights = _weights(accept_encoding)
    return weights.get("gzip", weights.get("*", 0.0)) > 0.0


class Router:
    """Request → response for the exporter's paths, with the web config in force."""

    def __init__(
        self, hooks: ServerHooks, live: LiveWebConfig, slow_routes: int = SLOW_ROUTES_AT_ONCE
    ) -> None:
        self.hooks = hooks
        self.live = live
        self._slow = threading.BoundedSemaphore(slow_routes)

    def handle(self, request: Request) -> Response:
        """The answer to ``request`` (HEAD is answered as GET; the adapter drops the body)."""
        if request.method not in ("GET", "HEAD", "POST"):
            return text(405, "method not allowed", {"Allow": "GET, HEAD, POST"})
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if request.path in (self.hooks.telemetry_path, *PROBE_PATHS):
            return self._get(request) if request.method != "POST" else self._post(request)
        # Pages and reloads may take long: they never hold every connection.
        if not self._slow.acquire(blocking=False):
            return text(503, "busy: try again", {"Retry-After": "1"})
        try:
            return self._post(request) if request.method == "POST" else self._get(request)
        finally:
            self._slow.release()

    def authorized(self, request: Request) -> bool:
        """Client certificate and basic auth only (no rate limit): may a body be read?"""
        web = self.live.web
        if web.tls is not None and request.tls and not web.tls.allows_client(request.peer_cert):
            return False
        return web.basic_auth is None or web.basic_auth.check(
            request.header("Authorization") or None
        )

    def _refusal(self, request: Request) -> Response | None:
        """Rate limit, client certificate and basic auth; None when the request may go on."""
        if request.path in PROBE_PATHS:
            return None  # Kubernetes probes can present neither certificates nor passwords
        web, requests = self.live.web, self.live.requests
        if not requests.take(request.client):
            return text(429, "Too Many Requests", {"Retry-After": "1"})
        if web.tls is not None and request.tls and not web.tls.allows_client(request.peer_cert):
            requests.refund(request.client)  # a refused request never spends the client's limit
            return text(403, "a client certificate (with an allowed name) is required")
        if web.basic_auth is not None and not web.basic_auth.check(
            request.header("Authorization") or None
        ):
            requests.refund(request.client)
            return text(
                401,
                "unauthorized",
                {"WWW-Authenticate": 'Basic realm="entra-registration-exporter"'},
            )
        return None

    def _get(self, request: Request) -> Response:
        path = request.path
        if path == self.hooks.telemetry_path:
            return self._metrics(request)
        if path in PROBE_PATHS:
            return self._probe(path)
        if path == "/" or path.startswith(TENANT_PAGES):
            return self._pages(path, _query(request.target, "tenant"))
        if path == RELOAD_PATH:
            return text(405, "use POST", {"Allow": "POST"})
        return text(404, "not found")

    def _post(self, request: Request) -> Response:
        path = request.path
        if path != RELOAD_PATH:
            if path in {self.hooks.telemetry_path, *PROBE_PATHS, "/"}:
                return text(405, "method not allowed", {"Allow": "GET, HEAD"})
            return text(404, "not found")
        if cross_site(request):
            return text(403, "a cross-site request may not reload the config")
        ok, message = self.hooks.reload()
        return text(200 if ok else 500, message)

    def _metrics(self, request: Request) -> Response:
        openmetrics = wants_openmetrics(request.header("Accept"))
        gzipped = wants_gzip(request.header("Accept-Encoding"))
        body = self.hooks.store.render_parts(openmetrics=openmetrics, gzipped=gzipped)
        headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzipped else {}
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        return Response(200, body, content_type, headers)

    def _probe(self, path: str) -> Response:
        if path == "/healthz":
            alive = self.hooks.is_alive()
            return text(200, "ok") if alive else text(503, "event loop or scheduler stalled")
        if self.hooks.store.all_polled():
            return text(200, "ready")
        return text(503, "not every tenant polled yet")

    def _pages(self, path: str, query: str) -> Response:
        hooks = self.hooks
        if path == "/":
            page = render_landing_page(
                hooks.store.snapshots(), hooks.telemetry_path, hooks.next_poll, query
            )
            return Response(200, (page,), HTML, SECURITY_HEADERS)
        snapshot = hooks.store.snapshot(urllib.parse.unquote(path[len(TENANT_PAGES) :]))
        if snapshot is None:
            return text(404, "no such tenant")
        page = render_tenant_page(snapshot, hooks.next_poll)
        return Response(200, (page,), HTML, SECURITY_HEADERS)
