"""Soak: N tenants, half failing at random with every fault kind the simulator has, one
poisoned for good, one whose identity provider answers an unusable token, one on
userRegistrationDetails whose pages repeat users at their seams, one whose client secret file is
rotated half-way (as a Kubernetes Secret volume swaps it, the old secret revoked at once), one
whose authentication methods policy Graph always refuses (403), 20 scrapers
hammering ``/metrics``, a reload every few seconds that alternates between two tenant sets, and
an attacker (slow headers, a smuggled request, a cross-site reload, SIGHUP bursts), the whole
run.

    python -m bench.soak                      # a long run by hand (10 minutes)
    python -m bench.soak --tenants 20 --duration 20 --interval 1s    # the test suite's run

Reports, as a table and one JSON line: failed scrapes and reloads, unhandled exceptions in the
log, thread count, open file descriptors and RSS after warm-up and at the end with their slope
per minute, the oldest last success among the healthy tenants (those without injected faults),
and whether the poisoned tenant (a status no exposition can encode, every time) is the one down.
The descriptors leave out the pooled connections to Graph, which may grow up to
``concurrency`` as bursts come and then stay open for reuse; their most is reported apart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import (
    ExporterProcess,
    ProcessSample,
    SimulatorProcess,
    connections_to,
    secret_volume,
)
from entra_simulator.directory import GRAPH_FAULTS
from entra_simulator.policy import FORBIDDEN
from exporter.config.network import parse_duration

# Every Graph fault the simulator can inject, drawn at random for the faulty half.
ALL_FAULTS = list(GRAPH_FAULTS)


@dataclass
class SoakReport:
    """What a soak run measured."""

    tenants: int
    faulty_tenants: int
    duration_seconds: float
    scrapes: int
    failed_scrapes: int
    unhandled_exceptions: int
    threads_after_warmup: int
    threads_at_end: int
    fds_after_warmup: int
    fds_at_end: int
    graph_connections_most: int
    rss_after_warmup_mb: float
    rss_at_end_mb: float
    rss_growth_percent: float
    oldest_healthy_success_seconds: float
    interval_seconds: float
    reloads: int = 0
    failed_reloads: int = 0
    attacks: int = 0
    poisoned_tenant_up: float | None = None
    # entra_tenant_users of the tenant whose pages repeat users (the simulator has 1,000).
    repeating_tenant_users: float | None = None
    # The tenant whose secret file was rotated half-way: up at the end (no restart).
    rotated_tenant_up: float | None = None
    # The tenant whose policy Graph refuses: its report collector up, its policy collector down.
    policy_refused_report_up: float | None = None
    policy_refused_policy_up: float | None = None
    threads_slope_per_minute: float = 0.0
    fds_slope_per_minute: float = 0.0
    rss_slope_mb_per_minute: float = 0.0


def _scraper(
    exporter: ExporterProcess, stop: threading.Event, counts: dict[str, int], lock: threading.Lock
) -> None:
    while not stop.is_set():
        try:
            status, body = exporter.get("/metrics", timeout=10)
            ok = status == 200 and body.endswith(b"\n")
        except OSError:
            ok = False
        with lock:
            counts["scrapes"] += 1
            if not ok:
                counts["failed"] += 1


SLOW_HEADERS = b"GET /metrics HTTP/1.1\r\nHost: soak\r\nX-Slow: "
SMUGGLED = (
    b"GET /healthz HTTP/1.1\r\nHost: soak\r\nContent-Length: 40\r\n\r\n"
    b"POST /-/reload HTTP/1.1\r\nHost: soak\r\n\r\n"
)


def _attacker(exporter: ExporterProcess, stop: threading.Event, counts: dict[str, int]) -> None:
    """What the second hostile pass found, over and over: connections that trickle headers,
    a request smuggled in a body, a cross-site reload, bursts of SIGHUP."""
    while not stop.wait(1.0):
        slow = []
        with contextlib.suppress(OSError):
            for _ in range(8):
                sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=2)
                sock.sendall(SLOW_HEADERS)
                slow.append(sock)
            with socket.create_connection(("127.0.0.1", exporter.port), timeout=5) as smuggler:
                smuggler.sendall(SMUGGLED)
                smuggler.recv(65536)
        forged = urllib.request.Request(
            f"{exporter.url}/-/reload", data=b"x=1", method="POST",
            headers={"Origin": "https://elsewhere.example", "Sec-Fetch-Site": "cross-site"},
        )  # fmt: skip
        with contextlib.suppress(OSError):
            urllib.request.urlopen(forged, timeout=5)  # answered 403
        for _ in range(5):
            with contextlib.suppress(ProcessLookupError):
                exporter.proc.send_signal(signal.SIGHUP)
        stop.wait(0.5)
        for sock in slow:
            sock.close()
        counts["attacks"] += 1


def _floor(samples: Iterable[ProcessSample]) -> ProcessSample:
    """The lowest threads and descriptors, and the median RSS, of a phase."""
    phase = list(samples)
    rss = sorted(s.rss_bytes for s in phase)
    return ProcessSample(
        rss_bytes=rss[len(rss) // 2],
        peak_rss_bytes=max(s.peak_rss_bytes for s in phase),
        threads=min(s.threads for s in phase),
        open_fds=min(s.open_fds for s in phase),
        cpu_seconds=max(s.cpu_seconds for s in phase),
    )


def _reloader(
    exporter: ExporterProcess,
    config_file: Path,
    every: float,
    stop: threading.Event,
    counts: dict[str, int],
) -> None:
    """Alternate between the full tenant set and one without its last two faulty tenants."""
    full = yaml.safe_load(config_file.read_text())
    smaller = {**full, "tenants": full["tenants"][2:]}
    documents = [smaller, full]
    while not stop.wait(every):
        document = documents[counts["reloads"] % 2]
        config_file.write_text(yaml.safe_dump(document, sort_keys=False))
        request = urllib.request.Request(f"{exporter.url}/-/reload", data=b"", method="POST")
        counts["reloads"] += 1
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                ok = response.status == 200
        except OSError:
            ok = False
        counts["failed_reloads"] += 0 if ok else 1
    config_file.write_text(yaml.safe_dump(full, sort_keys=False))


def _slope(samples: list[tuple[float, ProcessSample]], duration: float, field: str) -> float:
    """Least-squares slope of ``field`` per minute over the samples after warm-up."""
    points = [(at * duration / 60, getattr(s, field)) for at, s in samples if at >= 0.25]
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


def _tenant_up(
    exporter: ExporterProcess, tenant: str, name: str = "entra_exporter_tenant_up"
) -> float | None:
    _, body = exporter.get("/metrics")
    for family in text_string_to_metric_families(body.decode()):
        if family.name == name:
            for sample in family.samples:
                if sample.labels["tenant"] == tenant:
                    return float(sample.value)
    return None


def _last_successes(exporter: ExporterProcess) -> dict[str, float]:
    status, body = exporter.get("/metrics")
    assert status == 200
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "entra_exporter_last_success_timestamp_seconds":
            for sample in family.samples:
                found[sample.labels["tenant"]] = sample.value
    return found


def _repeating_tenant(config_file: Path) -> str:
    """Put the first healthy tenant on userRegistrationDetails (whose pages repeat users)."""
    document = yaml.safe_load(config_file.read_text())
    tenant = document["tenants"][len(document["tenants"]) // 2]
    tenant["source"] = "userRegistrationDetails"
    config_file.write_text(yaml.safe_dump(document, sort_keys=False))
    config_file.chmod(0o600)
    return str(tenant["name"])


@dataclass(frozen=True)
class Rotation:
    """The tenant whose secret lives in a Secret-like volume, rotated half-way."""

    name: str
    body: dict[str, object]  # its simulator registration (POST /_sim/tenants)
    volume: Path


def _special_tenants(config_file: Path, workdir: Path) -> tuple[Rotation, dict[str, object]]:
    """After the repeating tenant: one whose secret is read from a volume, one with
    ``policy: true`` that Graph refuses (both healthy otherwise)."""
    document = yaml.safe_load(config_file.read_text())
    middle = len(document["tenants"]) // 2
    rotated, refused = document["tenants"][middle + 1], document["tenants"][middle + 2]
    volume = workdir / "secrets"
    secret_volume(volume, {"client-secret": rotated.pop("client_secret")}, "1")
    rotated["client_secret_file"] = str(volume / "client-secret")
    refused["policy"] = True
    config_file.write_text(yaml.safe_dump(document, sort_keys=False))
    config_file.chmod(0o600)
    keys = ("name", "tenant_id", "client_id")
    body = {key: rotated[key] for key in keys}
    refusal = {**{key: refused[key] for key in keys}, "secret": refused["client_secret"]}
    return Rotation(str(rotated["name"]), body, volume), {**refusal, "policy_variant": FORBIDDEN}


def _rotate(sim: SimulatorProcess, rotation: Rotation) -> None:
    """A new secret in the volume, and the old one revoked at the token endpoint."""
    secret_volume(rotation.volume, {"client-secret": "rotated-soak-secret-0001"}, "2")
    sim.call("/_sim/tenants", {**rotation.body, "secret": "rotated-soak-secret-0001"})


def _collector_up(exporter: ExporterProcess, tenant: str, collector: str) -> float | None:
    _, body = exporter.get("/metrics")
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "entra_exporter_collector_up":
            for sample in family.samples:
                if sample.labels == {"tenant": tenant, "collector": collector}:
                    return float(sample.value)
    return None


def run_soak(
    tenants: int = 100,
    duration: float = 600.0,
    interval: str = "2s",
    fault_rate: float = 0.2,
    scrapers: int = 20,
    warmup_share: float = 0.25,
    reload_every: float = 3.0,
) -> SoakReport:
    """Run the soak and return its figures."""
    interval_seconds = parse_duration(interval)
    with tempfile.TemporaryDirectory(prefix="entra-soak-") as workdir_name:
        workdir = Path(workdir_name)
        sim = SimulatorProcess(
            workdir,
            tenants,
            interval=interval,
            jitter=interval,
            timeout="2s",
            config_overrides={
                "rate_limits": {"per_app_per_tenant": "50/1s", "per_app": "10000/1s"}
            },
            # Tenants on userRegistrationDetails see pages that repeat users at their seams.
            extra_args=("--hang=3s", "--users=1000", "--page-size=500", "--page-overlap=5"),
            # Tokens renew during the run: the rotated secret is asked for, not a cached token.
            token_lifetime=8,
        )
        repeating = _repeating_tenant(sim.config_file)
        rotation, refused = _special_tenants(sim.config_file, workdir)
        sim.call("/_sim/tenants", refused)
        exporter = ExporterProcess(sim.config_file, workdir / "exporter.log")
        try:
            names = sorted(sim.stats()["tenants"])
            faulty = names[: len(names) // 2] if fault_rate > 0 else []
            poisoned = names[-1]
            for name in faulty:
                sim.call("/_sim/faults", {"tenant": name, "rate": fault_rate, "kinds": ALL_FAULTS})
            sim.call("/_sim/faults", {"tenant": poisoned, "fault": "surrogate_status", "count": 0})
            if faulty:  # its identity provider answers a token no header can carry
                sim.call("/_sim/faults", {"tenant": faulty[0], "fault": "crlf_token", "count": 0})
            exporter.wait_ready()
            stop = threading.Event()
            lock = threading.Lock()
            counts = {"scrapes": 0, "failed": 0, "reloads": 0, "failed_reloads": 0, "attacks": 0}
            threads = [
                threading.Thread(target=_scraper, args=(exporter, stop, counts, lock), daemon=True)
                for _ in range(scrapers)
            ]
            threads.append(
                threading.Thread(
                    target=_reloader,
                    args=(exporter, sim.config_file, reload_every, stop, counts),
                    daemon=True,
                )
            )
            threads.append(
                threading.Thread(target=_attacker, args=(exporter, stop, counts), daemon=True)
            )
            for thread in threads:
                thread.start()
            started = time.monotonic()
            samples: list[tuple[float, ProcessSample]] = []
            pooled_most = 0
            rotated = False
            while (elapsed := time.monotonic() - started) < duration:
                if not rotated and elapsed >= duration / 2:
                    _rotate(sim, rotation)
                    rotated = True
                sample, pooled = exporter.sample(), connections_to(exporter.proc.pid, sim.port)
                pooled_most = max(pooled_most, pooled)
                other = replace(sample, open_fds=sample.open_fds - pooled)
                samples.append((elapsed / duration, other))
                time.sleep(0.2)
            # Compare the quarter after warm-up with the last quarter: a leak lifts the floor
            # of threads and descriptors (connection threads come and go above it) and RSS.
            warm = _floor(s for at, s in samples if warmup_share <= at < warmup_share + 0.25)
            end = _floor(s for at, s in samples if at >= 0.75)
            last = _last_successes(exporter)
            now = time.time()
            stop.set()
            for thread in threads:
                thread.join(30)
            poisoned_up = _tenant_up(exporter, poisoned)
            repeating_users = _tenant_up(exporter, repeating, "entra_tenant_users")
            rotated_up = _tenant_up(exporter, rotation.name)
            refused_name = str(refused["name"])
            refused_up = (
                _collector_up(exporter, refused_name, "report"),
                _collector_up(exporter, refused_name, "policy"),
            )
            healthy = [name for name in names if name not in faulty and name != poisoned]
            oldest = max((now - last.get(name, 0.0) for name in healthy), default=0.0)
        finally:
            exporter.stop()
            sim.stop()
        log = (workdir / "exporter.log").read_text(errors="replace")
    unhandled = log.count("Traceback") + log.count("level=error")
    return SoakReport(
        tenants=tenants,
        faulty_tenants=len(faulty),
        duration_seconds=duration,
        scrapes=counts["scrapes"],
        failed_scrapes=counts["failed"],
        unhandled_exceptions=unhandled,
        threads_after_warmup=warm.threads,
        threads_at_end=end.threads,
        fds_after_warmup=warm.open_fds,
        fds_at_end=end.open_fds,
        graph_connections_most=pooled_most,
        rss_after_warmup_mb=round(warm.rss_bytes / 2**20, 1),
        rss_at_end_mb=round(end.rss_bytes / 2**20, 1),
        rss_growth_percent=round(100 * (end.rss_bytes - warm.rss_bytes) / warm.rss_bytes, 2),
        oldest_healthy_success_seconds=round(oldest, 2),
        interval_seconds=interval_seconds,
        reloads=counts["reloads"],
        failed_reloads=counts["failed_reloads"],
        attacks=counts["attacks"],
        poisoned_tenant_up=poisoned_up,
        repeating_tenant_users=repeating_users,
        rotated_tenant_up=rotated_up,
        policy_refused_report_up=refused_up[0],
        policy_refused_policy_up=refused_up[1],
        threads_slope_per_minute=round(_slope(samples, duration, "threads"), 3),
        fds_slope_per_minute=round(_slope(samples, duration, "open_fds"), 3),
        rss_slope_mb_per_minute=round(_slope(samples, duration, "rss_bytes") / 2**20, 3),
    )


def print_report(report: SoakReport) -> None:
    """A table, then one JSON line."""
    for key, value in asdict(report).items():
        print(f"{key:34} {value}")
    print(json.dumps({"benchmark": "soak", **asdict(report)}))


def main(argv: list[str] | None = None) -> int:
    """Command line of the soak."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--interval", default="2s")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--scrapers", type=int, default=20)
    args = parser.parse_args(argv)
    report = run_soak(args.tenants, args.duration, args.interval, args.fault_rate, args.scrapers)
    print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
