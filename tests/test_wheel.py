"""A wheel anyone can install: built from this tree, checked by twine, installed in an empty
virtualenv, where both console scripts run and --demo serves."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, http_get, wait_until


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--sdist",
            "--wheel",
            "--outdir",
            str(out),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=240,
    )
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheel = next(dist.glob("*.whl"))
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return venv / "bin"


def project_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    files = sorted(str(p) for p in dist.iterdir())
    assert any(f.endswith(".whl") for f in files) and any(f.endswith(".tar.gz") for f in files)
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(rf"entra_registration_exporter-{project_version()}-py3", " ".join(files))


def test_the_installed_wheel_has_both_scripts_and_the_version(installed: Path) -> None:
    version = subprocess.run(
        [str(installed / "entra-registration-exporter"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == f"entra-registration-exporter {project_version()}"
    simulator = subprocess.run(
        [str(installed / "entra-registration-simulator"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--tenants" in simulator.stdout


def test_demo_runs_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(installed / "entra-registration-exporter"),
            "--demo",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        cwd=tmp_path,  # not the source tree: only the wheel's files can be imported
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, timeout=30)
        status, _, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b'entra_tenant_users{tenant="tenant-0000"}' in body
    finally:
        proc.terminate()
        proc.wait(10)
