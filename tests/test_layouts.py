"""The Kubernetes layouts as a real kubectl (kustomize) renders them: every object valid, no
secret shipped, a config change rolls the pods, and the down alert fires for each layout's
scrape, labelled as the Prometheus Operator would label it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO
from tests.test_deploy import CRD_KINDS, crd_validator

TOOLS = REPO / ".tools" / "bin"
LAYOUTS = ["standalone", "sharded", "sidecar", "sidecar-native", "monitoring", "msp"]
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"


def tool(name: str) -> str:
    path = TOOLS / name
    if path.exists():
        return str(path)
    if os.environ.get("EXPORTER_TEST_STRICT"):
        pytest.fail(f"{path} is missing: make test fetches it (scripts/fetch_tools.py)")
    pytest.skip(f"no {name}: `make test` fetches it into .tools/bin (scripts/fetch_tools.py)")


def render(layout: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(REPO / "deploy" / "kubernetes" / layout)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_rendered_object_validates_strictly(layout: str) -> None:
    for document in render(layout):
        if document["kind"] in CRD_KINDS:
            errors = list(crd_validator(document["kind"]).iter_errors(document))
            assert errors == [], (layout, document["metadata"]["name"], errors[:1])
        else:
            kubernetes_validate.validate(document, "1.30.0", strict=True)


@pytest.mark.parametrize("layout", ["standalone", "sharded"])
def test_no_secret_is_shipped_and_a_config_change_rolls_the_pods(layout: str) -> None:
    objects = render(layout)
    assert not [o for o in objects if o["kind"] == "Secret"]  # yours, created as the README says
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"]
    name = config_map["metadata"]["name"]
    assert name.startswith("entra-registration-exporter-")  # content hash: a change is a new name
    [workload] = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    volumes = workload["spec"]["template"]["spec"]["volumes"]
    assert {v["configMap"]["name"] for v in volumes if "configMap" in v} == {name}


def scrape_job(objects: list[dict[str, Any]]) -> str:
    """The ``job`` label the Prometheus Operator gives this layout's scrape."""
    for monitor in (o for o in objects if o["kind"] in ("ServiceMonitor", "PodMonitor")):
        endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
        for relabel in endpoints[0].get("relabelings", []):
            if relabel.get("targetLabel") == "job" and "replacement" in relabel:
                return str(relabel["replacement"])
        if monitor["kind"] == "ServiceMonitor":
            [service] = [o for o in objects if o["kind"] == "Service"]
            key = monitor["spec"].get("jobLabel")
            labels = service["metadata"].get("labels", {})
            return str(labels[key]) if key in labels else str(service["metadata"]["name"])
        return f"{monitor['metadata']['namespace']}/{monitor['metadata']['name']}"
    raise AssertionError("no monitor in this layout")


@pytest.mark.parametrize("layout", ["standalone", "sharded", "sidecar"])
def test_the_down_alert_fires_for_each_layouts_scrape(layout: str, tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (make test installs Debian's prometheus)")
    job = scrape_job(render(layout))
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'up{{job="{job}",instance="x:9836"}}', "values": "0x20"}
                ],
                "alert_rule_test": [
                    {
                        "alertname": "EntraExporterDown",
                        "eval_time": "15m",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": job,
                                    "instance": "x:9836",
                                },
                                "exp_annotations": {
                                    "summary": "entra-registration-exporter x:9836 is down",
                                    "description": "Prometheus cannot scrape x:9836: no Entra "
                                    "registration data.",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "down.test.yml"
    path.write_text(yaml.safe_dump(test))
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (job, result.stdout + result.stderr)


def test_the_plain_scrape_config_is_the_job_the_rules_expect() -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "scrape_config.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == "entra-registration-exporter"
    assert 'job="entra-registration-exporter"' in RULES.read_text()


def test_the_plain_scrape_config_names_every_layouts_service() -> None:
    from tests.test_deploy import manifests
    from tests.test_helm import CHART, template

    text = (REPO / "deploy" / "prometheus" / "scrape_config.yml").read_text()
    services = {doc["metadata"]["name"] for _, doc in manifests() if doc["kind"] == "Service"}
    assert services == {"entra-registration-exporter", "entra-exporter"}
    [helm_service] = [
        o["metadata"]["name"]
        for o in template(CHART / "ci" / "minimal-values.yaml", "--namespace", "entra-exporter")
        if o["kind"] == "Service"
    ]
    helm_service = helm_service.replace("test-", "entra-", 1)  # the release the file names
    for name in (*services, helm_service):
        assert f"{name}.entra-exporter.svc" in text, name
    assert "prometheus_io_scrape" in text  # the sidecars: no Service, their pods' annotations
