"""Scrapes: ``/metrics`` with 1 and 20 concurrent scrapers, plain and gzip, against
prometheus_client's ``generate_latest`` over the same series and against a do-nothing server
that answers with the same bytes (the machine's floor)."""

from __future__ import annotations

import http.client
import math
import multiprocessing
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench.figures import Figure, Report, Sizes, Stack

# The exporter's p99 under 20 concurrent scrapers, at most this many times the do-nothing
# server's p99 measured with the same clients in the same run.
P99_VS_FLOOR_TARGET = 1.5


def timed_gets(port: int, path: str, headers: dict[str, str], count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    timings = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            timings.append(time.perf_counter() - started)
            assert response.status == 200 and body
    finally:
        conn.close()
    return timings


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


class _Families:
    """A collector that yields already-parsed metric families (the same series as the exporter)."""

    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> Iterator[Any]:
        return iter(self._families)


class TrivialServer:
    """The least an HTTP server can do: answer every request with the same bytes.

    Measured with the same clients, it shows how much of the latency under 20 concurrent
    scrapers the machine (2 cores shared by 20 client processes) costs whatever the server.
    """

    def __init__(self, body: bytes) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
        self._answer = head % len(body) + body
        self._socket = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._socket.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while reader.readline():
                while reader.readline() not in (b"\r\n", b""):
                    pass
                conn.sendall(self._answer)

    def close(self) -> None:
        self._socket.close()


class _AnswerSameBytes(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StdlibServer:
    """The standard library's threaded ``http.server`` answering every GET with the same bytes:
    what a server built on it pays before doing anything of its own (the exporter's is)."""

    def __init__(self, body: bytes) -> None:
        handler = type("Handler", (_AnswerSameBytes,), {"body": body})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def concurrent_gets(port: int, headers: dict[str, str], per_scraper: int) -> list[float]:
    """20 scrapers in 20 processes, so the client side does not queue on one GIL."""
    with multiprocessing.get_context("fork").Pool(20) as pool:
        batches = pool.starmap(timed_gets, [(port, "/metrics", headers, per_scraper)] * 20)
    return [t for batch in batches for t in batch]


def scrape(stack: Stack, sizes: Sizes, report: Report) -> None:
    """Scenario 2."""
    port = stack.exporter.port
    status, body = stack.exporter.get("/metrics")
    assert status == 200
    base, series = generate_latest_median(body, max(5, sizes.scrape_requests // 10))
    against = f"generate_latest median {base * 1000:.2f}ms over {series} series"
    report.add(
        Figure("scrape", "generate_latest_median_ms", base * 1000, "ms", None, f"{series} series")
    )
    for gzip_label, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
        single = timed_gets(port, "/metrics", headers, sizes.scrape_requests)
        median = statistics.median(single)
        report.add(
            Figure(
                "scrape",
                f"median_ms_1_scraper_{gzip_label}",
                median * 1000,
                "ms",
                median / base,
                against,
            )
        )
        report.add(
            Figure(
                "scrape",
                f"p99_ms_1_scraper_{gzip_label}",
                p99(single) * 1000,
                "ms",
                p99(single) / base,
                against,
            )
        )
        per_scraper = max(5, sizes.scrape_requests // 4)
        results = concurrent_gets(port, headers, per_scraper)
        report.add(
            Figure(
                "scrape",
                f"median_ms_20_scrapers_{gzip_label}",
                statistics.median(results) * 1000,
                "ms",
                statistics.median(results) / base,
                against,
            )
        )
        report.add(
            Figure(
                "scrape",
                f"p99_ms_20_scrapers_{gzip_label}",
                p99(results) * 1000,
                "ms",
                p99(results) / median,
                "vs the single-scraper median",
            )
        )

    for gzip_label, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
        against_floor(stack, sizes, report, gzip_label, headers)


def against_floor(
    stack: Stack, sizes: Sizes, report: Report, label: str, headers: dict[str, str]
) -> None:
    """The exporter's p99 under 20 scrapers against two servers answering the same bytes: the
    do-nothing one (the machine's floor) and the standard library's ``http.server`` with the
    least a handler can do (what any server on it pays). Measured in interleaved rounds, the
    three one after the other each round, and each ratio the median of the rounds': a 2-core
    machine shared by 20 client processes swings a p99 by half from one run to the next."""
    _, body = stack.exporter.get("/metrics", headers)
    per_scraper = max(5, sizes.scrape_requests // 2)
    servers = {"trivial": TrivialServer(body), "stdlib": StdlibServer(body)}
    ports = {"exporter": (stack.exporter.port, headers)}
    ports.update({name: (server.port, {}) for name, server in servers.items()})
    rounds: dict[str, list[float]] = {name: [] for name in ports}
    try:
        for _ in range(sizes.floor_rounds):
            for name, (port, sent) in ports.items():
                rounds[name].append(p99(concurrent_gets(port, sent, per_scraper)))
    finally:
        for server in servers.values():
            server.close()

    def median_ratio(top: str, bottom: str) -> float:
        return statistics.median(a / b for a, b in zip(rounds[top], rounds[bottom], strict=True))

    def ms(name: str) -> str:
        return ", ".join(f"{value * 1000:.1f}" for value in rounds[name])

    floor = statistics.median(rounds["trivial"])
    report.add(
        Figure(
            "scrape",
            f"p99_ms_20_scrapers_{label}_trivial_server",
            floor * 1000,
            "ms",
            None,
            f"floor: a do-nothing server; p99 per round {ms('trivial')} ms",
        )
    )
    report.add(
        Figure(
            "scrape",
            f"p99_20_scrapers_{label}_stdlib_server_vs_floor",
            statistics.median(rounds["stdlib"]) * 1000,
            "ms",
            median_ratio("stdlib", "trivial"),
            f"http.server answering the same bytes; p99 per round {ms('stdlib')} ms",
        )
    )
    report.add(
        Figure(
            "scrape",
            f"p99_20_scrapers_{label}_vs_stdlib_server",
            statistics.median(rounds["exporter"]) * 1000,
            "ms",
            median_ratio("exporter", "stdlib"),
            "the exporter against http.server doing nothing else, same clients and rounds",
        )
    )
    report.add(
        Figure(
            "scrape",
            f"p99_20_scrapers_{label}_vs_floor",
            statistics.median(rounds["exporter"]) * 1000,
            "ms",
            median_ratio("exporter", "trivial"),
            f"median of {sizes.floor_rounds} rounds' ratios; exporter p99 per round "
            f"{ms('exporter')} ms, the do-nothing server's {ms('trivial')} ms",
            P99_VS_FLOOR_TARGET,
        )
    )


def generate_latest_median(body: bytes, runs: int) -> tuple[float, int]:
    """prometheus_client's ``generate_latest`` over the series of ``body``: (median s, series)."""
    families = list(text_string_to_metric_families(body.decode()))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))  # type: ignore[arg-type]
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        generate_latest(registry)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), sum(len(f.samples) for f in families)
