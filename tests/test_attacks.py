"""The second hostile pass: one test per class of what did not hold, through the real CLI,
real sockets and real signals, asserting what an operator sees."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import yaml

from tests.conftest import (
    REPO,
    ExporterProcess,
    SimEnv,
    exporter_on_own_config,
    http_get,
    wait_until,
)

FAULTY = "tenant-0001"


def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads")))


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on one connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def exporter(sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess]) -> ExporterProcess:
    process = start_exporter(f"--config.file={sim_env.config_file}")
    process.wait_ready()
    return process


# ----------------------------------------------------------------- 1: slow clients, any stage


@pytest.mark.parametrize(
    "stage",
    [b"GET /metrics HTTP/1.1\r\nX-A: ", b"POST /-/reload HTTP/1.1\r\nContent-Length: 50\r\n\r\nx"],
    ids=["headers", "body"],
)
def test_clients_trickling_headers_or_a_body_never_shut_out_probes_or_scrapes(
    exporter: ExporterProcess, stage: bytes
) -> None:
    socks = []
    for _ in range(80):  # past the ceiling of 64, each past its request line
        sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
        sock.sendall(stage)
        socks.append(sock)
    try:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert http_get(f"{exporter.url}{path}", timeout=5)[0] == 200, path
    finally:
        for sock in socks:
            sock.close()


# ----------------------------------------------------------------- 2 and 3: starvation, reloads


def test_reload_floods_are_coalesced_and_never_starve_probes(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], tmp_path: Path
) -> None:
    exporter, config = exporter_on_own_config(sim_env, start_exporter, tmp_path)
    before = threads_of(exporter.proc.pid)
    config.unlink()
    os.mkfifo(config)  # every load hangs until its deadline
    answers: list[int] = []

    def post() -> None:
        request = urllib.request.Request(f"{exporter.url}/-/reload", data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answers.append(response.status)
        except urllib.error.HTTPError as err:
            answers.append(err.code)
        except OSError:
            answers.append(0)

    posters = [threading.Thread(target=post) for _ in range(80)]
    for thread in posters:
        thread.start()
    try:
        time.sleep(0.5)  # let the posts arrive: the flood is the condition, not the event
        for path in ("/healthz", "/readyz", "/metrics"):
            assert http_get(f"{exporter.url}{path}", timeout=5)[0] == 200, path
        # One loader at a time, whatever the number of waiting reloads.
        assert threads_of(exporter.proc.pid) <= before + 64 + 3
    finally:
        for thread in posters:
            thread.join(70)
    assert set(answers) <= {500, 503}  # refused (the FIFO), or busy: try again
    assert answers.count(500) >= 1
    assert exporter.log_text().count("not read within") <= 3  # coalesced, not 80 loads


def test_a_signal_storm_is_coalesced(exporter: ExporterProcess) -> None:
    for _ in range(300):
        exporter.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "config reloaded" in exporter.log_text(), timeout=20)
    time.sleep(1.0)  # any reload still queued would log now
    assert exporter.log_text().count("config reloaded") <= 3
    assert http_get(f"{exporter.url}/healthz")[0] == 200


# ----------------------------------------------------------------- 5: signals at start


def hup_blocked(pid: int) -> bool:
    """True once the process's first instruction held SIGHUP back (its blocked-signal mask)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk"))
    return bool(int(mask, 16) & 1 << (signal.SIGHUP - 1))


def test_a_sighup_during_start_up_is_held_until_the_exporter_can_reload(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess]
) -> None:
    exporter = start_exporter(f"--config.file={sim_env.config_file}")
    # Before our first instruction the interpreter itself is starting: no code of ours runs.
    wait_until(lambda: hup_blocked(exporter.proc.pid), timeout=10, interval=0.001)
    for _ in range(20):  # then, all through start-up
        with contextlib.suppress(ProcessLookupError):
            exporter.proc.send_signal(signal.SIGHUP)
        time.sleep(0.01)
    exporter.wait_ready()
    assert exporter.proc.poll() is None
    wait_until(lambda: "config reloaded" in exporter.log_text(), timeout=10)


def test_sighup_never_kills_once(sim_env: SimEnv) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", f"--config.file={sim_env.config_file}", "--once"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    wait_until(lambda: hup_blocked(proc.pid), timeout=10, interval=0.001)
    for _ in range(20):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGHUP)
        time.sleep(0.02)
    assert proc.wait(30) in (0, 1)  # not -SIGHUP


@pytest.fixture(scope="session")
def clockshift(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/clockshift/clockshift.c built: an LD_PRELOAD library that steps a process's wall
    clock (and only it) by the seconds in a file."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        if os.environ.get("EXPORTER_TEST_STRICT"):  # make test installs it: missing is a failure
            pytest.fail("no C compiler: make test installs gcc and libc6-dev")
        pytest.skip("no C compiler (Debian: gcc, libc6-dev)")
    library = tmp_path_factory.mktemp("clockshift") / "clockshift.so"
    source = REPO / "tests" / "clockshift" / "clockshift.c"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return library


def successful_polls(exporter: ExporterProcess, tenant: str) -> float:
    line = f'entra_exporter_polls_total{{tenant="{tenant}",result="success"}} '
    found = [row for row in exporter.metrics().splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


@pytest.mark.parametrize("step", [-3600, 3600], ids=["back-an-hour", "ahead-an-hour"])
def test_a_wall_clock_step_stops_no_poll_and_no_probe(
    sim_env: SimEnv,
    start_exporter: Callable[..., ExporterProcess],
    clockshift: Path,
    tmp_path: Path,
    step: int,
) -> None:
    shift = tmp_path / "shift"
    shift.write_text("0\n")
    env = {"LD_PRELOAD": str(clockshift), "CLOCK_SHIFT_FILE": str(shift)}
    exporter = start_exporter(f"--config.file={sim_env.config_file}", env=env)
    exporter.wait_ready()
    wait_until(lambda: successful_polls(exporter, "tenant-0000") >= 2, timeout=20)
    shift.write_text(f"{step}\n")  # every tenant polls each second (sim_env's interval)
    wait_until(lambda: "the wall clock stepped" in exporter.log_text(), timeout=20)
    before = successful_polls(exporter, "tenant-0000")
    deadline = time.monotonic() + 30
    while successful_polls(exporter, "tenant-0000") < before + 3:
        assert exporter.get("/healthz")[0] == 200
        assert time.monotonic() < deadline, "polls stopped after the wall clock stepped"
        time.sleep(0.2)
    assert exporter.get("/healthz")[0] == 200 and exporter.get("/readyz")[0] == 200
    stepped = [line for line in exporter.log_text().splitlines() if "wall clock stepped" in line]
    assert len(stepped) == 1 and str(float(step)) in stepped[0], stepped


# ----------------------------------------------------------------- 6: framing


def test_a_body_on_a_get_is_never_read_as_a_second_request(exporter: ExporterProcess) -> None:
    hidden = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    smuggled = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(hidden)).encode()
        + b"\r\n\r\n"
        + hidden
    )
    answer = raw(exporter.port, smuggled)
    assert answer.count(b"HTTP/1.1 ") == 1 and answer.startswith(b"HTTP/1.1 200")
    two_lengths = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: "
        + str(len(hidden)).encode()
        + b"\r\n\r\n"
        + hidden
    )
    answer = raw(exporter.port, two_lengths)
    assert answer.count(b"HTTP/1.1 ") == 1 and answer.startswith(b"HTTP/1.1 400")
    chunked = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert raw(exporter.port, chunked).startswith(b"HTTP/1.1 400")
    time.sleep(0.5)
    assert "config reload" not in exporter.log_text()  # no hidden reload ran


# ----------------------------------------------------------------- 7: what answers reveal


def test_a_refused_reload_names_paths_never_values_and_cross_site_posts_are_refused(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], tmp_path: Path
) -> None:
    exporter, config = exporter_on_own_config(sim_env, start_exporter, tmp_path)
    document = yaml.safe_load(config.read_text())
    secret = "Q8x~sUp3r-s3cret-v4lue-not-a-guid"
    document["tenants"][0]["client_id"] = secret
    config.write_text(yaml.safe_dump(document))
    request = urllib.request.Request(f"{exporter.url}/-/reload", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    body = refused.value.read().decode()
    assert "tenants[0].client_id" in body and secret not in body
    forged = urllib.request.Request(
        f"{exporter.url}/-/reload",
        data=b"x=1",
        method="POST",
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    with pytest.raises(urllib.error.HTTPError) as cross:
        urllib.request.urlopen(forged, timeout=10)
    assert cross.value.code == 403
    status, headers, _ = exporter.get("/")
    assert status == 200
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"


# ----------------------------------------------------------------- 8: credentials echoed


def test_an_echoed_token_reaches_no_log_page_or_answer(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess]
) -> None:
    token = "eyJ0eXAiOiJKV1QifQ.eyJ0aWQiOiJlY2hvZWQifQ.c2lnbmF0dXJlLWVjaG9lZA"
    exporter = start_exporter(f"--config.file={sim_env.config_file}")
    exporter.wait_ready()
    error = {"error": {"code": f"Bearer {token}", "message": f"echo {token}"}}
    sim_env.sim.set_body(FAULTY, 403, json.dumps(error).encode(), "application/json")
    wait_until(lambda: "Bearer" in exporter.log_text(), timeout=20)
    pages = exporter.get("/")[2] + exporter.get(f"/tenants/{FAULTY}")[2]
    everything = exporter.log_text().encode() + pages + exporter.metrics().encode()
    assert token.encode() not in everything
    assert b"eyJ0aWQiOiJlY2hvZWQifQ" not in everything


# ----------------------------------------------------------------- 9: files and streams


def test_output_replaces_only_a_regular_file(sim_env: SimEnv, tmp_path: Path) -> None:
    target = tmp_path / "real.prom"
    target.write_text("kept\n")
    link = tmp_path / "link.prom"
    link.symlink_to(target)
    result = subprocess.run(
        [sys.executable, "-m", "exporter", f"--config.file={sim_env.config_file}", "--once",
         f"--output={link}"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "not a regular file" in result.stderr
    assert link.is_symlink() and target.read_text() == "kept\n"


@pytest.mark.parametrize("stdout", ["closed", "full"])
def test_once_on_a_broken_stdout_says_so_in_one_line(sim_env: SimEnv, stdout: str) -> None:
    command = f"{sys.executable} -m exporter --config.file={sim_env.config_file} --once"
    redirect = ">&-" if stdout == "closed" else ">/dev/full"
    result = subprocess.run(
        ["bash", "-c", f"{command} {redirect}"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "cannot write the exposition" in result.stderr


def test_core_dumps_are_off(exporter: ExporterProcess) -> None:
    limits = Path(f"/proc/{exporter.proc.pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"]


# ----------------------------------------------------------------- 10: buckets per client


@pytest.fixture
def guarded(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], tmp_path: Path
) -> ExporterProcess:
    hashed = bcrypt.hashpw(b"scrape-pass", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {
                "basic_auth_users": {"prometheus": hashed},
                "rate_limit": {"interval": "1s", "burst": 5},
            }
        )
    )
    exporter = start_exporter(f"--config.file={sim_env.config_file}", f"--web.config.file={web}")
    exporter.wait_ready()
    return exporter


def test_failed_auth_never_spends_the_rate_limit_of_real_scrapes(guarded: ExporterProcess) -> None:
    for _ in range(30):
        assert guarded.get("/metrics")[0] == 401  # anonymous: refused, not counted
    auth = "Basic " + base64.b64encode(b"prometheus:scrape-pass").decode()
    assert [guarded.get("/metrics", {"Authorization": auth})[0] for _ in range(5)] == [200] * 5


def hostile_details_page(users: int, repeats: int) -> bytes:
    """One page of userRegistrationDetails with a new method, preferred method and (of 50)
    user type on every row, and its first ``repeats`` users sent twice."""
    rows = [
        {
            "id": f"00000000-0000-4000-8000-{i + 1:012x}",
            "userType": f"type{i % 50}",
            "isAdmin": False,
            "isMfaRegistered": True,
            "methodsRegistered": [f"method{i}"],
            "systemPreferredAuthenticationMethods": [f"preferred{i}"],
        }
        for i in range(users)
    ]
    return json.dumps({"value": rows + rows[:repeats]}).encode()


def test_graphs_label_values_are_capped_per_family_counted_and_logged_once(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess]
) -> None:
    document = sim_env.config()
    document["tenants"][1]["source"] = "userRegistrationDetails"
    sim_env.write_config(document)
    page = hostile_details_page(400, repeats=100)
    sim_env.sim.set_body(FAULTY, 200, page, "application/json", times=0)
    exporter = start_exporter(f"--config.file={sim_env.config_file}")
    exporter.wait_ready()
    mine = f'tenant="{FAULTY}"'

    def polled(times: int) -> bool:
        text = exporter.metrics()
        line = f'entra_exporter_polls_total{{{mine},result="success"}} '
        return any(
            row.startswith(line) and float(row.split()[-1]) >= times for row in text.splitlines()
        )

    wait_until(lambda: polled(3), timeout=30)
    text = exporter.metrics()
    series = [row for row in text.splitlines() if mine in row and not row.startswith("#")]
    assert len(series) <= 520  # docs/metrics.md, "Label caps"
    assert f"entra_tenant_users{{{mine}}} 400" in text  # each user once, every user counted
    dropped = 'entra_exporter_label_values_dropped{%s,family="%s"} %d'
    assert dropped % (mine, "entra_authentication_method_users", 400 - 64) in text
    assert dropped % (mine, "entra_system_preferred_method_users", 400 - 64) in text
    assert dropped % (mine, "entra_segment_users", 50 - 5) in text  # "unknown" holds a slot
    logged = [line for line in exporter.log_text().splitlines() if "label values for" in line]
    assert len(logged) == 3, logged  # once per family, however many polls
    repeats = [line for line in exporter.log_text().splitlines() if "already sent" in line]
    assert repeats and all("100 rows" in line for line in repeats)


# ----------------------------------------------------------------- 11: names that fit


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("empty_token", "access token that is empty"),
        ("crlf_token", "access token that is empty or holds characters"),
        ("expires_in_text", "token request failed"),
    ],
)
async def test_unusable_tokens_are_named_as_such(
    sim_env: SimEnv, make_runtime: Callable, fault: str, words: str
) -> None:
    from exporter.config.loader import load_config

    sim_env.sim.set_fault(FAULTY, fault, count=0)
    runtime = make_runtime(load_config(sim_env.config_file))
    result = await runtime.poll(FAULTY)
    assert result.result in ("parse_error", "auth_error"), result
    assert result.result != "network_error"
    assert result.failure is not None and words in result.failure.message
    assert "discovery" not in result.failure.message


def test_a_port_in_use_is_one_line_and_exit_1(sim_env: SimEnv) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "exporter", f"--config.file={sim_env.config_file}",
             f"--web.listen-address=127.0.0.1:{port}"],
            capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert "cannot listen on" in result.stderr and "Traceback" not in result.stderr
