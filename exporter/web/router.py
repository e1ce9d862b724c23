"""The exporter's routes as a pure function of a request: :meth:`Router.handle`.

No socket, no thread: the server adapter (:mod:`exporter.web.server`) reads a request into a
:class:`Request` and writes the :class:`Response` back, so every route, its authentication and
its rate limit can be tested by calling :meth:`Router.handle`. Paths: the telemetry path,
``/healthz``, ``/readyz``, ``/``, ``/tenants/<name>`` and ``POST /-/reload``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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

    def __init__(self, hooks: ServerHooks, live: LiveWebConfig) -> None:
        self.hooks = hooks
        self.live = live

    def handle(self, request: Request) -> Response:
        """The answer to ``request`` (HEAD is answered as GET; the adapter drops the body)."""
        if request.method not in ("GET", "HEAD", "POST"):
            return text(405, "method not allowed", {"Allow": "GET, HEAD, POST"})
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if request.method == "POST":
            return self._post(request)
        return self._get(request)

    def _refusal(self, request: Request) -> Response | None:
        """Rate limit, client certificate and basic auth; None when the request may go on."""
        if request.path in PROBE_PATHS:
            return None  # Kubernetes probes can present neither certificates nor passwords
        web = self.live.web
        if not self.live.requests.take():
            return text(429, "Too Many Requests", {"Retry-After": "1"})
        if web.tls is not None and request.tls and not web.tls.allows_client(request.peer_cert):
            return text(403, "a client certificate (with an allowed name) is required")
        if web.basic_auth is not None and not web.basic_auth.check(
            request.header("Authorization") or None
        ):
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
            return self._pages(path)
        if path == RELOAD_PATH:
            return text(405, "use POST", {"Allow": "POST"})
        return text(404, "not found")

    def _post(self, request: Request) -> Response:
        path = request.path
        if path != RELOAD_PATH:
            if path in {self.hooks.telemetry_path, *PROBE_PATHS, "/"}:
                return text(405, "method not allowed", {"Allow": "GET, HEAD"})
            return text(404, "not found")
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

    def _pages(self, path: str) -> Response:
        hooks = self.hooks
        if path == "/":
            page = render_landing_page(
                hooks.store.snapshots(), hooks.telemetry_path, hooks.next_poll
            )
            return Response(200, (page,), HTML)
        snapshot = hooks.store.snapshot(urllib.parse.unquote(path[len(TENANT_PAGES) :]))
        if snapshot is None:
            return text(404, "no such tenant")
        return Response(200, (render_tenant_page(snapshot, hooks.next_poll),), HTML)
