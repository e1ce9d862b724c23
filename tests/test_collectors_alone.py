"""Issue 25: a collector fails alone, and failures say what happened; through the real CLI."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from entra_simulator.policy import FORBIDDEN
from tests.conftest import ExporterProcess, SimEnv, exposition_samples, wait_until

TENANT = "tenant-0001"


def sample(exporter: ExporterProcess, name: str, **labels: str) -> float | None:
    key = (name, tuple(sorted({"tenant": TENANT, **labels}.items())))
    return exposition_samples(exporter.metrics()).get(key)


def requests_of(sim_env: SimEnv, kind: str, tenant_id: str) -> int:
    return sum(
        1 for event in list(sim_env.sim.events) if event[0] == kind and event[2] == tenant_id
    )


def test_a_policy_403_leaves_the_report_moving_and_only_the_policy_is_retried(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], tmp_path: Path
) -> None:
    tenant = sim_env.sim.find(TENANT)
    assert tenant is not None
    tenant.policy_variant = FORBIDDEN
    document = sim_env.config()
    document["defaults"]["interval"] = "3s"
    for entry in document["tenants"]:
        entry["policy"] = entry["name"] == TENANT
    config = tmp_path / "live.yaml"
    config.write_text(yaml.safe_dump(document))
    config.chmod(0o600)
    exporter = start_exporter(f"--config.file={config}")
    exporter.wait_ready()
    first = wait_until(lambda: sample(exporter, "entra_exporter_last_success_timestamp_seconds"))
    started = time.monotonic()
    wait_until(
        lambda: (sample(exporter, "entra_exporter_last_success_timestamp_seconds") or 0) > first,
        timeout=15,
    )
    # The report's series and its success move; the policy collector is down, naming why.
    assert sample(exporter, "entra_tenant_users") == tenant.total_users
    assert sample(exporter, "entra_exporter_collector_up", collector="report") == 1
    assert sample(exporter, "entra_exporter_collector_up", collector="policy") == 0
    assert sample(exporter, "entra_exporter_tenant_up") == 0
    report_success = "entra_exporter_collector_last_success_timestamp_seconds"
    assert (sample(exporter, report_success, collector="report") or 0) > first - 1
    assert sample(exporter, report_success, collector="policy") is None  # never succeeded
    # Retries between the regular polls re-read the policy alone.
    time.sleep(max(0.0, 10 - (time.monotonic() - started)))
    policy_reads = requests_of(sim_env, "policy", tenant.tenant_id)
    report_reads = requests_of(sim_env, "report", tenant.tenant_id)
    assert policy_reads > report_reads + 1, (policy_reads, report_reads)
    log = exporter.log_text()
    assert "grant the application permission Policy.Read.AuthenticationMethod" in log
    assert "collector=policy" in log and "collector=report result" not in log


def test_the_token_endpoints_5xx_is_an_http_error_and_msal_logs_no_stack(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess]
) -> None:
    sim_env.sim.set_fault(TENANT, "token_error500", count=1)
    sim_env.sim.set_fault(TENANT, "token_html", count=1)
    exporter = start_exporter(f"--config.file={sim_env.config_file}")
    exporter.wait_ready()
    wait_until(lambda: sample(exporter, "entra_exporter_polls_total", result="parse_error"))
    wait_until(lambda: sample(exporter, "entra_exporter_polls_total", result="http_error"))
    log = exporter.log_text()
    line = next(line for line in log.splitlines() if "identity provider answered HTTP 500" in line)
    assert "result=http_error" in line and "http_status=500" in line
    msal = [line for line in log.splitlines() if "logger=msal" in line]
    assert msal and all("stack=" not in line and "Traceback" not in line for line in msal)
    assert "Traceback" not in log


@pytest.mark.parametrize("fault", ["no_service_principal", "no_consent"])
def test_a_tenant_without_consent_is_consent_required_with_the_admin_consent_url(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], fault: str
) -> None:
    tenant = sim_env.sim.find(TENANT)
    assert tenant is not None
    sim_env.sim.set_fault(TENANT, fault, count=0)
    exporter = start_exporter(f"--config.file={sim_env.config_file}")
    exporter.wait_ready()
    wait_until(lambda: sample(exporter, "entra_exporter_polls_total", result="consent_required"))
    url = f"{sim_env.url}/{tenant.tenant_id}/adminconsent?client_id={tenant.client_id}"
    assert url in exporter.log_text()
    for page in (exporter.get("/")[2].decode(), exporter.get(f"/tenants/{TENANT}")[2].decode()):
        assert url in page and "an administrator of the tenant opens the admin-consent URL" in page
    assert sample(exporter, "entra_exporter_polls_total", result="auth_error") == 0
