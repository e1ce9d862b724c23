"""Changes take effect without a signal: a changed config file reloads, a failed tenant is
asked again within a minute, a reload polls what it added or changed at once."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import ExporterProcess, SimEnv, exposition_samples, wait_until


def tenant_up(exporter: ExporterProcess, name: str) -> float | None:
    return exposition_samples(exporter.metrics()).get(
        ("entra_exporter_tenant_up", (("tenant", name),))
    )


def swap(config: Path, document: dict) -> None:
    """Replace the file the way a mounted ConfigMap changes: a new file renamed over it."""
    fresh = config.with_suffix(".new")
    fresh.write_text(yaml.safe_dump(document))
    fresh.chmod(0o600)
    os.replace(fresh, config)


def test_a_changed_config_file_is_reloaded_and_new_tenants_polled_at_once(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], tmp_path: Path
) -> None:
    document = yaml.safe_load(sim_env.config_file.read_text())
    document["defaults"]["interval"] = "1h"  # only a reload's own poll can show a new tenant
    added = document["tenants"].pop()
    config = tmp_path / "config.yaml"
    swap(config, document)
    exporter = start_exporter(f"--config.file={config}")
    exporter.wait_ready()
    assert tenant_up(exporter, added["name"]) is None
    document["tenants"].append(added)
    swap(config, document)
    wait_until(lambda: tenant_up(exporter, added["name"]) == 1, timeout=15)
    assert "config file changed on disk" in exporter.log_text()


@pytest.mark.slow
def test_a_failed_tenant_is_asked_again_within_a_minute(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], tmp_path: Path
) -> None:
    document = yaml.safe_load(sim_env.config_file.read_text())
    document["defaults"]["interval"] = "1h"
    config = tmp_path / "config.yaml"
    swap(config, document)
    failing = document["tenants"][0]["name"]
    sim_env.sim.set_fault(failing, "invalid_client", count=1)
    exporter = start_exporter(f"--config.file={config}")
    exporter.wait_ready()
    assert tenant_up(exporter, failing) == 0
    wait_until(lambda: tenant_up(exporter, failing) == 1, timeout=60, interval=0.5)
