"""No input can take /metrics down, wedge a tenant, hang a reload or leak a secret.

One test per class of hostile input, through the real CLI or the real HTTP stack; each failed
on the code before the fix (the reproduction is in the test's docstring).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config.loader import load_config
from exporter.config.model import Config
from exporter.graph.failures import RESULTS
from exporter.graph.transport import Transport
from exporter.polling import report_collector as successor
from exporter.polling import tenant as tenant_module
from tests.conftest import (
    ExporterProcess,
    Runtime,
    SimEnv,
    exporter_on_own_config,
    exposition_samples,
    http_get,
    run_cli,
    wait_until,
)

FAULTY, HEALTHY = "tenant-0001", "tenant-0000"


def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads")))


# ----------------------------------------------------------------- 1 and 2: values from Graph


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        # A lone surrogate: refused by the JSON decoder itself (msgspec), and by the label check
        # where a value enters (tests/test_report.py) if a decoder ever let one through.
        ("surrogate_status", "not JSON"),  # was: every scrape broke
        ("huge_count", "larger than a float64 holds"),  # was: promtool refused the scrape
        ("deep_json", "not JSON"),  # was: RecursionError, the job died, tenant_up stayed 1
    ],
)
async def test_a_hostile_answer_fails_its_own_tenant_only(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], fault: str, problem: str
) -> None:
    runtime = make_runtime(load_config(sim_env.config_file))
    assert (await runtime.poll(FAULTY)).result == "success"
    sim_env.sim.set_fault(FAULTY, fault, count=0)
    result = await runtime.poll(FAULTY)
    assert result.result == "parse_error" and result.failure is not None
    assert problem in result.failure.message
    assert (await runtime.poll(HEALTHY)).result == "success"
    text = runtime.store.render()
    text.decode("utf-8")  # the whole exposition encodes...
    families = list(text_string_to_metric_families(text.decode()))  # ...and parses
    values = exposition_samples(text.decode())
    assert values[("entra_exporter_tenant_up", (("tenant", FAULTY),))] == 0
    assert values[("entra_exporter_tenant_up", (("tenant", HEALTHY),))] == 1
    assert values[("entra_exporter_polls_total", (("result", "parse_error"), ("tenant", FAULTY)))]
    assert families


def test_counts_in_non_ascii_digits_are_refused() -> None:
    from exporter.reports.registration import ReportParseError, parse_registration_report

    arabic_ten, fullwidth_five = "\u0661\u0660", "\uff15"
    for count in (arabic_ten, fullwidth_five, "1" * 20):
        document = {
            "totalUserCount": 1,
            "userRegistrationCounts": [
                {"registrationStatus": "registered", "registrationCount": count}
            ],
        }
        with pytest.raises(ReportParseError):
            parse_registration_report(document)


def test_an_unencodable_tenant_name_is_a_config_error_not_a_traceback(
    sim_env: SimEnv, tmp_path: Path
) -> None:
    text = sim_env.config_file.read_text().replace("name: tenant-0001", 'name: "x\\ud800y"')
    assert "ud800" in text
    sim_env.config_file.write_text(text)
    result = run_cli(f"--config.file={sim_env.config_file}", "--check-config")
    assert result.returncode == 2, result.stderr
    assert "tenants[1].name: must be at most 128 printable characters" in result.stderr
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------- 3: exceptions below a poll


class Boom(Exception):
    """Something nothing below the poll expected."""


LAYERS = {
    "transport": (Transport, "request"),
    "token": (tenant_module.TenantTokenSource, "get_token"),
    "successor": (successor, "fetch_segment_context"),
    "seed report": (tenant_module.GraphClient, "fetch_registration_report"),
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("error", [Boom("x"), RecursionError(), KeyError("k"), ValueError("²")])
async def test_any_exception_at_any_layer_is_a_classified_counted_logged_result(
    sim_env: SimEnv,
    make_runtime: Callable[[Config], Runtime],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    layer: str,
    error: Exception,
) -> None:
    document = sim_env.config()
    document["tenants"][1]["source"] = "userRegistrationDetails"
    sim_env.write_config(document)
    owner, name = LAYERS[layer]

    async def explode(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(owner, name, explode)
    runtime = make_runtime(load_config(sim_env.config_file))
    tenant = HEALTHY if layer == "seed report" else FAULTY
    result = await runtime.poll(tenant)  # never raises
    assert result.result in RESULTS and result.result != "success"
    values = exposition_samples(runtime.store.render().decode())
    assert values[("entra_exporter_tenant_up", (("tenant", tenant),))] == 0
    counted = [
        v
        for (metric, labels), v in values.items()
        if metric == "entra_exporter_polls_total" and ("tenant", tenant) in labels
    ]
    assert sum(counted) == 1
    snapshot = runtime.store.snapshot(tenant)
    assert snapshot is not None and snapshot.polled  # /readyz counts a failed poll too
    assert any(getattr(r, "tenant", None) == tenant for r in caplog.records)


async def test_retry_after_in_superscript_digits_and_a_nextlink_loop_end_as_results(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    document = sim_env.config()
    document["tenants"][1]["source"] = "userRegistrationDetails"
    sim_env.write_config(document)
    runtime = make_runtime(load_config(sim_env.config_file))
    sim_env.sim.set_fault(HEALTHY, "throttle_superscript", count=1)
    assert (await runtime.poll(HEALTHY)).result == "success"  # retried after a backoff
    sim_env.sim.set_fault(FAULTY, "nextlink_loop", count=0)
    result = await runtime.poll(FAULTY)
    assert result.result == "parse_error" and result.failure is not None
    assert "loops back" in result.failure.message


# ----------------------------------------------------------------- 4 and 6: files and reloads


def test_a_fifo_or_a_device_as_config_or_secret_is_refused_at_start(
    sim_env: SimEnv, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = run_cli(f"--config.file={fifo}", "--check-config", timeout=20)
    assert result.returncode == 2 and "not a regular file" in result.stderr
    document = sim_env.config()
    del document["tenants"][0]["client_secret"]
    document["tenants"][0]["client_secret_file"] = "/dev/zero"
    sim_env.write_config(document)
    result = run_cli(f"--config.file={sim_env.config_file}", "--check-config", timeout=20)
    assert result.returncode == 2
    assert (
        "tenants[0].client_secret_file: cannot read /dev/zero: not a regular file" in result.stderr
    )


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            "\n".join(
                ['a: &a ["l","l","l","l","l","l","l","l","l","l"]']
                + [
                    f"{c}: &{c} [{','.join([f'*{p}'] * 10)}]"
                    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
                ]
                + ["tenants: *i"]
            ),
            "expands through its aliases",
        ),
        ("x: " + "[" * 50_000 + "]" * 50_000, "nested too deeply"),
    ],
    ids=["alias-bomb", "deep-nesting"],
)
def test_yaml_bombs_are_refused_at_start_with_exit_2(
    tmp_path: Path, document: str, problem: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(document + "\n")
    result = run_cli(f"--config.file={config}", "--check-config", timeout=30)
    assert result.returncode == 2, result.stderr
    assert problem in result.stderr and "Traceback" not in result.stderr


def post_reload(exporter: ExporterProcess) -> tuple[int, bytes]:
    request = urllib.request.Request(f"{exporter.url}/-/reload", data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=40) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def reload_metric(exporter: ExporterProcess) -> float:
    return exposition_samples(exporter.metrics())[
        ("entra_exporter_config_last_reload_successful", ())
    ]


@pytest.mark.slow  # the CLI as a process, three times: make test runs it
@pytest.mark.parametrize("bad", ["fifo", "deep", "devzero"])
def test_a_bad_reload_is_refused_answered_and_sigterm_still_stops_the_process(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], tmp_path: Path, bad: str
) -> None:
    exporter, config = exporter_on_own_config(sim_env, start_exporter, tmp_path)
    config.unlink()
    if bad == "fifo":
        os.mkfifo(config)  # no writer: reading it used to wedge the event loop
    elif bad == "deep":
        config.write_text("x: " + "[" * 50_000 + "]" * 50_000 + "\n")
    else:
        config.symlink_to("/dev/zero")
    status, body = post_reload(exporter)
    assert status == 500 and b"config reload refused" in body
    assert reload_metric(exporter) == 0
    exporter.proc.send_signal(signal.SIGHUP)  # the same through SIGHUP: refused, logged
    wait_until(lambda: exporter.log_text().count("config reload refused") >= 2)
    assert "Task exception was never retrieved" not in exporter.log_text()
    assert http_get(f"{exporter.url}/healthz")[0] == 200  # polls and the loop go on
    started = time.monotonic()
    assert exporter.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - started < 5


# ----------------------------------------------------------------- 7: connections and threads


@pytest.mark.slow
def test_trickling_connections_cannot_hold_threads_or_block_a_scrape(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess]
) -> None:
    exporter = start_exporter(f"--config.file={sim_env.config_file}")
    exporter.wait_ready()
    before = threads_of(exporter.proc.pid)
    stop = threading.Event()
    socks = []
    for _ in range(100):  # each sends a byte of a request line, then almost nothing
        sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
        sock.sendall(b"G")
        socks.append(sock)

    def trickle() -> None:
        while not stop.wait(2.0):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(b"E")

    threading.Thread(target=trickle, daemon=True).start()
    try:
        started = time.monotonic()
        status, _, body = http_get(f"{exporter.url}/metrics", timeout=10)
        elapsed = time.monotonic() - started
        assert status == 200 and b"entra_tenant_users" in body
        print(f"scrape under 100 trickling connections: {elapsed * 1000:.1f} ms")
        assert threads_of(exporter.proc.pid) <= before + 64 + 2  # the connection ceiling

        # The tricklers are cut off: evicted at once, or when their request is 10 s late.
        def all_closed() -> bool:
            closed = 0
            for sock in socks:
                sock.settimeout(0.01)
                try:
                    closed += sock.recv(1) == b""
                except TimeoutError:
                    pass
                except OSError:
                    closed += 1
            return closed == len(socks)

        wait_until(all_closed, timeout=30, interval=0.5)
    finally:
        stop.set()
        for sock in socks:
            sock.close()
    assert http_get(f"{exporter.url}/metrics")[0] == 200


# ----------------------------------------------------------------- 8: secrets in any encoding


def test_a_secret_echoed_in_any_encoding_never_reaches_the_log(sim_env: SimEnv) -> None:
    secret = 's3cr3t+/=&%ü"Value'
    tenant = sim_env.sim.find(FAULTY)
    assert tenant is not None
    tenant.secret = secret
    document = sim_env.config()
    document["tenants"][1]["client_secret"] = secret
    sim_env.write_config(document)
    sim_env.sim.set_fault(FAULTY, "echo_secret", count=0)
    result = run_cli(f"--config.file={sim_env.config_file}", "--once", "--log.level=debug")
    assert result.returncode == 1
    log = result.stdout + result.stderr
    assert "AADSTS90014" in log  # the echo was logged, redacted
    for form in (
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode()[:12],
    ):
        assert form not in log, form
    body = base64.b64encode(urllib.parse.urlencode({"client_secret": secret}).encode()).decode()
    assert body not in log


def test_expires_in_null_is_not_a_network_error(
    sim_env: SimEnv,
) -> None:
    sim_env.sim.set_fault(FAULTY, "expires_in_null", count=0)
    result = run_cli(f"--config.file={sim_env.config_file}", "--once")
    text = result.stdout
    values = exposition_samples(text)
    failed = {
        dict(labels)["result"]
        for (metric, labels), v in values.items()
        if metric == "entra_exporter_polls_total" and ("tenant", FAULTY) in labels and v
    }
    assert "network_error" not in failed


def test_logfmt_escapes_carriage_returns() -> None:
    from exporter.logs import render_logfmt

    line = render_logfmt({"msg": "a\rlevel=error forged", "x": "ok"})
    assert "\r" not in line and "\\r" in line


def test_accept_header_q_values_choose_the_format() -> None:
    from exporter.web.router import wants_openmetrics

    assert wants_openmetrics("application/openmetrics-text;version=1.0.0")
    assert not wants_openmetrics("application/openmetrics-text;q=0")
    assert not wants_openmetrics("application/openmetrics-text;q=0.4,text/plain;q=0.5")
    assert wants_openmetrics("application/openmetrics-text;q=0.5,text/plain;q=0.4,*/*;q=0.1")
