"""Benchmarks: ``make bench`` or ``python -m bench [--smoke] [--only NAME ...]``.

The simulator and the exporter each run as their own process. Every figure is printed in a
table and as one JSON line (``{"benchmark": ..., "figure": ..., "value": ..., "ratio": ...}``);
ratios compare with an ideal or a baseline measured in the same run. Nothing is asserted here.

Scenarios (sizes settable, defaults as in docs/performance.md):

1. fanout — N tenants, report latency L, ``concurrency`` C, jitter 0: cold round (discovery +
   token + report) and warm round (cached tokens), each against ``ceil(N / C) * L``.
2. scrape — ``/metrics`` at N tenants: median and p99 with 1 and with 20 concurrent scrapers,
   plain and gzip, against prometheus_client's ``generate_latest`` over the same series.
3. footprint — RSS and CPU after two rounds at 1, 100 and N tenants; KB per tenant; CPU ms per
   cold and warm poll.
4. economy — token lifetime 120 s, interval 10 s, 6 minutes: token and Graph requests per
   tenant against the minimum (one token per lifetime, one report call per interval).
5. segments — N tenants of 100 users on userRegistrationDetails with segments (privileged
   roles, two groups): series, RSS, scrape median against ``generate_latest``; and one tenant
   of U users (200,000) with two groups of U/4 and 500 privileged admins, polled with and
   without segments: exporter CPU for the poll, users counted per CPU-second, peak RSS over the
   idle exporter.
6. pacing — N tenants of one app against a simulator enforcing Graph's documented limits
   (5/10 s per app per tenant, 122/10 s per app): round time against the minimum the limits
   allow, and the answers the simulator refused (429).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import ExporterProcess, SimulatorProcess, wait_for

FAST_LIMITS = {"per_app_per_tenant": "1000/1s", "per_app": "100000/1s"}


@dataclass(frozen=True)
class Figure:
    """One measured figure, with its ratio to an ideal or baseline where there is one."""

    benchmark: str
    figure: str
    value: float
    unit: str
    ratio: float | None = None
    against: str = ""

    def json_line(self) -> str:
        return json.dumps(
            {
                "benchmark": self.benchmark,
                "figure": self.figure,
                "value": round(self.value, 6),
                "unit": self.unit,
                "ratio": None if self.ratio is None else round(self.ratio, 4),
                "against": self.against,
            }
        )


class Report:
    """Collects figures and prints them as they come."""

    def __init__(self) -> None:
        self.figures: list[Figure] = []

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        ratio = "" if figure.ratio is None else f"{figure.ratio:8.3f}x {figure.against}"
        print(
            f"{figure.benchmark:10} {figure.figure:40} {figure.value:14.4f} {figure.unit:8} {ratio}"
        )
        print(figure.json_line(), flush=True)


@dataclass(frozen=True)
class Sizes:
    big_tenant_users: int
    tenants: int
    latency: float
    concurrency: int
    footprint_sizes: tuple[int, ...]
    scrape_requests: int
    economy_tenants: int
    economy_seconds: float
    economy_lifetime: int
    economy_interval: int


FULL = Sizes(200_000, 1000, 0.25, 50, (1, 100, 1000), 200, 100, 360.0, 120, 10)
SMOKE = Sizes(4_000, 20, 0.02, 5, (1, 20), 20, 5, 12.0, 4, 1)


@dataclass
class Stack:
    sim: SimulatorProcess
    exporter: ExporterProcess

    def stop(self) -> None:
        self.exporter.stop()
        self.sim.stop()


def start_stack(
    workdir: Path,
    tenants: int,
    *,
    latency: float,
    concurrency: int,
    interval: float,
    token_lifetime: int = 3599,
    extra_args: tuple[str, ...] = (),
) -> Stack:
    sim = SimulatorProcess(
        workdir,
        tenants,
        latency=f"{round(latency * 1000)}ms",
        token_lifetime=token_lifetime,
        interval=f"{max(1, round(interval))}s",
        jitter="0s",
        timeout="30s",
        config_overrides={"concurrency": concurrency, "rate_limits": FAST_LIMITS},
        extra_args=extra_args,
    )
    exporter = ExporterProcess(sim.config_file, workdir / "exporter.log")
    return Stack(sim, exporter)


def reports(sim: SimulatorProcess) -> list[tuple[float, float]]:
    """(arrival, completion) of every report call so far, in arrival order."""
    events = sim.call("/_sim/events")["events"]
    return sorted((start, end) for kind, _, _, start, end in events if kind == "report")


def first_event(sim: SimulatorProcess) -> float:
    return min(start for _, _, _, start, _ in sim.call("/_sim/events")["events"])


# --------------------------------------------------------------------------- scenarios


def round_interval(sizes: Sizes, tenants: int) -> float:
    """An interval long enough for a cold round to finish well before the next round."""
    ideal = math.ceil(tenants / sizes.concurrency) * sizes.latency
    return max(3.0, 6 * ideal)


def fanout_and_footprint(workdir: Path, sizes: Sizes, report: Report) -> Stack:
    """Scenarios 1 and 3; returns the running N-tenant stack for the scrape scenario."""
    footprints: dict[int, tuple[float, float, float]] = {}
    stack = None
    for tenants in sizes.footprint_sizes:
        if stack is not None:
            stack.stop()
        folder = workdir / f"fanout-{tenants}"
        folder.mkdir()
        interval = round_interval(sizes, tenants)
        stack = start_stack(
            folder, tenants, latency=sizes.latency, concurrency=sizes.concurrency, interval=interval
        )
        wait_for(lambda s=stack: s.exporter.get("/healthz", timeout=5)[0] == 200, 60, "exporter up")
        cpu_start = stack.exporter.sample().cpu_seconds
        round_one = wait_for(
            lambda s=stack, n=tenants: len(r := reports(s.sim)) >= n and r, 300, "round 1"
        )
        cpu_cold = stack.exporter.sample().cpu_seconds
        round_two = wait_for(
            lambda s=stack, n=tenants: len(r := reports(s.sim)) >= 2 * n and r,
            300 + interval,
            "round 2",
        )
        sample = stack.exporter.sample()
        cold_start = first_event(stack.sim)
        cold = max(end for _, end in round_one[:tenants]) - cold_start
        warm_calls = round_two[tenants : 2 * tenants]
        warm = max(end for _, end in warm_calls) - min(start for start, _ in warm_calls)
        footprints[tenants] = (
            sample.rss_bytes,
            (cpu_cold - cpu_start) / tenants,
            (sample.cpu_seconds - cpu_cold) / tenants,
        )
        if tenants == sizes.tenants:
            ideal = math.ceil(tenants / sizes.concurrency) * sizes.latency
            against = f"ideal ceil({tenants}/{sizes.concurrency})*{sizes.latency}s={ideal:.2f}s"
            report.add(
                Figure("fanout", f"cold_round_seconds@{tenants}", cold, "s", cold / ideal, against)
            )
            report.add(
                Figure("fanout", f"warm_round_seconds@{tenants}", warm, "s", warm / ideal, against)
            )
    assert stack is not None
    smallest = min(footprints)
    for tenants, (rss, cpu_cold_per, cpu_warm_per) in sorted(footprints.items()):
        report.add(Figure("footprint", f"rss_mb@{tenants}", rss / 2**20, "MB"))
        report.add(
            Figure("footprint", f"cpu_ms_per_cold_poll@{tenants}", cpu_cold_per * 1000, "ms")
        )
        report.add(
            Figure("footprint", f"cpu_ms_per_warm_poll@{tenants}", cpu_warm_per * 1000, "ms")
        )
        if tenants != smallest:
            per_tenant = (rss - footprints[smallest][0]) / (tenants - smallest) / 1024
            report.add(
                Figure(
                    "footprint",
                    f"kb_per_tenant@{tenants}",
                    per_tenant,
                    "KB",
                    None,
                    f"vs {smallest} tenant(s)",
                )
            )
    return stack


def _timed_gets(port: int, path: str, headers: dict[str, str], count: int) -> list[float]:
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


def _p99(values: list[float]) -> float:
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
        batches = pool.starmap(_timed_gets, [(port, "/metrics", headers, per_scraper)] * 20)
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
        single = _timed_gets(port, "/metrics", headers, sizes.scrape_requests)
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
                _p99(single) * 1000,
                "ms",
                _p99(single) / base,
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
                _p99(results) * 1000,
                "ms",
                _p99(results) / median,
                "vs the single-scraper median",
            )
        )

    # The same bodies from a trivial server, measured the same way: the machine's floor.
    for gzip_label, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
        _, body = stack.exporter.get("/metrics", headers)
        trivial = TrivialServer(body)
        try:
            single = _timed_gets(trivial.port, "/metrics", {}, sizes.scrape_requests)
            results = concurrent_gets(trivial.port, {}, max(5, sizes.scrape_requests // 4))
        finally:
            trivial.close()
        median = statistics.median(single)
        report.add(
            Figure(
                "scrape",
                f"p99_ms_20_scrapers_{gzip_label}_trivial_server",
                _p99(results) * 1000,
                "ms",
                _p99(results) / median,
                "floor: a do-nothing server, vs its single-scraper median",
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


def segments_at_scale(workdir: Path, sizes: Sizes, report: Report) -> None:
    """Scenario 5a: N small tenants, all with segments."""
    folder = workdir / "segments-many"
    folder.mkdir()
    stack = start_stack(
        folder,
        sizes.tenants,
        latency=0.0,
        concurrency=sizes.concurrency,
        interval=600,
        extra_args=("--users=100", "--segments"),
    )
    try:
        stack.exporter.wait_ready(timeout=600)
        status, body = stack.exporter.get("/metrics")
        assert status == 200
        base, series = generate_latest_median(body, max(5, sizes.scrape_requests // 10))
        single = _timed_gets(stack.exporter.port, "/metrics", {}, sizes.scrape_requests)
        rss = stack.exporter.sample().rss_bytes
    finally:
        stack.stop()
    n = sizes.tenants
    report.add(Figure("segments", f"series@{n}", series, "series", series / n, "per tenant"))
    report.add(Figure("segments", f"rss_mb@{n}", rss / 2**20, "MB"))
    median = statistics.median(single)
    report.add(
        Figure(
            "segments",
            f"scrape_median_ms@{n}",
            median * 1000,
            "ms",
            median / base,
            f"generate_latest median {base * 1000:.2f}ms over {series} series",
        )
    )


def big_tenant_poll(workdir: Path, sizes: Sizes, with_segments: bool) -> tuple[float, int, int]:
    """One poll of the big tenant: (exporter CPU seconds, peak RSS, RSS when idle).

    The CPU is the exporter's from ``/healthz`` answering (imports done) to ``/readyz``
    answering (the poll recorded): the poll itself, token included.
    """
    users = sizes.big_tenant_users
    folder = workdir / f"big-{'segments' if with_segments else 'plain'}"
    folder.mkdir()
    sim = SimulatorProcess(
        folder,
        1,
        interval="1h",
        config_overrides={"concurrency": 8, "rate_limits": FAST_LIMITS},
        extra_args=(
            f"--users={users}",
            "--segments",
            f"--group-size={users // 4}",
            "--privileged-admins=500",
        ),
    )
    if not with_segments:
        document = yaml.safe_load(sim.config_file.read_text())
        del document["tenants"][0]["segments"]
        sim.config_file.write_text(yaml.safe_dump(document))
    stack = Stack(sim, ExporterProcess(sim.config_file, folder / "exporter.log"))
    try:
        wait_for(lambda: stack.exporter.get("/healthz", timeout=5)[0] == 200, 60, "exporter up")
        idle = stack.exporter.sample()
        stack.exporter.wait_ready(timeout=900)
        done = stack.exporter.sample()
        _, body = stack.exporter.get("/metrics")
        assert b'entra_exporter_tenant_up{tenant="tenant-0000"} 1' in body, "poll failed"
    finally:
        stack.stop()
    return done.cpu_seconds - idle.cpu_seconds, done.peak_rss_bytes, idle.rss_bytes


def big_tenant(workdir: Path, sizes: Sizes, report: Report) -> None:
    """Scenario 5b: one tenant of U users, with and without segments."""
    users = sizes.big_tenant_users
    plain_cpu, plain_peak, plain_idle = big_tenant_poll(workdir, sizes, with_segments=False)
    cpu, peak, idle = big_tenant_poll(workdir, sizes, with_segments=True)
    for label, seconds, top, base in (
        ("plain", plain_cpu, plain_peak, plain_idle),
        ("segments", cpu, peak, idle),
    ):
        report.add(Figure("segments", f"poll_cpu_seconds_{label}@{users}", seconds, "s"))
        report.add(
            Figure(
                "segments",
                f"users_per_cpu_second_{label}@{users}",
                users / seconds,
                "users/s",
            )
        )
        report.add(
            Figure(
                "segments",
                f"peak_rss_growth_mb_{label}@{users}",
                (top - base) / 2**20,
                "MB",
                None,
                f"peak {top / 2**20:.1f} MB over idle {base / 2**20:.1f} MB",
            )
        )
    report.add(
        Figure(
            "segments",
            f"segments_cpu_cost@{users}",
            cpu / plain_cpu,
            "x",
            cpu / plain_cpu,
            "poll CPU with segments vs without, same tenant",
        )
    )


def pacing(workdir: Path, sizes: Sizes, report: Report) -> None:
    """Scenario 6: one app, N tenants, Graph's real limits enforced by the simulator."""
    folder = workdir / "pacing"
    folder.mkdir()
    tenants = sizes.tenants
    sim = SimulatorProcess(
        folder,
        tenants,
        interval="1h",
        config_overrides={"concurrency": sizes.concurrency},  # Graph's documented limits
        extra_args=("--enforce-limits", "--one-app"),
    )
    stack = Stack(sim, ExporterProcess(sim.config_file, folder / "exporter.log"))
    try:
        calls = wait_for(lambda: len(r := reports(sim)) >= tenants and r, 600, "pacing round")
        refused = sim.stats()["refused_by_limits"]
    finally:
        stack.stop()
    span = max(end for _, end in calls[:tenants]) - min(start for start, _ in calls[:tenants])
    # The last of N arrivals can come no sooner than floor((N-1)/122) windows after the first.
    minimum = ((tenants - 1) // 122) * 10.0
    against = f"minimum floor(({tenants}-1)/122)*10s={minimum:.0f}s"
    report.add(
        Figure("pacing", f"round_seconds@{tenants}", span, "s", span / max(minimum, 1.0), against)
    )
    report.add(Figure("pacing", f"refused_by_graph@{tenants}", refused, "429s", None, "target 0"))


def economy(workdir: Path, sizes: Sizes, report: Report) -> None:
    """Scenario 4."""
    folder = workdir / "economy"
    folder.mkdir()
    stack = start_stack(
        folder,
        sizes.economy_tenants,
        latency=0.0,
        concurrency=32,
        interval=sizes.economy_interval,
        token_lifetime=sizes.economy_lifetime,
    )
    try:
        wait_for(lambda: stack.exporter.get("/healthz", timeout=5)[0] == 200, 60, "exporter up")
        wait_for(lambda: stack.sim.stats()["graph_requests"] > 0, 60, "first poll")
        started = first_event(stack.sim)
        time.sleep(max(0.0, started + sizes.economy_seconds - time.time() - 0.5))
        stats = stack.sim.stats()
    finally:
        stack.stop()
    tenants = sizes.economy_tenants
    tokens = stats["token_requests"] / tenants
    graph = stats["graph_requests"] / tenants
    min_tokens = math.ceil(sizes.economy_seconds / sizes.economy_lifetime)
    min_graph = math.floor(sizes.economy_seconds / sizes.economy_interval)
    report.add(
        Figure(
            "economy",
            "token_requests_per_tenant",
            tokens,
            "req",
            tokens / min_tokens,
            f"minimum {min_tokens} (one per {sizes.economy_lifetime}s lifetime)",
        )
    )
    report.add(
        Figure(
            "economy",
            "graph_requests_per_tenant",
            graph,
            "req",
            graph / min_graph,
            f"minimum {min_graph} (one per {sizes.economy_interval}s interval)",
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print every figure."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, a few seconds (the test suite's run)"
    )
    parser.add_argument("--tenants", type=int, help="N for fanout and scrape (default 1000)")
    parser.add_argument("--latency", type=float, help="report latency in seconds (default 0.25)")
    parser.add_argument("--concurrency", type=int, help="exporter concurrency (default 50)")
    parser.add_argument(
        "--economy-seconds", type=float, help="length of the economy run (default 360)"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["fanout", "scrape", "footprint", "economy", "segments", "pacing"],
        help="run only these",
    )
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    overrides: dict[str, Any] = {}
    if args.tenants:
        overrides["tenants"] = args.tenants
        overrides["footprint_sizes"] = tuple(
            sorted({s for s in sizes.footprint_sizes if s < args.tenants} | {args.tenants})
        )
    if args.latency is not None:
        overrides["latency"] = args.latency
    if args.concurrency:
        overrides["concurrency"] = args.concurrency
    if args.economy_seconds:
        overrides["economy_seconds"] = args.economy_seconds
    sizes = Sizes(**{**sizes.__dict__, **overrides})
    only = set(args.only or ["fanout", "scrape", "footprint", "economy", "segments", "pacing"])
    report = Report()
    print(f"{'benchmark':10} {'figure':40} {'value':>14} {'unit':8} ratio")
    with tempfile.TemporaryDirectory(prefix="entra-bench-") as name:
        workdir = Path(name)
        if only & {"fanout", "scrape", "footprint"}:
            stack = fanout_and_footprint(workdir, sizes, report)
            try:
                if "scrape" in only:
                    scrape(stack, sizes, report)
            finally:
                stack.stop()
        if "economy" in only:
            economy(workdir, sizes, report)
        if "segments" in only:
            segments_at_scale(workdir, sizes, report)
            big_tenant(workdir, sizes, report)
        if "pacing" in only:
            pacing(workdir, sizes, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
