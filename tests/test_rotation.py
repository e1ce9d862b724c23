"""Issue 25: credentials rotate without a restart, and every token held is redacted whatever
its shape; through the real CLI, the simulator's real token endpoint and files swapped as a
Kubernetes Secret volume swaps them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trustme
import yaml

from bench.harness import secret_volume
from tests.conftest import (
    ExporterProcess,
    SimEnv,
    exposition_samples,
    wait_until,
    write_app_certificate,
)

ROTATED = "tenant-0000"


def serving(
    start_exporter: Callable[..., ExporterProcess], folder: Path, document: dict[str, object]
) -> ExporterProcess:
    """An exporter on ``document``, ready, with the rotated tenant up."""
    config = folder / "live.yaml"
    config.write_text(yaml.safe_dump(document))
    config.chmod(0o600)
    exporter = start_exporter(f"--config.file={config}")
    exporter.wait_ready()
    wait_until(lambda: tenant_up(exporter, ROTATED) == 1)
    return exporter


def tenant_up(exporter: ExporterProcess, name: str) -> float | None:
    samples = exposition_samples(exporter.metrics())
    return samples.get(("entra_exporter_tenant_up", (("tenant", name),)))


def test_a_secret_file_rotated_in_its_volume_is_used_without_a_restart(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], tmp_path: Path
) -> None:
    sim = sim_env.sim
    tenant = sim.find(ROTATED)
    assert tenant is not None and tenant.secret
    volume = tmp_path / "secrets"
    secret_volume(volume, {"contoso": tenant.secret}, "2026_12_06_01")
    document = sim_env.config()
    entry = document["tenants"][0]
    assert entry["name"] == ROTATED
    del entry["client_secret"]
    entry["client_secret_file"] = str(volume / "contoso")
    exporter = serving(start_exporter, tmp_path, document)

    # The old secret is revoked, with the tokens it got: the tenant fails until the file moves.
    new_secret = "rotated-secret-value-0123456789"
    with sim.lock:
        tenant.secret = new_secret
        sim.tokens.clear()
    wait_until(lambda: tenant_up(exporter, ROTATED) == 0, timeout=30)
    pid = exporter.proc.pid
    secret_volume(volume, {"contoso": new_secret}, "2026_12_06_02")
    wait_until(lambda: tenant_up(exporter, ROTATED) == 1, timeout=30)
    assert exporter.proc.pid == pid and exporter.proc.poll() is None  # no restart
    log = exporter.log_text()
    assert "credential files changed: the new credential is used" in log
    everything = log + exporter.metrics() + exporter.get(f"/tenants/{ROTATED}")[2].decode()
    assert new_secret not in everything


def test_a_half_written_certificate_pair_keeps_the_last_good_one(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], tmp_path: Path
) -> None:
    sim = sim_env.sim
    tenant = sim.find(ROTATED)
    assert tenant is not None
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    key_a, cert_a, pem_a = write_app_certificate(first, ca)
    key_b, cert_b, pem_b = write_app_certificate(second, ca)
    volume = tmp_path / "certs"
    secret_volume(
        volume, {"app.key": key_a.read_text(), "app.crt": cert_a.read_text()}, "2026_12_06_01"
    )
    with sim.lock:
        tenant.secret, tenant.certificate_pem = None, pem_a
    document = sim_env.config()
    entry = document["tenants"][0]
    del entry["client_secret"]
    entry["certificate"] = {
        "private_key_file": str(volume / "app.key"),
        "certificate_file": str(volume / "app.crt"),
    }
    exporter = serving(start_exporter, tmp_path, document)

    # A key without its certificate: refused with a warning, the running credential kept.
    secret_volume(
        volume, {"app.key": key_b.read_text(), "app.crt": cert_a.read_text()}, "2026_12_06_02"
    )
    with sim.lock:
        sim.tokens.clear()
    wait_until(lambda: "credential files changed but cannot be used" in exporter.log_text(), 30)
    assert tenant_up(exporter, ROTATED) == 1
    # The whole pair, and the app registration trusts only the new certificate.
    secret_volume(
        volume, {"app.key": key_b.read_text(), "app.crt": cert_b.read_text()}, "2026_12_06_03"
    )
    with sim.lock:
        tenant.certificate_pem = pem_b
        sim.tokens.clear()
    wait_until(lambda: "the new credential is used" in exporter.log_text(), timeout=30)
    wait_until(lambda: tenant_up(exporter, ROTATED) == 1, timeout=30)
    assert "BEGIN" not in exporter.log_text()


def test_an_opaque_access_token_echoed_by_graph_reaches_no_log_page_or_answer(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess]
) -> None:
    sim = sim_env.sim
    sim.opaque_tokens = True  # not a JSON Web Token: no shape to recognise it by
    sim.set_fault(ROTATED, "echo_token", count=0)
    exporter = start_exporter(f"--config.file={sim_env.config_file}")
    exporter.wait_ready()
    wait_until(lambda: "denied for Bearer" in exporter.log_text(), timeout=20)
    with sim.lock:
        tokens = [token for token in sim.tokens if token.startswith("opaque~")]
    assert tokens
    pages = exporter.get("/")[2] + exporter.get(f"/tenants/{ROTATED}")[2]
    everything = exporter.log_text().encode() + pages + exporter.metrics().encode()
    assert not [token for token in tokens if token.encode() in everything]
    assert b"denied for Bearer [REDACTED]" in everything
