"""What every benchmark shares: figures with their ratio and target, sizes, and the stack."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.harness import ExporterProcess, SimulatorProcess, wait_for

# Graph's limits raised far past what a run sends: what is measured is the exporter's own cost.
FAST_LIMITS = {"per_app_per_tenant": "1000/1s", "per_app": "100000/1s"}


@dataclass(frozen=True)
class Figure:
    """One measured figure, with its ratio to an ideal or baseline where there is one.

    ``target`` is the issue's target for the ratio (or for the value when there is no ratio),
    met when the ratio (value) is at most ``target`` — or at least it, with ``at_least``.
    """

    benchmark: str
    figure: str
    value: float
    unit: str
    ratio: float | None = None
    against: str = ""
    target: float | None = None
    at_least: bool = False

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        measured = self.ratio if self.ratio is not None else self.value
        return measured >= self.target if self.at_least else measured <= self.target

    @property
    def target_text(self) -> str:
        if self.target is None:
            return ""
        sign = ">=" if self.at_least else "<="
        unit = "x" if self.ratio is not None else f" {self.unit}"
        return f"{sign} {self.target:g}{unit} ({'met' if self.met else 'NOT met'})"

    def json_line(self) -> str:
        return json.dumps(
            {
                "benchmark": self.benchmark,
                "figure": self.figure,
                "value": round(self.value, 6),
                "unit": self.unit,
                "ratio": None if self.ratio is None else round(self.ratio, 4),
                "against": self.against,
                "target": self.target_text or None,
                "met": self.met,
            }
        )


class Report:
    """Collects figures and prints them as they come (scenarios may run in threads)."""

    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self._lock = threading.Lock()

    def add(self, figure: Figure) -> None:
        ratio = "" if figure.ratio is None else f"{figure.ratio:8.3f}x {figure.against}"
        with self._lock:
            self.figures.append(figure)
            print(
                f"{figure.benchmark:10} {figure.figure:44} {figure.value:14.4f} {figure.unit:8} "
                f"{ratio} {figure.target_text}".rstrip()
            )
            print(figure.json_line(), flush=True)

    def summary(self) -> str:
        """Every figure that has a target, as a Markdown table, in the order they came."""
        rows = ["| figure | value | ratio | target |", "|---|---|---|---|"]
        for f in self.figures:
            if f.target is None:
                continue
            ratio = "" if f.ratio is None else f"{f.ratio:.3f}x ({f.against})"
            value = f"{f.value:.4g} {f.unit}"
            rows.append(f"| {f.benchmark} {f.figure} | {value} | {ratio} | {f.target_text} |")
        return "\n".join(rows)


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs: FULL for the documented figures, QUICK and SMOKE smaller."""

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
    scale_tenants: int
    paced_users: int
    paced_small_page: int
    # Graph's report limits as the simulator enforces them: (per app per tenant, per app),
    # each (requests, seconds). Smoke runs scale the windows down to keep seconds short.
    graph_limits: tuple[tuple[int, float], tuple[int, float]]
    # The big tenant's poll is measured this many times (each by a new exporter), the median
    # reported.
    big_tenant_polls: int = 3
    # Rounds of the p99-against-the-floor measurement (exporter, do-nothing, http.server).
    floor_rounds: int = 3
    # Privileged admins of the directory-budget tenant (pacing).
    paced_admins: int = 500
    # Turns of the discovered-against-listed RSS reading, each side's median reported.
    rss_turns: int = 3


GRAPH_LIMITS = ((5, 10.0), (122, 10.0))
FULL = Sizes(
    200_000, 1000, 0.25, 50, (1, 100, 1000), 200, 100, 360.0, 120, 10,
    10_000, 100_000, 750, GRAPH_LIMITS, 5,
)  # fmt: skip
QUICK = Sizes(
    50_000, 300, 0.25, 50, (1, 300), 100, 30, 60.0, 20, 5,
    2_000, 20_000, 500, GRAPH_LIMITS,
)  # fmt: skip
SMOKE = Sizes(
    4_000, 20, 0.02, 5, (1, 20), 20, 5, 12.0, 4, 1,
    60, 3_000, 400, ((5, 0.5), (12, 0.5)), 1, 1, 30, 1,
)  # fmt: skip


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


def wait_for_events(
    sim: SimulatorProcess, kind: str, count: int, timeout: float, what: str
) -> list[tuple[float, float]]:
    """Wait until ``count`` requests of ``kind`` were answered, then return their events.

    Polls the simulator's counts, not its event list: serialising 20,000 events every 50 ms
    would cost the simulator more CPU than the requests being measured.
    """
    wait_for(lambda: sim.call("/_sim/counts").get(kind, 0) >= count, timeout, what, 0.2)
    return events(sim, kind)


def events(sim: SimulatorProcess, kind: str) -> list[tuple[float, float]]:
    """(arrival, completion) of every request of ``kind`` so far, in arrival order."""
    answered = sim.call("/_sim/events")["events"]
    return sorted((start, end) for k, _, _, start, end in answered if k == kind)


def first_event(sim: SimulatorProcess) -> float:
    return min(start for _, _, _, start, _ in sim.call("/_sim/events")["events"])


def span(calls: list[tuple[float, float]]) -> float:
    """From the first arrival to the last completion."""
    return max(end for _, end in calls) - min(start for start, _ in calls)


def simulator_limits(limits: tuple[tuple[int, float], tuple[int, float]]) -> str:
    """The simulator's --limits value: ``5/10s,122/10s``."""
    return ",".join(f"{n}/{s:g}s" for n, s in limits)


def exporter_limits(limits: tuple[tuple[int, float], tuple[int, float]]) -> dict[str, str]:
    """The exporter's rate_limits for the same limits (its durations take ms)."""
    (tenant_n, tenant_s), (app_n, app_s) = limits
    return {
        "per_app_per_tenant": f"{tenant_n}/{round(tenant_s * 1000)}ms",
        "per_app": f"{app_n}/{round(app_s * 1000)}ms",
    }


def config_with(sim: SimulatorProcess, **tenant_fields: Any) -> None:
    """Set fields on every tenant of the simulator's written config."""
    document = yaml.safe_load(sim.config_file.read_text())
    for tenant in document["tenants"]:
        tenant.update(tenant_fields)
    sim.config_file.write_text(yaml.safe_dump(document, sort_keys=False))
