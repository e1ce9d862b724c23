"""Shared fixtures: the simulator (in-process or as a subprocess) and the exporter CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from prometheus_client.parser import text_string_to_metric_families

from entra_simulator.simulator import Simulator
from exporter.config.model import CLOUDS, ClientSecretCredential, Config, Secret, TenantConfig
from exporter.metrics.snapshots import PollResult, TenantSnapshot
from exporter.metrics.store import MetricsStore
from exporter.runtime import Runtime, build_runtime

REPO = Path(__file__).resolve().parent.parent


def tenant_config(name: str = "contoso", stale_after: float = 1800.0) -> TenantConfig:
    """A tenant of the global cloud with a client secret, for tests without a simulator."""
    return TenantConfig(
        name=name,
        tenant_id="5f1c3d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f",
        client_id="00000000-0000-0000-0000-000000000001",
        credential=ClientSecretCredential(Secret("s3cret-value")),
        interval=600.0,
        timeout=30.0,
        jitter=0.0,
        cloud="global",
        source="credentialUserRegistrationCount",
        stale_after=stale_after,
        endpoints=CLOUDS["global"],
    )


def track_tenants(store: MetricsStore, tenants: tuple[TenantConfig, ...]) -> None:
    """What a reload does to the store: the listed tenants shown (history kept), others gone."""
    names = {config.name for config in tenants}
    for snapshot in store.snapshots():
        if snapshot.name not in names:
            store.remove(snapshot.name)
    for config in tenants:
        old = store.snapshot(config.name)
        store.publish(old.with_config(config) if old else TenantSnapshot.for_tenant(config))


def record_poll(
    store: MetricsStore, config: TenantConfig, result: PollResult, lines: tuple[str, ...] = ()
) -> TenantSnapshot | None:
    """What a tenant does after a poll: fold the result into its snapshot and publish it."""
    old = store.snapshot(config.name)
    if old is None:
        return None
    snapshot = old.after_poll(result, config.stale_after, lines)
    store.publish(snapshot)
    return snapshot


def exposition_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, ValueError, KeyError, AssertionError) as err:
            last_error = err
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last_error!r})")


def max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` that fall in any span of ``window`` seconds."""
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


def write_app_certificate(tmp_path: Path, ca: trustme.CA | None = None) -> tuple[Path, Path, str]:
    """An RSA app-registration certificate issued by ``ca`` (a new CA if None).

    Writes ``app.key`` and ``app.crt`` into ``tmp_path`` (replacing earlier ones) and returns
    (key file, certificate file, certificate PEM).
    """
    ca = ca or trustme.CA(key_type=trustme.KeyType.RSA)
    cert = ca.issue_cert("app.example", key_type=trustme.KeyType.RSA)
    key_file, cert_file = tmp_path / "app.key", tmp_path / "app.crt"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    return key_file, cert_file, cert.cert_chain_pems[0].bytes().decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(
    url: str, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """GET without raising on error statuses."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def sim_request(sim_url: str, ca_file: str, path: str, body: Any = None) -> Any:
    """Call the simulator's control API (/_sim/...)."""
    context = ssl.create_default_context(cafile=ca_file)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{sim_url}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, context=context, timeout=5) as response:
        return json.loads(response.read())


@dataclass
class SimEnv:
    """A running simulator with its CA file and an exporter config written for it."""

    sim: Simulator
    url: str
    ca_file: str
    config_file: Path

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_file.read_text())

    def write_config(self, document: dict[str, Any]) -> None:
        self.config_file.write_text(yaml.safe_dump(document, sort_keys=False))
        self.config_file.chmod(0o600)


# Tests poll every second, more often than Graph's documented 5 per 10 s allow.
FAST_RATE_LIMITS = {"per_app_per_tenant": "50/1s", "per_app": "1000/1s"}


def allow_fast_polling(config_file: Path) -> None:
    """Raise the rate limits of a simulator-written config for 1 s polling."""
    document = yaml.safe_load(config_file.read_text())
    document["rate_limits"] = FAST_RATE_LIMITS
    config_file.write_text(yaml.safe_dump(document, sort_keys=False))
    config_file.chmod(0o600)


@pytest.fixture
def sim_env(tmp_path: Path) -> Iterator[SimEnv]:
    """An in-process simulator with three tenants and a 1 s-interval exporter config."""
    sim = Simulator(tenants=3, seed=7, hang_seconds=30)
    url = sim.start()
    ca_file = str(tmp_path / "ca.pem")
    sim.write_ca(ca_file)
    config_file = tmp_path / "config.yaml"
    sim.write_config(config_file, ca_file, interval=1.0, jitter=0.0, timeout=2.0)
    env = SimEnv(sim, url, ca_file, config_file)
    allow_fast_polling(env.config_file)
    try:
        yield env
    finally:
        sim.stop()


class ExporterProcess:
    """The real exporter CLI as a subprocess."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"exporter-{self.port}.log"
        self._log = self.log_path.open("w+b")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=REPO,
        )

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return http_get(f"{self.url}{path}", headers)

    def metrics(self) -> str:
        status, _, body = self.get("/metrics")
        assert status == 200
        return body.decode()

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_until(lambda: self.get("/readyz")[0] == 200, timeout)

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if not self._log.closed:
            self._log.close()


@pytest.fixture
def start_exporter() -> Iterator[Callable[..., ExporterProcess]]:
    """Start exporter subprocesses; every one is stopped at the end of the test."""
    started: list[ExporterProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ExporterProcess:
        process = ExporterProcess(list(args), env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def exporter_on_own_config(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], folder: Path
) -> tuple[ExporterProcess, Path]:
    """An exporter, ready, on a copy of the simulator's config that the test may change."""
    config = folder / "live.yaml"
    config.write_text(sim_env.config_file.read_text())
    config.chmod(0o600)
    exporter = start_exporter(f"--config.file={config}")
    exporter.wait_ready()
    return exporter, config


def promtool_notes(exposition: str) -> set[str]:
    """What ``promtool check metrics`` says about an exposition, one note per line."""
    check = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
    )
    return {line for line in (check.stdout + check.stderr).splitlines() if line.strip()}


CAMEL_CASE_NOTE = "label names should be written in 'snake_case' not 'camelCase'"


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run the exporter CLI to completion (from ``cwd``, the repository by default)."""
    return subprocess.run(  # noqa: PLW1510
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture
async def make_runtime() -> AsyncIterator[Callable[[Config], Runtime]]:
    """The exporter's runtimes for configs (not scheduled); each is closed after the test."""
    runtimes: list[Runtime] = []

    def make(config: Config) -> Runtime:
        runtime = build_runtime(config)
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        await runtime.aclose()


# ----------------------------------------------------------------- tiers

# Every test module's tier: unit (no socket, no process), integration (the simulator and real
# TLS in this process), system (the CLI as a process, Prometheus, a browser, a wheel, manifests).
# Tests marked slow (the bench smoke run, the soak, the 100,000-user tenant) are left out of
# `make test-fast` whatever their module's tier.
TIERS = {
    "unit": {
        "test_boundaries",
        "test_config",
        "test_first_minutes",
        "test_details",
        "test_enforcement_rules",
        "test_metrics",
        "test_ratelimit",
        "test_report",
        "test_router",
        "test_sharding",
        "test_structure",
    },
    "integration": {
        "test_credentials",
        "test_discovery",
        "test_enforcement",
        "test_graph",
        "test_hostile",
        "test_netbackend",
        "test_pacing",
        "test_polling",
        "test_readiness",
        "test_properties",
        "test_segments",
        "test_server",
        "test_sources",
        "test_webconfig",
    },
    "system": {
        "test_browser",
        "test_cli_flags",
        "test_deploy",
        "test_e2e",
        "test_prometheus",
        "test_reliability",
        "test_webconfig_toolkit",
        "test_attacks",
        "test_changes",
        "test_wheel",
        "test_image",
        "test_layouts",
        "test_helm",
        "test_rotation",
        "test_collectors_alone",
    },
    "slow": {"test_bench", "test_soak"},
}


def tier_of(module: str) -> str | None:
    """The tier of test module ``module`` (its file name without .py), None if unlisted."""
    return next((tier for tier, modules in TIERS.items() if module in modules), None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item.path.stem)
        # A test marked with a tier of its own (one that starts a process, in a module of
        # pure tests) keeps it.
        own = any(item.get_closest_marker(name) for name in ("unit", "integration", "system"))
        if tier is not None and not own:
            item.add_marker(getattr(pytest.mark, tier))
