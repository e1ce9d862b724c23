"""Processes for benchmarks: the simulator and the exporter, each its own process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s")


def terminate(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, wait up to 10 s, then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass(frozen=True)
class ProcessSample:
    """Resource use of a process, read from /proc."""

    rss_bytes: int
    peak_rss_bytes: int
    threads: int
    open_fds: int
    cpu_seconds: float


def sample_process(pid: int) -> ProcessSample:
    """RSS, threads, open file descriptors and CPU time of ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kb = int(fields["VmRSS"].split()[0])
    threads = int(fields["Threads"])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    peak_kb = int(fields["VmHWM"].split()[0])
    return ProcessSample(rss_kb * 1024, peak_kb * 1024, threads, fds, cpu)


def connections_to(pid: int, port: int) -> int:
    """How many of ``pid``'s TCP sockets are connected to ``port`` (on any address).

    The exporter keeps up to ``concurrency`` connections to Graph open in its pools; telling
    them apart from its other descriptors lets a soak see a leak under them.
    """
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    count += 1
    return count


class SimulatorProcess:
    """``entra-registration-simulator`` in its own process."""

    def __init__(
        self,
        workdir: Path,
        tenants: int,
        *,
        latency: str = "0s",
        fault_rate: float = 0.0,
        token_lifetime: int = 3599,
        interval: str = "10m",
        jitter: str = "0s",
        timeout: str = "30s",
        config_overrides: dict[str, Any] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.config_file = workdir / "config.yaml"
        self.ca_file = workdir / "simulator-ca.pem"
        args = [
            sys.executable,
            "-m",
            "entra_simulator",
            f"--tenants={tenants}",
            f"--latency={latency}",
            f"--fault-rate={fault_rate}",
            f"--token-lifetime={token_lifetime}",
            f"--interval={interval}",
            f"--jitter={jitter}",
            f"--timeout={timeout}",
            "--seed=1",
            f"--config-out={self.config_file}",
            *extra_args,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("simulator listening on "):
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1].rstrip("/"))
        if config_overrides:
            document = yaml.safe_load(self.config_file.read_text())
            for key, value in config_overrides.items():
                if isinstance(value, dict) and isinstance(document.get(key), dict):
                    document[key].update(value)
                else:
                    document[key] = value
            self.config_file.write_text(yaml.safe_dump(document, sort_keys=False))
            self.config_file.chmod(0o600)
        self._context = ssl.create_default_context(cafile=str(self.ca_file))

    def call(self, path: str, body: Any = None) -> Any:
        """The simulator's control and stats API."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, context=self._context, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """Requests per tenant."""
        result: dict[str, Any] = self.call("/_sim/stats")
        return result

    def stop(self) -> None:
        """Stop the simulator."""
        terminate(self.proc)


class ExporterProcess:
    """``entra-registration-exporter`` in its own process."""

    def __init__(self, config_file: Path, log_file: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self._log = log_file.open("wb")
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                f"--config.file={config_file}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *extra,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 30
    ) -> tuple[int, bytes]:
        """GET a path of the exporter: (status, body)."""
        request = urllib.request.Request(f"{self.url}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def wait_ready(self, timeout: float = 120, interval: float = 0.05) -> None:
        """Until ``/readyz`` answers 200, asking every ``interval`` seconds."""
        wait_for(
            lambda: self.get("/readyz", timeout=5)[0] == 200, timeout, "exporter ready", interval
        )

    def sample(self) -> ProcessSample:
        """Resource use now."""
        return sample_process(self.proc.pid)

    def stop(self) -> int:
        """SIGTERM and wait."""
        terminate(self.proc)
        self._log.close()
        return int(self.proc.returncode)


def secret_volume(folder: Path, files: dict[str, str], generation: str) -> None:
    """Write ``files`` as the kubelet writes a Secret volume: a timestamped folder, ``..data``
    linking to it (swapped by a rename), and each key a link through ``..data``."""
    version = folder / f"..{generation}"
    version.mkdir(parents=True)
    for key, value in files.items():
        (version / key).write_text(value)
        if not (folder / key).is_symlink():
            (folder / key).symlink_to(Path("..data") / key)
    (folder / "..data_tmp").symlink_to(version.name)
    os.replace(folder / "..data_tmp", folder / "..data")
