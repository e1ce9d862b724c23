"""Pacing at Graph's documented limits, against a simulator that enforces them as Graph does.

Three scenarios, each against its own simulator (``--enforce-limits``: sliding windows per app
and per app + tenant, counted at arrival, 429 past them) and each measured as its round's span
(first arrival to last completion) against the least the limits allow, with the answers the
simulator refused:

- one app, N tenants (seed source): the app's window is the bound, floor((N-1)/122) windows;
- one tenant of U users on userRegistrationDetails, at the simulator's 999-row pages and at a
  smaller page size: the tenant's window is the bound, floor((pages-1)/5) windows;
- three replicas (``--shard.count 3``) sharing the app of N tenants: each paces to a third of
  the app's limit by default, so together they never cross it; the bound is the one-app one.

- one tenant of U users (the big tenant's 200,000 in full runs) with segments (2 groups of
  U/4, P privileged admins) and readiness:
  role assignments and group members are paced by the identity and access *service* budget
  (resource units), the report's pages by the reports budget; the poll's span is compared
  with the least both allow, and beside it with the least the reports budget alone would
  allow had every request been on it (how the exporter paced before);
- one app, N tenants with ``policy: true``: the policy GETs spend the service budget, so the
  round's bound stays the reports budget's one-app one;
- one app, N tenants with ``enforcement: true``: security defaults and group look-ups on the
  service budget, Conditional Access pages at 1 per second per tenant; the same bound.

They wait on Graph's windows, not on a core, so ``python -m bench`` runs them side by side.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from bench.figures import (
    FAST_LIMITS,
    Figure,
    Report,
    Sizes,
    config_with,
    events,
    exporter_limits,
    simulator_limits,
    span,
    wait_for_events,
)
from bench.harness import ExporterProcess, SimulatorProcess
from entra_simulator.conditional_access import EXCLUSIONS, PAGE_SIZE

CA_PAGES = math.ceil(5 / PAGE_SIZE)  # EXCLUSIONS has 5 policies


def _limited_simulator(
    folder: Path, tenants: int, sizes: Sizes, *extra: str, concurrency: int = 50
) -> SimulatorProcess:
    folder.mkdir()
    return SimulatorProcess(
        folder,
        tenants,
        interval="1h",
        timeout="30s",
        config_overrides={
            "concurrency": concurrency,
            "rate_limits": exporter_limits(sizes.graph_limits),
        },
        extra_args=("--enforce-limits", f"--limits={simulator_limits(sizes.graph_limits)}", *extra),
    )


def _minimum(requests: int, limit: tuple[int, float]) -> float:
    """The least time from the first of ``requests`` arrivals to the last, at ``limit``."""
    per_window, window = limit
    return ((requests - 1) // per_window) * window


def one_app(workdir: Path, sizes: Sizes, report: Report) -> None:
    """N tenants of one app (seed source), one exporter."""
    tenants = sizes.tenants
    sim = _limited_simulator(workdir / "pacing-one-app", tenants, sizes, "--one-app")
    exporter = ExporterProcess(sim.config_file, sim.config_file.parent / "exporter.log")
    calls, refused = _paced_round(sim, [exporter], "report", tenants, 900, "pacing round")
    minimum = _minimum(tenants, sizes.graph_limits[1])
    _add(report, f"round_seconds_one_app@{tenants}", span(calls), minimum, refused, 1.05)


def paged_tenant(workdir: Path, sizes: Sizes, report: Report, page_size: int) -> None:
    """One tenant of U users on userRegistrationDetails, pages of ``page_size``."""
    users = sizes.paced_users
    pages = math.ceil(users / page_size)
    sim = _limited_simulator(
        workdir / f"pacing-paged-{page_size}",
        1,
        sizes,
        f"--users={users}",
        f"--page-size={page_size}",
        concurrency=8,
    )
    config_with(sim, source="userRegistrationDetails")
    exporter = ExporterProcess(sim.config_file, sim.config_file.parent / "exporter.log")
    calls, refused = _paced_round(sim, [exporter], "details", pages, 3600, "paged round")
    minimum = _minimum(pages, sizes.graph_limits[0])
    name = f"round_seconds_paged@{users}x{page_size}"
    _add(report, name, span(calls), minimum, refused, 1.05)


def replicas(workdir: Path, sizes: Sizes, report: Report, count: int = 3) -> None:
    """``count`` replicas (``--shard.count``) sharing one app of N tenants, one simulator."""
    tenants = sizes.tenants
    sim = _limited_simulator(workdir / "pacing-replicas", tenants, sizes, "--one-app")
    folder = sim.config_file.parent
    exporters = [
        ExporterProcess(
            sim.config_file,
            folder / f"exporter-{index}.log",
            f"--shard.count={count}",
            f"--shard.index={index}",
        )
        for index in range(count)
    ]
    calls, refused = _paced_round(sim, exporters, "report", tenants, 900, "replicas round")
    minimum = _minimum(tenants, sizes.graph_limits[1])
    name = f"round_seconds_{count}_replicas@{tenants}"
    _add(report, name, span(calls), minimum, refused, 1.1)


def directory_budget(workdir: Path, sizes: Sizes, report: Report) -> None:
    """One tenant with segments: directory look-ups on the service budget, pages on reports."""
    users = sizes.big_tenant_users  # 200,000 in full runs: 2 groups of 50,000, 500 admins
    pages = math.ceil(users / 999)
    sim = _limited_simulator(
        workdir / "pacing-directory",
        1,
        sizes,
        f"--users={users}",
        "--segments",
        f"--group-size={users // 4}",
        f"--privileged-admins={sizes.paced_admins}",
        concurrency=8,
    )
    exporter = ExporterProcess(sim.config_file, sim.config_file.parent / "exporter.log")
    try:
        wait_for_events(sim, "details", pages, 3600, "directory round")
        directory = events(sim, "directory")
        details = events(sim, "details")[:pages]
        refused = int(sim.stats()["refused_by_limits"])
        refused += int(sim.stats()["refused_by_service_limits"])
    finally:
        exporter.stop()
        sim.stop()
    seconds = span(directory + details)
    minimum = _minimum(pages, sizes.graph_limits[0])
    name = f"round_seconds_directory@{users}"
    _add(report, name, seconds, minimum, refused, 1.1)
    before = _minimum(pages + len(directory), sizes.graph_limits[0])
    report.add(
        Figure(
            "pacing",
            f"reports_budget_alone@{users}",
            before,
            "s",
            seconds / max(before, 1e-9),
            f"least the reports budget alone allows for {pages} pages + {len(directory)} look-ups",
        )
    )


def policy_round(workdir: Path, sizes: Sizes, report: Report) -> None:
    """One app, N tenants with ``policy: true``: the reports budget still bounds the round."""
    tenants = sizes.tenants
    sim = _limited_simulator(workdir / "pacing-policy", tenants, sizes, "--one-app")
    config_with(sim, policy=True)
    exporter = ExporterProcess(sim.config_file, sim.config_file.parent / "exporter.log")
    try:
        wait_for_events(sim, "policy", tenants, 900, "policy round")
        calls = wait_for_events(sim, "report", tenants, 900, "policy round")[:tenants]
        calls += events(sim, "policy")[:tenants]
        refused = int(sim.stats()["refused_by_limits"])
        refused += int(sim.stats()["refused_by_service_limits"])
    finally:
        exporter.stop()
        sim.stop()
    minimum = _minimum(tenants, sizes.graph_limits[1])
    _add(report, f"round_seconds_policy@{tenants}", span(calls), minimum, refused, 1.05)


def enforcement_round(workdir: Path, sizes: Sizes, report: Report) -> None:
    """One app, N tenants with ``enforcement: true`` (on userRegistrationDetails, one page
    each): security defaults and group look-ups spend the service budget, Conditional Access
    pages their own 1 per second per tenant; the reports budget still bounds the round."""
    tenants = sizes.tenants
    sim = _limited_simulator(
        workdir / "pacing-enforcement",
        tenants,
        sizes,
        "--one-app",
        "--users=500",
        f"--conditional-access={EXCLUSIONS}",
    )
    exporter = ExporterProcess(sim.config_file, sim.config_file.parent / "exporter.log")
    try:
        # Each tenant: its pages of policies, then its report.
        wait_for_events(sim, "ca_policies", CA_PAGES * tenants, 900, "enforcement round")
        calls = wait_for_events(sim, "details", tenants, 900, "enforcement round")[:tenants]
        calls += events(sim, "ca_policies")[: CA_PAGES * tenants]
        stats = sim.stats()
        refused = sum(
            int(stats[key])
            for key in ("refused_by_limits", "refused_by_service_limits", "refused_by_ca_limits")
        )
    finally:
        exporter.stop()
        sim.stop()
    # A tenant's report waits for its policies: its second page comes 1 s after its first at
    # the least (Graph's 1 per second per tenant), then the reports budget's one-app bound.
    minimum = (CA_PAGES - 1) * 1.0 + _minimum(tenants, sizes.graph_limits[1])
    _add(report, f"round_seconds_enforcement@{tenants}", span(calls), minimum, refused, 1.05)


def discovery_round(workdir: Path, sizes: Sizes, report: Report, customers: int = 5000) -> None:
    """An MSP: ``customers`` tenants found from the partner's listing, none listed, all on one
    app; their first polls spread over the jitter and the app's reports budget, so the round is
    bound as the one-app round is (the listing's own pages spend the service budget)."""
    sim = _limited_simulator(
        workdir / "pacing-discovery", customers + 1, sizes, "--one-app", "--partner"
    )
    exporter = ExporterProcess(sim.config_file, sim.config_file.parent / "exporter.log")
    try:
        calls = wait_for_events(sim, "report", customers, 3600, "discovery round")[:customers]
        stats = sim.stats()
        refused = int(stats["refused_by_limits"]) + int(stats["refused_by_service_limits"])
        rss = exporter.sample().rss_bytes
    finally:
        exporter.stop()
        sim.stop()
    minimum = _minimum(customers, sizes.graph_limits[1])
    _add(report, f"round_seconds_discovery@{customers}", span(calls), minimum, refused, 1.05)
    per_tenant = rss / customers / 1024
    report.add(Figure("pacing", f"rss_kb_per_discovered_tenant@{customers}", per_tenant, "KB"))


def discovered_against_listed(
    workdir: Path, sizes: Sizes, report: Report, customers: int = 1000
) -> None:
    """The same ``customers`` (one simulator seed, one app) found by discovery and listed,
    each polled once by its own exporter at no limit: RSS per tenant, discovered against
    listed, in the same run (the round above is paced and its machine busier).

    The two take turns (``sizes.rss_turns`` each), and each side's median counts: the
    difference sought (a listing kept, some 40 KB) is well under what one reading varies by
    (Python's object arenas come in 1 MB), and one turn each read 0.987 x in one run and
    1.003 x in the next on the same code.
    """
    readings: dict[str, list[float]] = {"discovered": [], "listed": []}
    turns = sizes.rss_turns
    for turn in range(turns):
        for label, extra in (("discovered", ()), ("listed", ("--partner-listed",))):
            folder = workdir / f"rss-{label}-{turn}"
            folder.mkdir()
            sim = SimulatorProcess(
                folder,
                customers + 1,
                interval="1h",
                config_overrides={"concurrency": sizes.concurrency, "rate_limits": FAST_LIMITS},
                extra_args=("--one-app", "--partner", *extra),
            )
            exporter = ExporterProcess(sim.config_file, folder / "exporter.log")
            try:
                wait_for_events(sim, "report", customers, 600, f"{label} customers polled")
                exporter.wait_ready(timeout=120)
                readings[label].append(exporter.sample().rss_bytes / customers / 1024)
            finally:
                exporter.stop()
                sim.stop()
    rss = {label: statistics.median(values) for label, values in readings.items()}
    for label, value in rss.items():
        shown = ", ".join(f"{v:.1f}" for v in readings[label])
        report.add(
            Figure(
                "pacing",
                f"rss_kb_per_{label}_tenant@{customers}",
                value,
                "KB",
                None,
                f"median of {turns} turns: {shown}",
            )
        )
    report.add(
        Figure(
            "pacing",
            f"rss_discovered_against_listed@{customers}",
            rss["discovered"] / rss["listed"],
            "x",
            rss["discovered"] / rss["listed"],
            "RSS per discovered tenant / per listed tenant, the same customers, medians",
            1.0,
        )
    )


def _paced_round(
    sim: SimulatorProcess,
    exporters: list[ExporterProcess],
    kind: str,
    count: int,
    timeout: float,
    what: str,
) -> tuple[list[tuple[float, float]], int]:
    """The first ``count`` answered requests of ``kind`` and the requests the simulator refused
    until then; the exporters and the simulator are stopped after, whatever happens."""
    try:
        calls = wait_for_events(sim, kind, count, timeout, what)
        refused = int(sim.stats()["refused_by_limits"])
    finally:
        for exporter in exporters:
            exporter.stop()
        sim.stop()
    return calls[:count], refused


def _add(
    report: Report, name: str, seconds: float, minimum: float, refused: int, target: float
) -> None:
    against = f"minimum the limits allow {minimum:g}s"
    report.add(Figure("pacing", name, seconds, "s", seconds / max(minimum, 1e-9), against, target))
    refused_name = name.replace("round_seconds", "refused")
    report.add(Figure("pacing", refused_name, refused, "429s", None, "", 0))
