"""N tenants measured, not extrapolated (10,000 in ``make bench``), with and without segments.

Without segments, at the rounds' latency and concurrency: time from the exporter's start to
``/readyz`` 200, the cold round, the warm round against ``ceil(N / C) * latency``, RSS after the
warm round, and ``/metrics`` (size, median of single scrapes) against ``generate_latest`` over
the same series. With segments on every tenant (20 users each, privileged roles, two groups),
at zero latency (a poll is then four requests, and what is measured is memory and the scrape):
the same, less the rounds.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from types import MappingProxyType

from bench.figures import Figure, Report, Sizes, Stack, span, start_stack, wait_for_events
from bench.scrapes import generate_latest_median, timed_gets
from entra_simulator.conditional_access import EXCLUSIONS

# Issue 28's budgets: RSS at 1,000 and at 10,000 tenants, every family of the contract (the
# enforcement collector's too, when on); segments have their own (bench.counting).
RSS_TARGETS_MB = MappingProxyType({1000: 100.0, 10000: 450.0})
SCRAPE_TARGET = 0.05  # x generate_latest over the same series
WARM_TARGET = 1.1  # x ideal


def _interval(sizes: Sizes, tenants: int) -> float:
    """Long enough for a cold round (CPU-bound past a few thousand tenants) to end first."""
    ideal = math.ceil(tenants / sizes.concurrency) * sizes.latency
    return max(3.0, 3 * ideal, 0.015 * tenants)


def at_scale(
    workdir: Path,
    sizes: Sizes,
    report: Report,
    with_segments: bool,
    with_enforcement: bool = False,
    tenants: int | None = None,
) -> None:
    """Scenario: N tenants in one exporter (``tenants``, by default the sizes' N); with
    segments, or with ``enforcement: true`` (20 users each on userRegistrationDetails, five
    Conditional Access policies with a break-glass exclusion group), measured once every
    tenant was polled."""
    tenants = tenants or sizes.scale_tenants
    label = "enforcement" if with_enforcement else "segments" if with_segments else "plain"
    folder = workdir / f"scale-{label}-{tenants}"
    folder.mkdir()
    waits = with_segments or with_enforcement
    latency = 0.0 if waits else sizes.latency
    interval = 3600.0 if waits else _interval(sizes, tenants)
    extra: tuple[str, ...] = ()
    if with_segments:
        extra = ("--users=20", "--segments")
    elif with_enforcement:
        extra = ("--users=20", f"--conditional-access={EXCLUSIONS}")
    started = time.time()
    stack = start_stack(
        folder,
        tenants,
        latency=latency,
        concurrency=sizes.concurrency,
        interval=interval,
        extra_args=extra,
    )
    try:
        exporter_started = stack.exporter.started_at
        stack.exporter.wait_ready(timeout=1800)
        ready = time.time() - exporter_started
        if not waits:
            _rounds(stack, sizes, report, tenants, interval)
        rss = stack.exporter.sample().rss_bytes
        _scrape(stack, sizes, report, f"{label}@{tenants}")
    finally:
        stack.stop()
    name = f"{label}@{tenants}"
    report.add(
        Figure("scale", f"seconds_to_ready_{name}", ready, "s", None,
               f"simulator up {exporter_started - started:.1f}s after the start")
    )  # fmt: skip
    report.add(
        Figure(
            "scale",
            f"rss_mb_{name}",
            rss / 2**20,
            "MB",
            target=None if with_segments else RSS_TARGETS_MB.get(tenants),
        )
    )


def _rounds(stack: Stack, sizes: Sizes, report: Report, tenants: int, interval: float) -> None:
    calls = wait_for_events(stack.sim, "report", 2 * tenants, 2 * interval + 600, "two rounds")
    ideal = math.ceil(tenants / sizes.concurrency) * sizes.latency
    against = f"ideal ceil({tenants}/{sizes.concurrency})*{sizes.latency}s={ideal:.1f}s"
    cold, warm = span(calls[:tenants]), span(calls[tenants : 2 * tenants])
    report.add(Figure("scale", f"cold_round_seconds@{tenants}", cold, "s", cold / ideal, against))
    report.add(
        Figure(
            "scale", f"warm_round_seconds@{tenants}", warm, "s", warm / ideal, against, WARM_TARGET
        )
    )


def _scrape(stack: Stack, sizes: Sizes, report: Report, name: str) -> None:
    status, body = stack.exporter.get("/metrics", timeout=120)
    assert status == 200
    base, series = generate_latest_median(body, 3)
    single = timed_gets(stack.exporter.port, "/metrics", {}, max(10, sizes.scrape_requests // 10))
    median = statistics.median(single)
    report.add(Figure("scale", f"series_{name}", series, "series"))
    report.add(Figure("scale", f"exposition_mb_{name}", len(body) / 2**20, "MB"))
    report.add(
        Figure(
            "scale",
            f"scrape_median_ms_{name}",
            median * 1000,
            "ms",
            median / base,
            f"generate_latest median {base * 1000:.0f}ms over {series} series",
            SCRAPE_TARGET,
        )
    )
