"""Flags as Go exporters have them: every flag says what it does and its default; ':PORT'
serves IPv4 and IPv6; --once --output writes a textfile atomically."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

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
        if name in ("-h,", "--version", "--check-config", "--once", "--demo"):
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
