"""The container image, built from the Dockerfile with podman (scripts/build_image.py) and run
the way the manifests run it: read-only root with /tmp as tmpfs, no capabilities, uid 65532."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import REPO, free_port, http_get, wait_until

TAG = "localhost/entra-registration-exporter:test"


def engine() -> str:
    found = shutil.which("podman")
    if found is None:
        if os.environ.get("EXPORTER_TEST_STRICT"):
            pytest.fail("podman is missing: make test installs Debian's podman as root")
        pytest.skip("no podman (a container engine): `make test` installs Debian's as root")
    return found


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [engine(), "--runtime", "runc", *args], capture_output=True, text=True, check=check,
        timeout=600,
    )  # fmt: skip


def run_args() -> list[str]:
    """As the manifests run it, with the limits this machine's runc may set."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    return [
        "run", f"--ulimit=nofile={nofile}:{nofile}", f"--ulimit=nproc={nproc}:{nproc}",
        "--read-only", "--tmpfs=/tmp", "--cap-drop=ALL", "--user=65532:65532",
        "--security-opt=no-new-privileges", "--health-interval=disable",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def image() -> str:
    engine()
    built = subprocess.run(
        [sys.executable, "scripts/build_image.py", TAG],
        capture_output=True, text=True, cwd=REPO, timeout=900, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return TAG


@pytest.fixture
def demo(image: str) -> Iterator[tuple[int, str]]:
    # As the README says to run it: no --web.listen-address, the published port reaches it.
    port = free_port()
    started = podman(
        *run_args(), "--detach", f"--publish=127.0.0.1:{port}:9836", image, "--demo"
    )  # fmt: skip
    container = started.stdout.strip()
    try:
        yield port, container
    finally:
        podman("rm", "--force", container, check=False)


def test_the_image_runs_as_uid_65532_with_a_healthcheck(image: str) -> None:
    [inspected] = json.loads(podman("image", "inspect", image).stdout)
    assert inspected["Config"]["User"] == "65532:65532"
    healthcheck = inspected.get("Healthcheck") or inspected["Config"].get("Healthcheck")
    assert "--health.check" in healthcheck["Test"]
    version = podman(*run_args(), "--rm", image, "--version")
    assert version.stdout.startswith("entra-registration-exporter ")


def test_the_demo_serves_from_a_read_only_image(demo: tuple[int, str]) -> None:
    port, container = demo
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_get(f"{url}/readyz")[0] == 200, timeout=60)
    assert http_get(f"{url}/healthz")[0] == 200
    status, _, body = http_get(f"{url}/metrics")
    assert status == 200 and b"entra_tenant_users{" in body
    assert podman("healthcheck", "run", container, check=False).returncode == 0


def test_the_healthcheck_follows_a_changed_port(image: str) -> None:
    port = free_port()
    started = podman(
        *run_args(), "--detach", f"--publish=127.0.0.1:{port}:9900", image,
        "--demo", "--web.listen-address=:9900",
    )  # fmt: skip
    container = started.stdout.strip()
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, timeout=60)
        checked = podman("healthcheck", "run", container, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        podman("rm", "--force", container, check=False)
