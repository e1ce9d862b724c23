"""What a newcomer meets first: messages that say what to do, and a demo on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config.loader import load_config
from exporter.config.problems import ConfigError
from exporter.settings import parse_settings
from tests.conftest import REPO

TENANT = """
tenants:
  - name: contoso
    tenant_id: 5f1c3d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f
    client_id: 00000000-0000-4000-8000-000000000001
"""


def problems_of(tmp_path: Path, text: str) -> list[str]:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    config.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    return caught.value.problems


def test_a_missing_credential_names_all_five_kinds(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, TENANT)
    assert problem.startswith("tenants[0]: no credential")
    assert "managed_identity" in problem and "workload_identity" in problem


def test_a_missing_config_file_says_where_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nowhere.yaml")
    [problem] = caught.value.problems
    assert "--config.file" in problem and "config.example.yaml" in problem and "--demo" in problem


def test_an_indentation_error_says_to_check_the_indentation(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, "tenants:\n  - name: a\n   tenant_id: b\n")
    assert "YAML syntax error" in problem and "indentation" in problem


def test_a_tenant_interval_under_the_defaults_jitter_is_blamed_on_the_tenant(
    tmp_path: Path,
) -> None:
    text = TENANT + "    client_secret: x-secret-value\n    interval: 15s\n"
    [problem] = problems_of(tmp_path, "defaults:\n  jitter: 30s\n" + text)
    assert problem.startswith("tenants[0].interval: 15s is shorter than jitter 30s")


def test_privileged_roles_on_the_seeds_source_warn(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    text = TENANT + "    client_secret: x-secret-value\n    segments: {privileged_roles: true}\n"
    config.write_text(text)
    config.chmod(0o600)
    warnings = load_config(config).warnings
    assert any("privileged_roles: does nothing with source" in w for w in warnings)


def test_the_demo_listens_on_loopback_unless_told_otherwise() -> None:
    assert parse_settings(["--demo"]).listen_address == "127.0.0.1:9836"
    assert parse_settings([]).listen_address == ":9836"
    assert parse_settings(["--demo", "--web.listen-address=:9000"]).listen_address == ":9000"


def permission_rows(text: str, columns: int) -> list[tuple[str, str]]:
    """(permission, needed for) of each row of a markdown table whose first cell is one."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip().replace("`", "") for c in line.strip().strip("|").split("|")]
        if len(cells) == columns and cells[0].endswith((".All", ".Directory", "Method")):
            rows.append((cells[0], cells[-1]))
    return rows


def test_one_permissions_story_in_the_readme_the_docs_and_check_config(tmp_path: Path) -> None:
    from exporter.config.permissions import PERMISSIONS

    story = [(p.name, p.needed_for) for p in PERMISSIONS]
    assert permission_rows((REPO / "README.md").read_text(), 2) == story
    configuration = (REPO / "docs" / "configuration.md").read_text()
    assert permission_rows(configuration, 3) == story
    assert [p.call for p in PERMISSIONS] == [
        line.split("|")[2].strip().replace("`", "")
        for line in configuration.splitlines()
        if permission_rows(line, 3)
    ]
    assert (
        "adminconsent?client_id=" in configuration
        and "adminconsent?client_id=" in (REPO / "README.md").read_text()
    )


def test_what_the_docs_say_of_the_demo_and_the_dashboard_is_what_ships() -> None:
    import json

    from exporter.demo import DEMO_TENANTS

    words = {4: "four", 5: "five", 6: "six"}
    count = words[DEMO_TENANTS]
    assert f"simulator with {count} tenants" in (REPO / "README.md").read_text()
    assert f"with {count} sample tenants" in (REPO / "docs" / "development.md").read_text()
    dashboard = json.loads((REPO / "deploy" / "grafana" / "entra-registration.json").read_text())
    operations = " ".join((REPO / "docs" / "operations.md").read_text().split())
    for panel in dashboard["panels"]:
        assert panel["title"] in operations, panel["title"]
