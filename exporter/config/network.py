"""How often and where the exporter reaches Graph: durations and rates as the file writes them,
and the ``rate_limits``, ``endpoints`` and ``tls_ca_file`` keys."""

from __future__ import annotations

import re
from typing import Any

from exporter.config.model import (
    DEFAULT_PER_APP,
    DEFAULT_PER_APP_PER_TENANT,
    CloudEndpoints,
    RateLimit,
)
from exporter.config.problems import Problems, join

_HTTPS_HOST_RE = re.compile(r"^https://[^/\s]+$")
_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


def parse_duration(text: object) -> float:
    """Parse ``30s``, ``5m``, ``1h30m``, ``250ms`` into seconds; raise ValueError otherwise."""
    match = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration (use e.g. 30s, 5m, 1h30m, 250ms)")
    hours, minutes, seconds, millis = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def parse_rate_limit(text: object) -> RateLimit:
    """Parse ``5/10s`` (5 requests per 10 seconds)."""
    match = _RATE_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a rate (use e.g. 5/10s)")
    requests = int(match.group(1))
    per = parse_duration(match.group(2))
    if requests < 1 or per <= 0:
        raise ValueError(f"{text!r}: requests and period must be positive")
    return RateLimit(requests, per)


def parse_rate_limits_key(document: dict[str, Any], problems: Problems) -> dict[str, RateLimit]:
    limits = {"per_app_per_tenant": DEFAULT_PER_APP_PER_TENANT, "per_app": DEFAULT_PER_APP}
    node = document.get("rate_limits")
    if node is None:
        return limits
    if not isinstance(node, dict):
        problems.add("rate_limits", "must be a mapping")
        return limits
    problems.check_keys(node, set(limits), "rate_limits")
    for key in [key for key in limits if key in node]:
        try:
            limits[key] = parse_rate_limit(node[key])
        except ValueError as err:
            problems.add(f"rate_limits.{key}", str(err))
    return limits


def parse_endpoints(value: Any, path: str, problems: Problems) -> CloudEndpoints | None:
    if not isinstance(value, dict):
        problems.add(path, "must be a mapping with authority_host and graph_host")
        return None
    problems.check_keys(value, {"authority_host", "graph_host"}, path)
    hosts: list[str] = []
    for key in ("authority_host", "graph_host"):  # both checked: every problem at once
        host = problems.string(value.get(key), join(path, key))
        if host is not None and not _HTTPS_HOST_RE.match(host.rstrip("/")):
            problems.add(join(path, key), f"{host!r} must be an https:// URL without a path")
        elif host is not None:
            hosts.append(host.rstrip("/"))
    return CloudEndpoints(hosts[0], hosts[1]) if len(hosts) == 2 else None


def parse_tls_ca_file(document: dict[str, Any], problems: Problems) -> str | None:
    if document.get("tls_ca_file") is None:
        return None
    tls_ca_file = problems.string(document["tls_ca_file"], "tls_ca_file")
    if tls_ca_file:
        text = problems.read_text_file(tls_ca_file, "tls_ca_file")
        if text is not None and "-----BEGIN CERTIFICATE-----" not in text:
            problems.add("tls_ca_file", f"{tls_ca_file} holds no PEM certificate")
    return tls_ca_file
