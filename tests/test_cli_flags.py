"""Flags as Go exporters have them: every flag says what it does and its default; ':PORT'
serves IPv4 and IPv6; --once --output writes a textfile atomically."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from tests.conftest import (
    ExporterProcess,
    SimEnv,
    exposition_samples,
    free_port,
    run_cli,
    wait_until,
)


def test_every_flag_says_what_it_does_and_its_default() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    flags = re.findall(r"^  (--[\w.-]+)", result.stdout, re.MULTILINE)
    assert {"--config.file", "--web.listen-address", "--log.level", "--output"} <= set(flags)
    # Each option's help block, up to the next option.
    blocks = re.split(r"\n  (?=--)", result.stdout.split("options:", 1)[1])
    for block in blocks:
        name = block.split()[0]
        if name in ("-h,", "--version", "--check-config", "--once", "--demo", "--health.check"):
            continue  # switches and actions: nothing to default
        assert "default" in block, block


def connect(family: socket.AddressFamily, host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
@pytest.mark.parametrize("form", [":{port}", "[::]:{port}"])
def test_every_address_means_ipv4_and_ipv6(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], form: str
) -> None:
    port = free_port()
    exporter = start_exporter(
        f"--config.file={sim_env.config_file}", f"--web.listen-address={form.format(port=port)}"
    )
    wait_until(lambda: connect(socket.AF_INET, "127.0.0.1", port))
    assert connect(socket.AF_INET6, "::1", port)
    assert f"address=[::]:{port}" in exporter.log_text()


def test_once_output_writes_the_textfile_atomically(sim_env: SimEnv, tmp_path: Path) -> None:
    target = tmp_path / "entra.prom"
    target.write_text("old\n")
    result = run_cli(f"--config.file={sim_env.config_file}", "--once", f"--output={target}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    values = exposition_samples(target.read_text())
    assert values[("entra_exporter_tenant_up", (("tenant", "tenant-0000"),))] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    assert oct(os.stat(target).st_mode & 0o777) == "0o644"


def test_output_without_once_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("--output", str(tmp_path / "x.prom"))
    assert result.returncode == 2 and "--output needs --once" in result.stderr


def test_the_health_check_reads_the_port_and_tls_of_the_running_exporter(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], tmp_path: Path
) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config: {cert_file: server.crt, key_file: server.key}\n")
    exporter = start_exporter(f"--config.file={sim_env.config_file}", f"--web.config.file={web}")
    address = f"--web.listen-address=127.0.0.1:{exporter.port}"
    wait_until(
        lambda: run_cli("--health.check", address, f"--web.config.file={web}").returncode == 0
    )
    checked = run_cli("--health.check", address, f"--web.config.file={web}")
    assert (
        checked.stdout.strip()
        == f"health check: https://127.0.0.1:{exporter.port}/healthz answered 200"
    )
    # Plain HTTP to a TLS port, and a port nobody serves: unhealthy, saying why.
    assert run_cli("--health.check", address).returncode == 1
    stopped = run_cli("--health.check", f"--web.listen-address=:{free_port()}")
    assert stopped.returncode == 1 and "health check: http://127.0.0.1:" in stopped.stderr


def test_the_health_check_takes_process_ones_flags_in_a_container(tmp_path: Path) -> None:
    from exporter.health import health_url, serving_flags

    cmdline = tmp_path / "cmdline"
    script = ["/opt/exporter/bin/python3", "/opt/exporter/bin/entra-registration-exporter"]
    cmdline.write_bytes(
        b"\0".join(a.encode() for a in [*script, "--web.listen-address=:9900", "--demo"]) + b"\0"
    )
    assert serving_flags(["--health.check"], cmdline) == ["--web.listen-address=:9900", "--demo"]
    cmdline.write_bytes(b"python3\0-m\0exporter\0--web.config.file=/w.yml\0")
    assert serving_flags([], cmdline) == ["--web.config.file=/w.yml"]
    cmdline.write_bytes(b"/sbin/init\0splash\0")  # not a container of ours: its own flags
    assert serving_flags(["--web.listen-address=:1"], cmdline) == ["--web.listen-address=:1"]
    assert serving_flags(["x"], tmp_path / "absent") == ["x"]
    assert health_url(":9836", tls=False) == "http://127.0.0.1:9836/healthz"
    assert health_url("[::]:9836", tls=True) == "https://[::1]:9836/healthz"
    assert health_url("10.0.0.5:80", tls=False) == "http://10.0.0.5:80/healthz"
