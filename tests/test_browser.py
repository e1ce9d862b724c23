"""The landing page and a tenant page in a real headless browser (Debian's chromium), against
the simulator with a failing tenant and a tenant with segments."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from entra_simulator.segments import directory_of
from entra_simulator.simulator import Simulator
from tests.conftest import ExporterProcess, SimEnv, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)"
)
FAILING, SEGMENTED = "tenant-0001", "tenant-0002"


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless chromium, as the machine's notes say it runs here; its stdout."""
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def visible_text(dom: str) -> str:
    """What a person reads: the DOM without tags, styles and extra white space."""
    dom = re.sub(r"<style>.*?</style>", "", dom, flags=re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


@pytest.fixture
def exporter(sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess]) -> ExporterProcess:
    segmented = sim_env.sim.find(SEGMENTED)
    assert segmented is not None
    segmented.users = 400
    document = sim_env.config()
    entry = document["tenants"][2]
    entry["source"] = "userRegistrationDetails"
    entry["segments"] = {
        "privileged_roles": True,
        "groups": {"finance": directory_of(segmented).group_named("finance").id},
    }
    sim_env.write_config(document)
    sim_env.sim.set_fault(FAILING, "forbidden", count=0)
    process = start_exporter(f"--config.file={sim_env.config_file}")
    process.wait_ready()
    wait_until(lambda: "auth_error" in process.get("/")[2].decode())
    return process


def test_the_landing_page_shows_what_an_operator_needs(
    exporter: ExporterProcess, tmp_path: Path
) -> None:
    text = visible_text(chromium(tmp_path, "--dump-dom", f"{exporter.url}/"))
    assert "Entra registration exporter" in text
    for name in ("tenant-0000", FAILING, SEGMENTED):
        assert name in text
    # The failing tenant: result class, HTTP status, Graph's error code, request id.
    assert "auth_error" in text and "HTTP 403" in text
    assert "Authentication_ApplicationHasNoReadAuditLogDataAccess" in text
    assert "request-id" in text
    assert "MFA-registered of" in text and "next poll" in text
    assert "privileged admins:" in text  # the segments of the segmented tenant
    assert "sim-secret" not in text and "eyJ" not in text  # never a secret, never a token


def test_a_tenant_page_lists_recent_polls_and_the_failed_polls_log(
    exporter: ExporterProcess, tmp_path: Path
) -> None:
    text = visible_text(chromium(tmp_path, "--dump-dom", f"{exporter.url}/tenants/{FAILING}"))
    assert f"{FAILING}" in text and "Recent polls" in text
    assert "Log of the last failed poll" in text and "poll failed:" in text
    assert f"tenant={FAILING}" in text and "result=auth_error" in text
    segments = visible_text(chromium(tmp_path, "--dump-dom", f"{exporter.url}/tenants/{SEGMENTED}"))
    assert "Segments" in segments and "privileged_admin" in segments and "finance" in segments
    assert "user0@" not in segments and "User 0" not in segments  # never a user's name


@pytest.mark.parametrize("width", [800, 1400])
def test_the_pages_at_800_and_1400_pixels_wrap_at_spaces_never_mid_word(
    exporter: ExporterProcess, tmp_path: Path, width: int
) -> None:
    from exporter.web.pages import STYLE

    # Nothing lets the browser break a word where it likes; wide tables scroll in their box.
    assert (
        "anywhere" not in STYLE and "break-all" not in STYLE and ".wide{overflow-x:auto}" in STYLE
    )
    for path in ("/", f"/tenants/{SEGMENTED}", f"/tenants/{FAILING}"):
        dom = chromium(
            tmp_path, "--dump-dom", f"--window-size={width},900", f"{exporter.url}{path}"
        )
        assert dom.count("<table") == dom.count('<div class="wide"><table'), path
        shot = tmp_path / f"page-{width}.png"
        chromium(
            tmp_path, f"--screenshot={shot}", f"--window-size={width},900", f"{exporter.url}{path}"
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@pytest.fixture
def thousand(
    tmp_path: Path, start_exporter: Callable[..., ExporterProcess]
) -> Iterator[ExporterProcess]:
    """An exporter polling 1,000 simulated tenants, one of them missing a permission."""
    sim = Simulator(tenants=1000, seed=11)
    sim.start()
    try:
        sim.write_ca(tmp_path / "ca.pem")
        config = tmp_path / "config.yaml"
        sim.write_config(config, str(tmp_path / "ca.pem"), interval=3600.0, jitter=0.0)
        sim.set_fault("tenant-0500", "forbidden", count=0)
        process = start_exporter(f"--config.file={config}")
        process.wait_ready(timeout=120)
        yield process
    finally:
        sim.stop()


@pytest.mark.slow
def test_the_triage_page_at_a_thousand_tenants(thousand: ExporterProcess, tmp_path: Path) -> None:
    dom = chromium(tmp_path, "--dump-dom", "--window-size=1400,900", f"{thousand.url}/")
    text = visible_text(dom)
    assert "1,000 tenants: 999 up, 1 failing (auth_error 1), 0 not polled yet" in text
    rows = re.findall(r"<tr><td><a href=[\"']/tenants/([^\"']+)[\"']>", dom)
    assert len(rows) == 1000 and rows[0] == "tenant-0500"  # failing first
    assert "grant AuditLog.Read.All (application) with admin consent" in text  # its hint
    assert text.count("HTTP 403") == 1
    filtered = visible_text(chromium(tmp_path, "--dump-dom", f"{thousand.url}/?tenant=tenant-099"))
    assert "showing 10" in filtered and "tenant-0500" not in filtered
    shot = tmp_path / "landing-page.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,900", f"{thousand.url}/")
    assert shot.stat().st_size > 10_000
    if os.environ.get("EXPORTER_UPDATE_SCREENSHOTS"):
        shutil.copy(shot, Path(__file__).parent.parent / "docs" / "landing-page.png")
