"""A real Prometheus server scrapes the exporter; the dashboard's queries and the rules run on it."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from entra_simulator.conditional_access import EXCLUSIONS
from entra_simulator.directory import SimTenant, details_truth
from entra_simulator.segments import directory_of
from entra_simulator.simulator import Simulator
from tests.conftest import (
    REPO,
    ExporterProcess,
    allow_fast_polling,
    free_port,
    http_get,
    wait_until,
)

DASHBOARD = REPO / "deploy" / "grafana" / "entra-registration.json"
DETAILS_TENANT = "tenant-0002"
NEW_CUSTOMER = "3c0f1b2e-0000-4000-8000-00000000c0de"
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="Debian's prometheus package is not installed (make test installs it when root)",
)


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "entra-registration-exporter",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, _, body = http_get(
            f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        )
        document = json.loads(body)
        assert status == 200 and document["status"] == "success", (expr, document)
        return document["data"]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Simulator, Prometheus]]:
    workdir = tmp_path_factory.mktemp("prometheus")
    sim = Simulator(tenants=3, seed=5)
    sim.start()
    # A customer whose admin has not consented yet: the consent panel and alert have data.
    sim.add_tenant(SimTenant(name="newcustomer", tenant_id=NEW_CUSTOMER, client_id=NEW_CUSTOMER,
                             secret="not-consented-yet"))  # fmt: skip
    sim.set_fault("newcustomer", "no_consent", count=0)
    sim.write_ca(workdir / "ca.pem")
    config_file = workdir / "config.yaml"
    sim.write_config(config_file, str(workdir / "ca.pem"), interval=1.0, jitter=0.0, timeout=2.0)
    allow_fast_polling(config_file)
    # One tenant reads the successor report, so the dashboard's method panels have data too.
    details_tenant = sim.find(DETAILS_TENANT)
    assert details_tenant is not None
    details_tenant.users = 300
    document = yaml.safe_load(config_file.read_text())
    entry = next(t for t in document["tenants"] if t["name"] == DETAILS_TENANT)
    entry["source"] = "userRegistrationDetails"
    # ...with segments, so the "Who is covered" panels and the segment rules have data.
    entry["segments"] = {
        "privileged_roles": True,
        "groups": {"finance": directory_of(details_tenant).group_named("finance").id},
    }
    # ...and its methods policy (with the passkey opt-out), for the retirement row.
    entry["policy"] = True
    details_tenant.policy_variant = 1
    # ...and who must use MFA (exclusions, a report-only... see its variant), for the
    # Enforcement row: Conditional Access pages come at 1 a second, so a longer interval.
    entry.update({"enforcement": True, "interval": "5s"})
    details_tenant.ca_variant = EXCLUSIONS
    config_file.write_text(yaml.safe_dump(document))
    config_file.chmod(0o600)
    exporter = ExporterProcess([f"--config.file={config_file}"])
    prometheus = Prometheus(workdir, f"127.0.0.1:{exporter.port}")
    try:
        exporter.wait_ready()
        wait_until(lambda: len(prometheus.query("entra_tenant_users")) == 3, timeout=60)
        yield sim, prometheus
    finally:
        prometheus.stop()
        exporter.kill()
        sim.stop()


def by_labels(results: list[dict[str, Any]], *names: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(n, "") for n in names): float(r["value"][1]) for r in results}


def test_report_gauges_arrive_with_graphs_numbers(stack: tuple[Simulator, Prometheus]) -> None:
    sim, prometheus = stack

    def matches() -> bool:
        truth = sim.stats()["tenants"]
        users = by_labels(prometheus.query("entra_tenant_users"), "tenant")
        counts = by_labels(
            prometheus.query("entra_credential_registration_users"), "tenant", "registrationStatus"
        )
        for name, tenant in truth.items():
            if name in (DETAILS_TENANT, "newcustomer"):
                continue  # the successor's truth is checked below; newcustomer has no report
            report = tenant["last_report"]
            assert users[(name,)] == report["totalUserCount"]
            for status, count in report["userRegistrationCounts"].items():
                assert counts[(name, status)] == count
        return True

    wait_until(matches, timeout=20)
    details = details_truth(sim.find(DETAILS_TENANT))  # type: ignore[arg-type]
    users = by_labels(prometheus.query("entra_tenant_users"), "tenant")
    assert users[(DETAILS_TENANT,)] == details["users"]
    methods = by_labels(prometheus.query("entra_authentication_method_users"), "tenant", "method")
    assert {m: v for (t, m), v in methods.items() if t == DETAILS_TENANT} == details["methods"]


def test_health_metrics_arrive_with_the_right_labels(stack: tuple[Simulator, Prometheus]) -> None:
    _, prometheus = stack
    up = by_labels(prometheus.query("entra_exporter_tenant_up"), "tenant", "job")
    assert up.pop(("newcustomer", "entra-registration-exporter")) == 0  # not consented yet
    assert set(up.values()) == {1.0} and len(up) == 3
    assert all(job == "entra-registration-exporter" for _, job in up)
    results = {r["metric"]["result"] for r in prometheus.query("entra_exporter_polls_total")}
    assert results == {
        "success",
        "auth_error",
        "throttled",
        "http_error",
        "timeout",
        "network_error",
        "parse_error",
        "internal_error",
        "consent_required",
    }
    info = prometheus.query("entra_tenant_info")
    assert {r["metric"]["cloud"] for r in info} == {"custom"}
    assert {r["metric"]["source"] for r in info} == {
        "credentialUserRegistrationCount",
        "userRegistrationDetails",
    }
    assert prometheus.query("entra_exporter_config_last_reload_successful == 1")
    assert prometheus.query("entra_exporter_build_info")
    assert len(prometheus.query("time() - entra_exporter_last_success_timestamp_seconds < 10")) == 3


def test_recording_rules_evaluate(stack: tuple[Simulator, Prometheus]) -> None:
    _, prometheus = stack
    ratios = wait_until(
        lambda: prometheus.query("tenant:entra_mfa_registered_users:ratio"), timeout=20
    )
    assert len(ratios) == 3
    assert all(0 < float(r["value"][1]) <= 1 for r in ratios)
    groups = wait_until(
        lambda: prometheus.query("tenant_group:entra_group_mfa_registered_users:ratio"), timeout=20
    )
    assert by_labels(groups, "tenant", "group").keys() == {(DETAILS_TENANT, "finance")}
    without_mfa = wait_until(
        lambda: prometheus.query("tenant:entra_privileged_admins_without_mfa:count"), timeout=20
    )
    assert [r["metric"]["tenant"] for r in without_mfa] == [DETAILS_TENANT]


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def substitute(expr: str) -> str:
    """Grafana's variables as Grafana would fill them for 'All tenants'."""
    return (
        expr.replace("$tenant", ".*")
        .replace("$__rate_interval", "10s")
        .replace("$__interval", "5s")
        .replace("$__range", "1m")
    )


@pytest.mark.parametrize(("title", "expr"), panel_queries(), ids=[t for t, _ in panel_queries()])
def test_every_dashboard_query_returns_data(
    stack: tuple[Simulator, Prometheus], title: str, expr: str
) -> None:
    _, prometheus = stack
    query = substitute(expr)
    assert "$" not in query, query
    wait_until(lambda: prometheus.query(query), timeout=20)


def test_dashboard_is_importable_json_with_the_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource"
        and variables["datasource"]["query"] == "prometheus"
    )
    tenant = variables["tenant"]
    assert tenant["multi"] and tenant["includeAll"]
    # The tenants narrowed by the tenant_labels' matchers (a textbox, all tenants by default).
    assert tenant["query"]["query"] == "label_values(entra_tenant_info{$tenant_labels}, tenant)"
    assert variables["tenant_labels"]["type"] == "textbox"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert all('tenant=~"$tenant"' in t["expr"] for t in panel["targets"]), panel["title"]


def test_tenant_variable_query_returns_the_tenants(stack: tuple[Simulator, Prometheus]) -> None:
    _, prometheus = stack
    default = json.loads(DASHBOARD.read_text())["templating"]["list"][1]["query"]
    match = urllib.parse.urlencode({"match[]": f"entra_tenant_info{{{default}}}"})
    status, _, body = http_get(f"{prometheus.url}/api/v1/label/tenant/values?{match}")
    assert status == 200
    tenants = ["newcustomer", "tenant-0000", "tenant-0001", "tenant-0002"]
    assert sorted(json.loads(body)["data"]) == tenants


def test_promtool_checks_and_tests_the_rules() -> None:
    check = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(
        ["promtool", "test", "rules", "alerts.test.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULES.parent,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "SUCCESS" in tests.stdout
