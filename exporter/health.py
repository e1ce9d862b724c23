"""``--health.check``: ask a running exporter's ``/healthz``, as a container's HEALTHCHECK does.

A HEALTHCHECK is a fixed command, but the port and TLS are the running exporter's flags. In a
container the exporter is process 1, so the check reads the same flags from its command line
(``/proc/1/cmdline``), and its own otherwise: the port of ``--web.listen-address`` on loopback,
over HTTPS when ``--web.config.file`` has ``tls_server_config`` (the exporter's own certificate,
not verified: it is loopback). Exit 0 when ``/healthz`` answers 200, else 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from exporter.config.problems import ConfigError
from exporter.settings import HEALTH_CHECK_FLAG, parse_settings
from exporter.web.config import WebConfig, load_web_config
from exporter.web.server import parse_listen_address

HEALTH_TIMEOUT_SECONDS = 4.0
PROCESS_ONE = "/proc/1/cmdline"
SCRIPT = "entra-registration-exporter"


def serving_flags(own: list[str], cmdline: str | Path = PROCESS_ONE) -> list[str]:
    """The flags of the exporter that process 1 is (a container), else ``own``: what follows
    the console script, or ``python -m exporter``, on its command line."""
    try:
        args = [a.decode("utf-8", "replace") for a in Path(cmdline).read_bytes().split(b"\0") if a]
    except OSError:
        return own
    for index, arg in enumerate(args):
        name = arg.rsplit("/", 1)[-1]
        if name == SCRIPT or (name == "exporter" and index > 0 and args[index - 1] == "-m"):
            return [a for a in args[index + 1 :] if a != HEALTH_CHECK_FLAG]
    return own


def health_url(listen_address: str, tls: bool) -> str:
    """Where ``/healthz`` answers for an exporter listening at ``listen_address``."""
    host, port = parse_listen_address(listen_address)
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - every address: ask on loopback
        host = "127.0.0.1" if host != "::" else "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}/healthz"


def check_health(own: list[str]) -> int:
    """Ask ``/healthz`` of the exporter that ``own`` (or process 1) describes; 0 if 200."""
    settings = parse_settings([*serving_flags(own), "--check-config"])
    try:
        web = load_web_config(settings.web_config_file) if settings.web_config_file else None
    except ConfigError as err:
        print(f"health check: {settings.web_config_file}: {err.problems[0]}", file=sys.stderr)
        return 1
    tls = (web or WebConfig()).tls
    url = health_url(settings.listen_address, tls is not None)
    try:
        # Loopback, the exporter's own certificate: nothing to verify it against here.
        status = httpx.get(url, timeout=HEALTH_TIMEOUT_SECONDS, verify=False).status_code  # noqa: S501
    except httpx.HTTPError as err:
        wants_certificate = "CERTIFICATE_REQUIRED" in str(err) or "HANDSHAKE_FAILURE" in str(err)
        if tls is not None and tls.requires_client_cert and wants_certificate:
            # It answered the handshake and wants a client certificate we do not have.
            print(f"health check: {url} serves TLS (a client certificate is required)")
            return 0
        print(f"health check: {url}: {err}", file=sys.stderr)
        return 1
    print(f"health check: {url} answered {status}")
    return 0 if status == 200 else 1
