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
    loaded: dict[str, float] = {}
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
        loaded[gzip_label] = p99(results)
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

    # The same bodies from a trivial server, measured the same way: the machine's floor.
    for gzip_label, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
        _, body = stack.exporter.get("/metrics", headers)
        trivial = TrivialServer(body)
        try:
            single = timed_gets(trivial.port, "/metrics", {}, sizes.scrape_requests)
            results = concurrent_gets(trivial.port, {}, max(5, sizes.scrape_requests // 4))
        finally:
            trivial.close()
        median = statistics.median(single)
        floor = p99(results)
        report.add(
            Figure(
                "scrape",
                f"p99_ms_20_scrapers_{gzip_label}_trivial_server",
                floor * 1000,
                "ms",
                floor / median,
                "floor: a do-nothing server, vs its single-scraper median",
            )
        )
        report.add(
            Figure(
                "scrape",
                f"p99_20_scrapers_{gzip_label}_vs_floor",
                loaded[gzip_label] * 1000,
                "ms",
                loaded[gzip_label] / floor,
                f"the do-nothing server's p99 {floor * 1000:.1f}ms, same clients, same run",
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
