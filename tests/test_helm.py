"""The Helm chart, with a real helm: lint, template every values file in ci/, validate each
rendered object strictly (CRDs against the operator's schemas), and check what the chart
promises — restricted pods, shards as StatefulSet ordinals, a config change that rolls."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter.config.loader import load_config
from tests.conftest import REPO
from tests.test_deploy import CRD_KINDS, crd_validator
from tests.test_layouts import tool

CHART = REPO / "deploy" / "helm" / "entra-registration-exporter"
VALUES = sorted((CHART / "ci").glob("*.yaml"))


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("helm"), *args], capture_output=True, text=True, check=False, timeout=60
    )


def template(values: Path, *extra: str) -> list[dict[str, Any]]:
    result = helm("template", "test", str(CHART), "-f", str(values), *extra)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_helm_lint_passes_with_every_values_file() -> None:
    assert len(VALUES) >= 4
    for values in VALUES:
        result = helm("lint", str(CHART), "-f", str(values), "--strict")
        assert result.returncode == 0, (values.name, result.stdout + result.stderr)


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.stem)
def test_every_rendered_object_validates_strictly(values: Path, tmp_path: Path) -> None:
    objects = template(values)
    for document in objects:
        if document["kind"] in CRD_KINDS:
            errors = list(crd_validator(document["kind"]).iter_errors(document))
            assert errors == [], (document["kind"], errors[:1])
        else:
            kubernetes_validate.validate(document, "1.30.0", strict=True)
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap" and "config.yaml" in o["data"]]
    text = config_map["data"]["config.yaml"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in re.findall(r"/var/run/secrets/entra/(\w+)", text):
        (secrets / name).write_text("s3cret-value")
    config = tmp_path / "config.yaml"
    config.write_text(text.replace("/var/run/secrets/entra", str(secrets)))
    config.chmod(0o600)
    token = tmp_path / "token"
    token.write_text("federated")
    assert load_config(config, environ={"AZURE_FEDERATED_TOKEN_FILE": str(token)}).tenants


def workload(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    return found


def test_pods_meet_the_restricted_profile() -> None:
    for values in VALUES:
        pod = workload(template(values))["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        [container] = pod["containers"]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        # Secrets mounted as folders: a subPath mount never sees a rotated Secret.
        assert all("subPath" not in mount for mount in container["volumeMounts"])


def test_shards_are_statefulset_ordinals() -> None:
    objects = template(CHART / "ci" / "sharded-values.yaml")
    sharded = workload(objects)
    assert sharded["kind"] == "StatefulSet" and sharded["spec"]["replicas"] == 3
    [container] = sharded["spec"]["template"]["spec"]["containers"]
    assert "--shard.count=3" in container["args"]
    [index] = [e for e in container["env"] if e["name"] == "EXPORTER_SHARD_INDEX"]
    assert index["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/part-of"


def test_a_config_change_rolls_the_pods() -> None:
    values = CHART / "ci" / "minimal-values.yaml"

    def checksum(*extra: str) -> str:
        annotations = workload(template(values, *extra))["spec"]["template"]["metadata"]
        return str(annotations["annotations"]["checksum/config"])

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "config.defaults.interval=5m")


def test_the_schema_refuses_unknown_keys_and_wrong_types() -> None:
    values = str(CHART / "ci" / "minimal-values.yaml")
    for wrong in ("shards=0", "serviceMonitor.enable=true", "logFormat=xml"):
        result = helm("template", "test", str(CHART), "-f", values, "--set", wrong)
        assert result.returncode != 0 and "schema" in result.stderr, wrong


def test_default_values_refuse_a_config_without_tenants_saying_why() -> None:
    result = helm("template", "test", str(CHART))
    assert result.returncode != 0
    assert "config.tenants is empty: the exporter needs at least one tenant" in result.stderr


def test_a_web_config_secret_is_mounted_as_a_folder_and_probes_follow_tls() -> None:
    objects = template(CHART / "ci" / "everything-values.yaml")
    pod = workload(objects)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert (
        "--web.config.file=/etc/entra-registration-exporter/web/web-config.yml" in container["args"]
    )
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "web-config"]
    assert mount["mountPath"] == "/etc/entra-registration-exporter/web" and "subPath" not in mount
    [volume] = [v for v in pod["volumes"] if v["name"] == "web-config"]
    assert volume["secret"]["secretName"] == "entra-web-config"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "https" and "basicAuth" in endpoint
    # Without a web config: plain HTTP everywhere.
    plain = workload(template(CHART / "ci" / "minimal-values.yaml"))["spec"]["template"]["spec"]
    assert plain["containers"][0]["livenessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert not any(a.startswith("--web.config.file") for a in plain["containers"][0]["args"])


def test_the_network_policy_lets_in_prometheus_on_the_metrics_port_only() -> None:
    objects = template(CHART / "ci" / "everything-values.yaml")
    [policy] = [o for o in objects if o["kind"] == "NetworkPolicy"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert rule["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert (
        policy["spec"]["podSelector"]["matchLabels"]
        == (workload(objects)["spec"]["selector"]["matchLabels"])
    )
    ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert ports == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    minimal = template(CHART / "ci" / "minimal-values.yaml")
    assert not [o for o in minimal if o["kind"] == "NetworkPolicy"]


def test_monitors_and_rules_carry_the_label_kube_prometheus_stack_selects_as_kustomize_does() -> (
    None
):
    from tests.test_deploy import manifests

    kustomize = {
        document["metadata"]["labels"]["release"]
        for _, document in manifests()
        if document["kind"] in CRD_KINDS
    }
    assert kustomize == {"kube-prometheus-stack"}
    enabled = (
        "serviceMonitor.enabled=true",
        "podMonitor.enabled=true",
        "prometheusRule.enabled=true",
    )
    extra = [arg for flag in enabled for arg in ("--set", flag)]
    objects = template(CHART / "ci" / "minimal-values.yaml", *extra)
    helm_labels = {o["metadata"]["labels"]["release"] for o in objects if o["kind"] in CRD_KINDS}
    assert helm_labels == kustomize
