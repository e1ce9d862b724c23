"""Segments and counting: N tenants with segments (series, RSS, scrape), and one tenant of U
users polled with and without segments (exporter CPU per user, peak RSS), with the JSON
decoders measured side by side on the same pages."""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import time
from pathlib import Path

import orjson
import yaml

from bench.figures import FAST_LIMITS, Figure, Report, Sizes, start_stack
from bench.harness import ExporterProcess, SimulatorProcess, wait_for
from bench.scrapes import generate_latest_median, timed_gets
from entra_simulator.conditional_access import BENCH as BENCH_POLICIES
from entra_simulator.directory import MAX_PAGE, detail_user, make_tenant
from exporter.reports.details import DETAIL_FIELDS, decode_details_page

USERS_PER_CPU_SECOND_TARGET = 250_000.0
CLOCK_TICK = 1 / os.sysconf("SC_CLK_TCK")
SEGMENTS_COST_TARGET = 1.5  # x the poll CPU without segments
PEAK_RSS_GROWTH_TARGET_MB = 40.0
ENFORCEMENT_COST_TARGET = 1.15  # x the poll CPU with segments alone
ENFORCEMENT_RSS_TARGET_MB = 10.0


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
        single = timed_gets(stack.exporter.port, "/metrics", {}, sizes.scrape_requests)
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


LABELS = ("plain", "segments", "enforcement")


def _big_simulator(workdir: Path, sizes: Sizes, label: str) -> SimulatorProcess:
    """The big tenant's simulator for polls of ``label``: without segments (plain), with
    segments, or with segments and 20 Conditional Access policies naming 10 groups, classed in
    the same pass (enforcement)."""
    users = sizes.big_tenant_users
    folder = workdir / f"big-{label}"
    folder.mkdir()
    enforcement = (f"--conditional-access={BENCH_POLICIES}",) if label == "enforcement" else ()
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
            *enforcement,
        ),
    )
    if label == "plain":
        document = yaml.safe_load(sim.config_file.read_text())
        del document["tenants"][0]["segments"]
        sim.config_file.write_text(yaml.safe_dump(document))
    return sim


def big_tenant_polls(workdir: Path, sizes: Sizes) -> dict[str, list[tuple[float, int, int]]]:
    """Polls of the big tenant, each by a new exporter, for each label: (exporter CPU seconds,
    peak RSS, RSS when idle) of each poll.

    The CPU is the exporter's from ``/healthz`` answering (imports done) to ``/readyz``
    answering (the poll recorded): the poll itself, token included. A 2-core machine shared
    with the simulator varies by some 10 % from poll to poll and drifts over minutes, so the
    labels take turns (plain, segments, enforcement, plain, ...) rather than one after the other.
    """
    sims = {label: _big_simulator(workdir, sizes, label) for label in LABELS}
    polls: dict[str, list[tuple[float, int, int]]] = {label: [] for label in LABELS}
    try:
        for n in range(sizes.big_tenant_polls):
            for label, sim in sims.items():
                log_file = sim.config_file.parent / f"exporter-{n}.log"
                polls[label].append(_one_poll(sim, log_file))
    finally:
        for sim in sims.values():
            sim.stop()
    return polls


def _one_poll(sim: SimulatorProcess, log_file: Path) -> tuple[float, int, int]:
    exporter = ExporterProcess(sim.config_file, log_file)
    try:
        wait_for(lambda: exporter.get("/healthz", timeout=5)[0] == 200, 60, "exporter up")
        idle = exporter.sample()
        # Asked twice a second: probes answered while the poll runs count as its CPU.
        exporter.wait_ready(timeout=900, interval=0.5)
        done = exporter.sample()
        _, body = exporter.get("/metrics")
        assert b'entra_exporter_tenant_up{tenant="tenant-0000"} 1' in body, "poll failed"
    finally:
        exporter.stop()
    return done.cpu_seconds - idle.cpu_seconds, done.peak_rss_bytes, idle.rss_bytes


def big_tenant(workdir: Path, sizes: Sizes, report: Report) -> None:
    """Scenario 5b: one tenant of U users, with and without segments (median of the polls)."""
    users = sizes.big_tenant_users
    medians, growths = {}, {}
    every_poll = big_tenant_polls(workdir, sizes)
    for label, polls in every_poll.items():
        seconds, top, base = sorted(polls)[len(polls) // 2]
        # CPU is read from /proc in clock ticks: a poll under one tick (a smoke run's small
        # tenant) counts as one, so users per second is a lower bound there, never a division
        # by zero.
        seconds = max(seconds, CLOCK_TICK)
        medians[label] = seconds
        spread = ", ".join(f"{cpu:.3f}" for cpu, _, _ in polls)
        report.add(
            Figure(
                "segments",
                f"poll_cpu_seconds_{label}@{users}",
                seconds,
                "s",
                None,
                f"median of {len(polls)} polls: {spread} s",
            )
        )
        report.add(
            Figure(
                "segments",
                f"users_per_cpu_second_{label}@{users}",
                users / seconds,
                "users/s",
                target=USERS_PER_CPU_SECOND_TARGET if label == "plain" else None,
                at_least=True,
            )
        )
        growth = growths[label] = max(peak - idle for _, peak, idle in polls)
        report.add(
            Figure(
                "segments",
                f"peak_rss_growth_mb_{label}@{users}",
                growth / 2**20,
                "MB",
                None,
                f"the most of {len(polls)} polls; peak {top / 2**20:.1f} MB over idle "
                f"{base / 2**20:.1f} MB in the median one",
                # Enforcement's own target is its growth over segments (below).
                None if label == "enforcement" else PEAK_RSS_GROWTH_TARGET_MB,
            )
        )
    report.add(
        Figure(
            "segments",
            f"segments_cpu_cost@{users}",
            medians["segments"] / medians["plain"],
            "x",
            medians["segments"] / medians["plain"],
            "median poll CPU with segments vs without, same tenant",
            SEGMENTS_COST_TARGET,
        )
    )
    _enforcement_cost(users, every_poll, medians, growths, report)


def _enforcement_cost(
    users: int,
    every_poll: dict[str, list[tuple[float, int, int]]],
    medians: dict[str, float],
    growths: dict[str, int],
    report: Report,
) -> None:
    """What classing every user against 20 policies naming 10 groups adds to a segments poll
    (the policies' own reads and their groups' look-ups included): the median over the turns
    of (enforcement poll CPU / the segments poll CPU of the same turn)."""
    turns = zip(every_poll["enforcement"], every_poll["segments"], strict=True)
    ratios = sorted(enforced[0] / max(alone[0], CLOCK_TICK) for enforced, alone in turns)
    ratio = ratios[len(ratios) // 2]
    spread = ", ".join(f"{r:.3f}" for r in ratios)
    report.add(
        Figure(
            "enforcement",
            f"enforcement_cpu_cost@{users}",
            ratio,
            "x",
            ratio,
            f"poll CPU with enforcement (20 policies, 10 groups) / segments alone, median of "
            f"{len(ratios)} turns ({spread}); the medians' ratio "
            f"{medians['enforcement'] / medians['segments']:.3f}",
            ENFORCEMENT_COST_TARGET,
        )
    )
    extra = (growths["enforcement"] - growths["segments"]) / 2**20
    report.add(
        Figure(
            "enforcement",
            f"enforcement_peak_rss_extra_mb@{users}",
            max(0.0, extra),  # below zero is the polls' noise: none extra
            "MB",
            None,
            f"peak RSS growth with enforcement minus that of segments alone ({extra:+.2f} MB)",
            ENFORCEMENT_RSS_TARGET_MB,
        )
    )


def decoders(sizes: Sizes, report: Report) -> None:
    """The standard library's json (into dicts) against msgspec (into the exporter's typed
    rows, types checked) and orjson (into dicts), on the same pages of userRegistrationDetails.

    The pages are the simulator's own (its users, the exporter's ``$select``), decoded here in
    one process: CPU seconds per user, best of five, and each ratio to the standard library.
    """
    rng = random.Random(1)
    tenant = make_tenant(0, rng)
    users = min(sizes.big_tenant_users, 50_000)
    tenant.users = users
    pages = []
    for start in range(0, users, MAX_PAGE):
        rows = [
            {field: user[field] for field in DETAIL_FIELDS if field in user}
            for user in (detail_user(tenant, i) for i in range(start, min(users, start + MAX_PAGE)))
        ]
        pages.append(json.dumps({"@odata.context": "x", "value": rows}).encode())
    timings = {}
    decoders = (
        ("stdlib", json.loads),
        ("msgspec_typed", decode_details_page),
        ("orjson", orjson.loads),
    )
    for name, loads in decoders:
        best = math.inf
        for _ in range(5):
            started = time.process_time()
            for page in pages:
                loads(page)
            best = min(best, time.process_time() - started)
        timings[name] = best / users
        report.add(Figure("counting", f"decode_us_per_user_{name}", timings[name] * 1e6, "us"))
    for name in ("msgspec_typed", "orjson"):
        report.add(
            Figure(
                "counting",
                f"decode_{name}_vs_stdlib",
                timings[name] * 1e6,
                "us",
                timings[name] / timings["stdlib"],
                f"the standard library's {timings['stdlib'] * 1e6:.2f} us/user, same pages",
            )
        )
