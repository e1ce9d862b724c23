"""`make image`: build the Dockerfile with podman, as the brief's machines allow.

No registry image is reachable from here, so unless ``PYTHON_IMAGE`` names one, the base is
made with debootstrap from apt's own Debian mirror (bookworm: Python 3.11 with its venv) and
imported as ``localhost/entra-python-base:bookworm`` (kept for the next build). The build runs
on runc, with ``nofile``/``nproc`` pinned to what this machine's limits allow, and sees the
host's CA bundle only while it builds.

    python scripts/build_image.py [TAG]   # localhost/entra-registration-exporter:<version>
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = "localhost/entra-python-base:bookworm"
PACKAGES = "python3,python3-venv,ca-certificates"
CA_BUNDLE = "/etc/ssl/certs"


def podman(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", "--runtime", "runc", *args], text=True, check=False, **kwargs)  # type: ignore[call-overload]


def limits() -> list[str]:
    """``--ulimit`` pins: the hard limits (nproc capped where runc may not raise it)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    return [f"--ulimit=nofile={nofile}:{nofile}", f"--ulimit=nproc={nproc}:{nproc}"]


def apt_mirror() -> str:
    """The Debian mirror apt uses on this machine."""
    for source in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        if not source.is_file():
            continue
        text = source.read_text(errors="replace")
        found = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+bookworm", text, re.M
        )
        if found:
            return found.group(1)
    return "http://deb.debian.org/debian"


def base_image() -> str:
    """``PYTHON_IMAGE``, the base made before, or a new one from debootstrap."""
    if os.environ.get("PYTHON_IMAGE"):
        return os.environ["PYTHON_IMAGE"]
    if podman("image", "exists", BASE).returncode == 0:
        return BASE
    if shutil.which("debootstrap") is None:
        sys.exit("no PYTHON_IMAGE and no debootstrap: install Debian's debootstrap")
    with tempfile.TemporaryDirectory() as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
             str(rootfs), apt_mirror()],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / cache, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = podman("import", "-", BASE, stdin=tar.stdout, stdout=subprocess.DEVNULL)
        tar.wait()
        if imported.returncode != 0:
            sys.exit("podman import of the debootstrap base failed")
    return BASE


def version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'^version = "([^"]+)"', text, re.M)
    return found.group(1) if found else "0"


def main(tag: str | None = None) -> int:
    tag = tag or f"localhost/entra-registration-exporter:{version()}"
    built = podman(
        "build", "--format=docker", "--layers=false", *limits(),
        f"--build-arg=PYTHON_IMAGE={base_image()}", f"--build-arg=VERSION={version()}",
        f"--volume={CA_BUNDLE}:{CA_BUNDLE}:ro",  # only while building: pip reaches PyPI
        f"--tag={tag}", str(ROOT),
    )  # fmt: skip
    if built.returncode != 0:
        return built.returncode
    print(f"built {tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else None))
