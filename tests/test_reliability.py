"""Reliability through the real CLI: faults, staleness, shutdown and secrets."""

from __future__ import annotations

import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from entra_simulator.directory import GRAPH_FAULTS, SimTenant
from tests.conftest import ExporterProcess, SimEnv, run_cli, wait_until, write_app_certificate
from tests.conftest import exposition_samples as samples

CONFFILES = Path(__file__).parent / "conffiles"


def polls(exporter: ExporterProcess, tenant: str, result: str = "success") -> float:
    return samples(exporter.metrics()).get(
        ("entra_exporter_polls_total", (("result", result), ("tenant", tenant))), 0.0
    )


def has_report(exporter: ExporterProcess, tenant: str) -> bool:
    return ("entra_tenant_users", (("tenant", tenant),)) in samples(exporter.metrics())


def test_a_failing_tenant_keeps_its_values_until_stale_after_while_others_keep_updating(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess]
) -> None:
    document = sim_env.config()
    document["defaults"]["stale_after"] = "4s"
    sim_env.write_config(document)
    exporter = start_exporter(f"--config.file={sim_env.config_file}")
    exporter.wait_ready()
    wait_until(lambda: has_report(exporter, "tenant-0001"))

    sim_env.sim.set_fault("tenant-0001", "error500", count=0)
    failed_at = time.monotonic()
    wait_until(lambda: polls(exporter, "tenant-0001", "http_error") >= 1)
    text = exporter.metrics()
    assert samples(text)[("entra_exporter_tenant_up", (("tenant", "tenant-0001"),))] == 0
    if time.monotonic() - failed_at < 3:
        assert has_report(exporter, "tenant-0001")  # last good values kept...
    wait_until(lambda: not has_report(exporter, "tenant-0001"), timeout=10)  # ...until stale_after
    # The healthy tenants kept polling on time meanwhile (interval 1s).
    before = polls(exporter, "tenant-0000")
    wait_until(lambda: polls(exporter, "tenant-0000") >= before + 2, timeout=5)
    assert has_report(exporter, "tenant-0000")

    sim_env.sim.set_fault("tenant-0001", None)
    wait_until(lambda: has_report(exporter, "tenant-0001"))
    log = exporter.log_text()
    failure_lines = [
        line for line in log.splitlines() if "tenant=tenant-0001" in line and "poll failed" in line
    ]
    assert failure_lines
    assert all(
        "result=http_error" in line
        and "http_status=500" in line
        and "error_code=InternalServerError" in line
        and "request_id=" in line
        for line in failure_lines
    )
    assert any(
        "poll recovered" in line and "tenant=tenant-0001" in line for line in log.splitlines()
    )
    assert "Traceback" not in log
    assert exporter.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_within_five_seconds_with_a_poll_hanging(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], sig: int
) -> None:
    document = sim_env.config()
    document["defaults"].update({"interval": "1m", "timeout": "30s"})
    sim_env.write_config(document)
    sim_env.sim.set_fault("tenant-0002", "hang", count=0)
    exporter = start_exporter(f"--config.file={sim_env.config_file}")
    wait_until(lambda: sim_env.sim.stats()["tenants"]["tenant-0002"]["graph_requests"] >= 1)
    wait_until(lambda: polls(exporter, "tenant-0000") >= 1)
    started = time.monotonic()
    assert exporter.stop(sig) == 0
    assert time.monotonic() - started < 5
    log = exporter.log_text()
    assert "Traceback" not in log
    assert "level=error" not in log  # a poll cancelled by shutdown is not an error
    assert "stopped" in log


def test_every_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    for path in sorted(CONFFILES.glob("*.yaml")):
        result = run_cli(f"--config.file={path}", "--check-config")
        assert result.returncode == 2, path.name
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        expected = [
            line.removeprefix("# expect: ")
            for line in path.read_text().splitlines()
            if line.startswith("# expect: ")
        ]
        assert len(lines) == len(expected), (path.name, lines)
        for want in expected:
            assert any(want in line for line in lines), (path.name, want, lines)
        assert "Traceback" not in result.stderr


SENTINEL_SECRET = "SENTINEL-client-secret-4f9a2c7e1b"


def test_no_secret_private_key_or_token_appears_anywhere(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], tmp_path: Path
) -> None:
    # Tenants with sentinel credentials: a secret, and a certificate whose key is a secret too.
    secret_tenant = sim_env.sim.find("tenant-0000")
    assert secret_tenant is not None
    secret_tenant.secret = SENTINEL_SECRET
    key_file, cert_file, cert_pem = write_app_certificate(tmp_path)
    sim_env.sim.add_tenant(
        SimTenant(
            name="certificate-tenant",
            tenant_id="3c0f1b2e-0000-4000-8000-000000000099",
            client_id="00000000-0000-0000-0000-000000000099",
            certificate_pem=cert_pem,
        )
    )
    document = sim_env.config()
    document["tenants"][0]["client_secret"] = "${SENTINEL_SECRET_VAR}"
    document["tenants"].append(
        {
            "name": "certificate-tenant",
            "tenant_id": "3c0f1b2e-0000-4000-8000-000000000099",
            "client_id": "00000000-0000-0000-0000-000000000099",
            "certificate": {"private_key_file": str(key_file), "certificate_file": str(cert_file)},
        }
    )
    sim_env.write_config(document)
    env = {"SENTINEL_SECRET_VAR": SENTINEL_SECRET}
    key_lines = [line for line in key_file.read_text().splitlines() if "-----" not in line]
    other_secrets = [t["client_secret"] for t in document["tenants"][1:] if "client_secret" in t]

    seen: list[str] = []
    for args in (
        ["--check-config"],
        ["--once", "--log.level=debug"],
        ["--once", "--log.format=json", "--log.level=debug"],
    ):
        result = run_cli(f"--config.file={sim_env.config_file}", *args, env=env)
        seen += [result.stdout, result.stderr]

    exporter = start_exporter(f"--config.file={sim_env.config_file}", "--log.level=debug", env=env)
    exporter.wait_ready()
    for fault in [*GRAPH_FAULTS, "invalid_client"]:
        if fault == "hang":
            continue  # covered by the shutdown test; here it would only slow the run
        for name in ("tenant-0000", "certificate-tenant"):
            sim_env.sim.set_fault(name, fault, count=1)
        if fault == "invalid_client":
            sim_env.sim.tokens.clear()  # revoke: Graph says 401, the next token request fails
        wait_until(
            lambda: (
                not any(sim_env.sim.find(n).faults for n in ("tenant-0000", "certificate-tenant"))
            )
        )  # type: ignore[union-attr]
    # The exporter holds a token again (revoked above), so there is one to look for below.
    wait_until(lambda: sim_env.sim.tokens)
    # A reload that fails, and one that succeeds.
    good = sim_env.config_file.read_text()
    sim_env.config_file.write_text(good.replace("tenant_id:", "tenant_idd:", 1))
    request = urllib.request.Request(f"{exporter.url}/-/reload", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=10)
    sim_env.config_file.write_text(good)
    urllib.request.urlopen(request, timeout=10).read()
    for path in ("/", "/metrics", "/healthz", "/readyz"):
        seen.append(exporter.get(path)[2].decode())
    seen.append(exporter.get("/metrics", {"Accept": "application/openmetrics-text"})[2].decode())
    assert exporter.stop() == 0
    seen.append(exporter.log_text())

    tokens = list(sim_env.sim.tokens)
    assert tokens, "the simulator issued tokens"
    everything = "\n".join(seen)
    assert "poll failed" in everything  # the faults did happen and were logged
    for secret in [SENTINEL_SECRET, *other_secrets, *tokens]:
        assert secret not in everything
    for line in key_lines:
        assert line not in everything
    assert not re.search(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.", everything)  # a token


def test_world_readable_config_is_warned_about(sim_env: SimEnv) -> None:
    sim_env.config_file.chmod(0o644)
    result = run_cli(f"--config.file={sim_env.config_file}", "--check-config")
    assert result.returncode == 0
    assert "readable by every user" in result.stderr
