"""HTTP server: routes, content negotiation, probes, and clients that misbehave."""

from __future__ import annotations

import gzip
import http.client
import socket
import time
from collections.abc import Iterator

import pytest

from exporter.metrics.snapshots import PollResult
from exporter.metrics.store import MetricsStore
from exporter.reports.registration import RegistrationReport
from exporter.web.router import ServerHooks, wants_gzip
from exporter.web.server import (
    ExporterHTTPServer,
    make_server,
    parse_listen_address,
    serve_in_thread,
)
from tests.conftest import record_poll, track_tenants
from tests.conftest import tenant_config as tenant


class Harness:
    def __init__(self) -> None:
        self.store = MetricsStore()
        self.alive = True
        self.reloads = 0
        config = tenant("<b>contoso</b>")
        track_tenants(self.store, (config,))
        self.config = config
        self.server: ExporterHTTPServer = make_server(
            "127.0.0.1:0",
            ServerHooks(self.store, lambda: self.alive, self._reload, "/metrics"),
        )
        serve_in_thread(self.server)
        self.port = self.server.server_address[1]

    def _reload(self) -> tuple[bool, str]:
        self.reloads += 1
        return True, "config reloaded"

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.server.shutdown()
    h.server.server_close()


def test_metrics_text_openmetrics_and_gzip(harness: Harness) -> None:
    status, headers, body = harness.request("GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"entra_exporter_tenant_up" in body
    status, headers, body = harness.request(
        "GET", "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    status, headers, body = harness.request("GET", "/metrics", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert b"entra_exporter_tenant_up" in gzip.decompress(body)


def test_probes(harness: Harness) -> None:
    assert harness.request("GET", "/healthz")[0] == 200
    harness.alive = False
    assert harness.request("GET", "/healthz")[0] == 503
    assert harness.request("GET", "/readyz")[0] == 503
    record_poll(
        harness.store, harness.config, PollResult("throttled", None, None, 0.1, time.time())
    )
    assert harness.request("GET", "/readyz")[0] == 200  # a failed first poll still counts


def test_landing_page_escapes_names_and_shows_results(harness: Harness) -> None:
    record_poll(
        harness.store,
        harness.config,
        PollResult("success", RegistrationReport(1, ()), None, 0.1, time.time()),
    )
    status, headers, body = harness.request("GET", "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert "&lt;b&gt;contoso&lt;/b&gt;" in page and "<b>contoso</b>" not in page
    assert "success" in page and "href='/metrics'" in page
    assert "s3cret-value" not in page


def test_routes_and_methods(harness: Harness) -> None:
    assert harness.request("GET", "/nope")[0] == 404
    status, headers, _ = harness.request("GET", "/-/reload")
    assert status == 405 and headers["Allow"] == "POST"
    assert harness.request("POST", "/metrics", body=b"")[0] == 405
    assert harness.request("DELETE", "/metrics")[0] == 405
    assert harness.request("POST", "/-/reload", body=b"")[0] == 200
    assert harness.reloads == 1
    assert harness.request("HEAD", "/metrics")[0] == 200


def test_request_bodies_are_capped(harness: Harness) -> None:
    status, _, _ = harness.request("POST", "/-/reload", body=b"x" * (65 * 1024))
    assert status == 413
    assert harness.reloads == 0


def test_silent_and_garbage_clients_do_not_delay_scrapes(harness: Harness) -> None:
    silent = [socket.create_connection(("127.0.0.1", harness.port)) for _ in range(20)]
    garbage = socket.create_connection(("127.0.0.1", harness.port))
    garbage.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
    try:
        started = time.monotonic()
        for _ in range(5):
            assert harness.request("GET", "/metrics")[0] == 200
        # Generous bound: a blocked server would wait for the 30 s connection timeout.
        assert time.monotonic() - started < 5
        garbage.settimeout(5)
        assert b"400" in garbage.recv(4096)  # answered "bad request", not hung
    finally:
        for sock in [*silent, garbage]:
            sock.close()


def test_listen_address_parsing() -> None:
    assert parse_listen_address(":9836") == ("", 9836)
    assert parse_listen_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen_address("[::1]:9836") == ("::1", 9836)
    for bad in ("9836", "host:", "host:99999", "host:abc"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen_address(bad)


def test_gzip_negotiation() -> None:
    assert wants_gzip("gzip")
    assert wants_gzip("deflate, gzip;q=1.0, *;q=0.5")
    assert not wants_gzip("gzip;q=0")
    assert not wants_gzip("identity")
    assert not wants_gzip("")
    # Weights between 0 and 1 still allow gzip (a substring test for "q=0" refused these).
    assert wants_gzip("gzip;q=0.5")
    assert wants_gzip("br, gzip; q=0.001")
    assert wants_gzip("identity, *")
    assert not wants_gzip("gzip;q=0.000")
    assert not wants_gzip("*;q=0.5, gzip;q=0")  # an explicit refusal beats the wildcard
    assert not wants_gzip("gzip;q=abc")
