"""End to end: the real CLI and the simulator as subprocesses, real MSAL and httpx over TLS."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import (
    CAMEL_CASE_NOTE,
    REPO,
    ExporterProcess,
    allow_fast_polling,
    promtool_notes,
    run_cli,
    sim_request,
    wait_until,
)
from tests.conftest import (
    exposition_samples as samples,
)


@dataclass
class SimProcess:
    proc: subprocess.Popen[str]
    url: str
    ca_file: str
    config_file: Path

    def stats(self) -> dict:
        return sim_request(self.url, self.ca_file, "/_sim/stats")


@pytest.fixture
def sim_process(tmp_path: Path) -> Iterator[SimProcess]:
    """``entra-registration-simulator`` as a subprocess, writing its CA and exporter config."""
    config_file = tmp_path / "config.yaml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "entra_simulator",
            "--tenants",
            "4",
            "--report-shapes",
            "mixed",
            "--seed",
            "11",
            "--interval",
            "1s",
            "--jitter",
            "0s",
            "--timeout",
            "3s",
            "--config-out",
            str(config_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("simulator listening on "), line
    url = line.split()[-1]
    allow_fast_polling(config_file)
    try:
        yield SimProcess(proc, url, str(tmp_path / "simulator-ca.pem"), config_file)
    finally:
        proc.terminate()
        proc.wait(10)


def assert_report_matches(metrics_text: str, tenant: str, truth: dict) -> None:
    values = samples(metrics_text)
    assert values[("entra_tenant_users", (("tenant", tenant),))] == truth["totalUserCount"]
    for status, count in truth["userRegistrationCounts"].items():
        key = (
            "entra_credential_registration_users",
            (("registrationStatus", status), ("tenant", tenant)),
        )
        assert values[key] == count, (tenant, status)


def test_gauges_equal_the_simulators_numbers_and_the_token_is_reused(
    sim_process: SimProcess, start_exporter: Callable[..., ExporterProcess]
) -> None:
    exporter = start_exporter(f"--config.file={sim_process.config_file}")
    exporter.wait_ready()
    # Wait for three report calls per tenant (interval 1s), then freeze the comparison.
    wait_until(
        lambda: all(t["graph_requests"] >= 3 for t in sim_process.stats()["tenants"].values())
    )
    stats = sim_process.stats()["tenants"]
    # One token per tenant: MSAL's cache served every later poll.
    assert {name: t["token_requests"] for name, t in stats.items()} == dict.fromkeys(stats, 1)

    def matches() -> bool:
        text = exporter.metrics()
        current = sim_process.stats()["tenants"]
        for name, tenant in current.items():
            assert_report_matches(text, name, tenant["last_report"])
        return True

    wait_until(matches, timeout=10)
    text = exporter.metrics()
    values = samples(text)
    for name in stats:
        assert values[("entra_exporter_tenant_up", (("tenant", name),))] == 1
        assert values[("entra_exporter_token_requests_total", (("tenant", name),))] == 1
        assert (
            values[("entra_exporter_polls_total", (("result", "success"), ("tenant", name)))] >= 3
        )
    # Every spelling Microsoft documents was served and read (tenants cycle through them)...
    assert len(stats) == 4
    # ...and a status beyond Graph's enum for some tenants.
    assert any(("registrationStatus", "mfaCapable") in key[1] for key in values)
    assert exporter.stop() == 0


def test_once_prints_the_exposition_and_exits_zero(sim_process: SimProcess) -> None:
    result = run_cli(f"--config.file={sim_process.config_file}", "--once")
    assert result.returncode == 0, result.stderr
    stats = sim_process.stats()["tenants"]
    for name, tenant in stats.items():
        assert_report_matches(result.stdout, name, tenant["last_report"])
    assert "Traceback" not in result.stderr


def test_once_exits_one_when_a_tenant_fails(sim_process: SimProcess) -> None:
    sim_request(
        sim_process.url,
        sim_process.ca_file,
        "/_sim/faults",
        {"tenant": "tenant-0001", "fault": "invalid_client", "count": 0},
    )
    result = run_cli(f"--config.file={sim_process.config_file}", "--once")
    assert result.returncode == 1
    values = samples(result.stdout)
    assert values[("entra_exporter_tenant_up", (("tenant", "tenant-0001"),))] == 0
    assert values[("entra_exporter_tenant_up", (("tenant", "tenant-0000"),))] == 1
    assert (
        values[
            ("entra_exporter_polls_total", (("result", "auth_error"), ("tenant", "tenant-0001")))
        ]
        == 1
    )
    assert "tenant=tenant-0001" in result.stderr and "result=auth_error" in result.stderr


def test_check_config_summarises_without_secrets(sim_process: SimProcess) -> None:
    result = run_cli(f"--config.file={sim_process.config_file}", "--check-config")
    assert result.returncode == 0, result.stderr
    assert "4 tenant(s)" in result.stdout
    assert "credential=client_secret" in result.stdout and "cloud=custom" in result.stdout
    config = yaml.safe_load(sim_process.config_file.read_text())
    for tenant in config["tenants"]:
        assert tenant["client_secret"] not in result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_notes_only_the_deliberate_camel_case_label(sim_process: SimProcess) -> None:
    result = run_cli(f"--config.file={sim_process.config_file}", "--once")
    assert result.returncode == 0
    assert promtool_notes(result.stdout) == {
        f"entra_credential_registration_users {CAMEL_CASE_NOTE}"
    }


def test_sighup_reload_drops_removed_tenants_and_refuses_a_broken_config(
    sim_process: SimProcess, start_exporter: Callable[..., ExporterProcess]
) -> None:
    exporter = start_exporter(f"--config.file={sim_process.config_file}")
    exporter.wait_ready()
    assert 'tenant="tenant-0002"' in exporter.metrics()
    config = yaml.safe_load(sim_process.config_file.read_text())
    config["tenants"] = config["tenants"][:2]
    sim_process.config_file.write_text(yaml.safe_dump(config))
    exporter.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: 'tenant="tenant-0002"' not in exporter.metrics())
    assert "entra_exporter_config_last_reload_successful 1" in exporter.metrics()

    sim_process.config_file.write_text("tenants: [ {name: x")
    assert exporter.get("/-/reload")[0] == 405
    request = urllib.request.Request(f"{exporter.url}/-/reload", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 500
    answer = caught.value.read()  # where the problem is; what it is, in the log only
    assert b"config.yaml:1:" in answer and b"YAML syntax error" not in answer
    wait_until(lambda: "YAML syntax error" in exporter.log_text())
    text = exporter.metrics()
    assert "entra_exporter_config_last_reload_successful 0" in text
    # The running config keeps working.
    before = samples(text)[
        ("entra_exporter_polls_total", (("result", "success"), ("tenant", "tenant-0000")))
    ]
    wait_until(
        lambda: (
            samples(exporter.metrics())[
                ("entra_exporter_polls_total", (("result", "success"), ("tenant", "tenant-0000")))
            ]
            > before
        )
    )
    assert exporter.stop() == 0


def test_sigterm_stops_within_five_seconds_and_releases_the_port(
    sim_process: SimProcess, start_exporter: Callable[..., ExporterProcess]
) -> None:
    exporter = start_exporter(f"--config.file={sim_process.config_file}")
    exporter.wait_ready()
    started = time.monotonic()
    assert exporter.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    log = exporter.log_text()
    assert "Traceback" not in log
    with socket.socket() as sock:
        # As a restarted exporter would: SO_REUSEADDR passes TIME_WAIT, not a live listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", exporter.port))
        sock.listen()


def test_demo_serves_report_gauges_for_every_demo_tenant_within_10_seconds(
    start_exporter: Callable[..., ExporterProcess],
) -> None:
    exporter = start_exporter("--demo")
    started = time.monotonic()

    def every_tenant_reported() -> bool:
        values = samples(exporter.metrics())
        reported = {labels[0][1] for name, labels in values if name == "entra_tenant_users"}
        return reported >= {"tenant-0000", "tenant-0001", "tenant-0002"}

    wait_until(every_tenant_reported, timeout=10)
    assert time.monotonic() - started < 10
    text = exporter.metrics()
    assert 'source="userRegistrationDetails"' in text  # the retired tenant switched...
    assert 'entra_segment_users{tenant="tenant-0002"' in text  # ...and shows its segments
    assert 'entra_group_users{tenant="tenant-0002",group="rollout-wave-1"}' in text
    # ...and phone-only users in both retirement cohorts, beside its methods policy.
    values = samples(text)
    cohorts = {
        dict(labels)["retirement"]: value
        for (name, labels), value in values.items()
        if name == "entra_phone_only_users"
    }
    assert set(cohorts) == {"2027-02-01", "2027-07-01"} and all(cohorts.values())
    assert 'entra_authentication_method_enabled{tenant="tenant-0002",method="Sms"} 1' in text
    # Who must use MFA: exclusions in one tenant, a report-only policy in another.
    classes = {
        (dict(labels)["tenant"], dict(labels)["enforcement"]): value
        for (name, labels), value in values.items()
        if name == "entra_mfa_enforcement_users" and value
    }
    assert ("tenant-0002", "excluded") in classes and ("tenant-0001", "report_only") in classes
    # A customer found from the partner listing, not consented yet: its admin-consent URL.
    wait_until(lambda: "consent_required" in exporter.get("/")[2].decode(), timeout=10)
    landing = exporter.get("/")[2].decode()
    assert "Northwind Traders" in landing and "/adminconsent?client_id=" in landing
    assert exporter.stop() == 0
    assert "Traceback" not in exporter.log_text()
