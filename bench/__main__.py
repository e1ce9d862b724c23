"""Benchmarks: ``make bench`` or ``python -m bench [--quick | --smoke] [--only NAME ...]``.

The simulator and the exporter each run as their own process. Every figure is printed in a
table and as one JSON line (``{"benchmark": ..., "figure": ..., "value": ..., "ratio": ...,
"target": ...}``); ratios compare with an ideal, a limit or a baseline measured in the same
run, and a figure with a target says whether it is met. Nothing is asserted here. At the end,
every figure with a target again, as the Markdown table docs/performance.md holds.

Scenarios (sizes: FULL by default, ``--quick`` about 6 minutes, ``--smoke`` seconds):

- fanout, footprint — N tenants, report latency L, ``concurrency`` C: cold round (discovery +
  token + report) and warm round against ``ceil(N / C) * L``; RSS and CPU per poll at 1, 100, N.
- scrape — ``/metrics`` median and p99 with 1 and 20 concurrent scrapers, plain and gzip,
  against ``generate_latest`` over the same series, and the p99 against a do-nothing server's
  and a bare ``http.server``'s answering the same bytes (interleaved rounds).
- economy — token and report requests per tenant against one per lifetime / interval.
- segments — N tenants with segments; one tenant of U users with and without segments:
  exporter CPU per user counted (median of 3 polls), peak RSS; the JSON decoders on the same
  pages (counting).
- scale — 10,000 tenants measured, with and without segments.
- pacing — at Graph's documented limits enforced by the simulator: one app with N tenants,
  one tenant of 100,000 users at 999-row and smaller pages, three replicas sharing one app;
  the tenant with segments whose look-ups spend the identity and access service's budget, and
  one app whose N tenants also read their methods policy.

The wall-clock-bound scenarios (economy and pacing wait on intervals and Graph's windows, not
on a core) run side by side first; the CPU-bound ones then run one at a time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import counting, limits, rounds, scale, scrapes
from bench.figures import FULL, QUICK, SMOKE, Report, Sizes

SCENARIOS = ("fanout", "scrape", "footprint", "economy", "segments", "scale", "pacing")


def _waiting(workdir: Path, sizes: Sizes, report: Report, only: set[str]) -> None:
    """economy and pacing, side by side: each waits on time, not on a core."""
    jobs: list[Callable[[], Any]] = []
    if "economy" in only:
        jobs.append(lambda: rounds.economy(workdir, sizes, report))
    if "pacing" in only:
        jobs += [
            lambda: limits.one_app(workdir, sizes, report),
            lambda: limits.replicas(workdir, sizes, report),
            lambda: limits.paged_tenant(workdir, sizes, report, 999),
            lambda: limits.paged_tenant(workdir, sizes, report, sizes.paced_small_page),
            lambda: limits.directory_budget(workdir, sizes, report),
            lambda: limits.policy_round(workdir, sizes, report),
            lambda: limits.enforcement_round(workdir, sizes, report),
            lambda: limits.discovery_round(workdir, sizes, report, 5 * sizes.tenants),
        ]
    if not jobs:
        return
    with ThreadPoolExecutor(len(jobs)) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def _cpu_bound(workdir: Path, sizes: Sizes, report: Report, only: set[str]) -> None:
    """The rest, one at a time: their figures are CPU time or depend on a free core."""
    if only & {"fanout", "scrape", "footprint"}:
        stack = rounds.fanout_and_footprint(workdir, sizes, report)
        try:
            if "scrape" in only:
                scrapes.scrape(stack, sizes, report)
        finally:
            stack.stop()
    if "segments" in only:
        counting.segments_at_scale(workdir, sizes, report)
        counting.big_tenant(workdir, sizes, report)
        counting.decoders(sizes, report)
    if "pacing" in only:
        limits.discovered_against_listed(workdir, sizes, report, sizes.tenants)
    if "scale" in only:
        scale.at_scale(workdir, sizes, report, with_segments=False)
        scale.at_scale(workdir, sizes, report, with_segments=True)
        # Every family of the contract, the enforcement collector's included (issue 28).
        scale.at_scale(workdir, sizes, report, with_segments=False, with_enforcement=True)
        if sizes.scale_tenants > 1000:  # and at 1,000 (the smaller budget), measured too
            tenants = 1000
            scale.at_scale(workdir, sizes, report, False, tenants=tenants)
            scale.at_scale(workdir, sizes, report, False, with_enforcement=True, tenants=tenants)


def _sizes(args: argparse.Namespace) -> Sizes:
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
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
    if args.scale_tenants:
        overrides["scale_tenants"] = args.scale_tenants
    return Sizes(**{**sizes.__dict__, **overrides})


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print every figure."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes, about 6 minutes")
    size.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds (the test suite's run)"
    )
    parser.add_argument("--tenants", type=int, help="N for fanout, scrape, pacing (default 1000)")
    parser.add_argument("--scale-tenants", type=int, help="N for scale (default 10000)")
    parser.add_argument("--latency", type=float, help="report latency in seconds (default 0.25)")
    parser.add_argument("--concurrency", type=int, help="exporter concurrency (default 50)")
    parser.add_argument(
        "--economy-seconds", type=float, help="length of the economy run (default 360)"
    )
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, help="run only these")
    args = parser.parse_args(argv)
    sizes = _sizes(args)
    only = set(args.only or SCENARIOS)
    report = Report()
    started = time.monotonic()
    print(f"{'benchmark':10} {'figure':44} {'value':>14} {'unit':8} ratio / target")
    with tempfile.TemporaryDirectory(prefix="entra-bench-") as name:
        workdir = Path(name)
        _waiting(workdir, sizes, report, only)
        _cpu_bound(workdir, sizes, report, only)
    print(f"\nFigures with a target ({time.monotonic() - started:.0f} s in all):\n")
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
