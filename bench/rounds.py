"""Rounds, footprint and economy: how long a round of polls takes against its ideal, what a
tenant costs in memory and CPU, and how many token and report requests a tenant needs."""

from __future__ import annotations

import math
import time
from pathlib import Path

from bench.figures import (
    Figure,
    Report,
    Sizes,
    Stack,
    first_event,
    start_stack,
    wait_for_events,
)
from bench.harness import wait_for

COLD_TARGET = 1.3  # x ideal, discovery and token included
WARM_TARGET = 1.1


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
        round_one = wait_for_events(stack.sim, "report", tenants, 300, "round 1")
        cpu_cold = stack.exporter.sample().cpu_seconds
        round_two = wait_for_events(stack.sim, "report", 2 * tenants, 300 + interval, "round 2")
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
                Figure(
                    "fanout",
                    f"cold_round_seconds@{tenants}",
                    cold,
                    "s",
                    cold / ideal,
                    against,
                    COLD_TARGET,
                )
            )
            report.add(
                Figure(
                    "fanout",
                    f"warm_round_seconds@{tenants}",
                    warm,
                    "s",
                    warm / ideal,
                    against,
                    WARM_TARGET,
                )
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
