"""Warnings about a config that loads: secrets readable by everyone, intervals that ask for
more Graph requests than the rate limits allow."""

from __future__ import annotations

import stat
from pathlib import Path

from exporter.config.model import ClientSecretCredential, Config, format_duration


def world_readable_warnings(path: Path, config: Config) -> tuple[str, ...]:
    """Warn about the config file and secret files that every local user can read."""
    files = list(
        dict.fromkeys(
            [path]
            + [
                Path(t.credential.secret_file)
                for t in config.tenants
                if isinstance(t.credential, ClientSecretCredential) and t.credential.secret_file
            ]
        )
    )
    warnings = []
    for file in files:
        try:
            mode = file.stat().st_mode
        except OSError:
            continue
        if mode & stat.S_IROTH:
            warnings.append(
                f"{file} is readable by every user on this machine; it may hold secrets "
                f"(chmod o-r {file})"
            )
    return tuple(warnings)


def rate_limit_warnings(config: Config) -> tuple[str, ...]:
    """Warn where the intervals ask for more Graph requests than the rate limits allow."""
    warnings = []
    tenant_limit = config.per_app_per_tenant
    for tenant in config.tenants:
        if tenant.interval * tenant_limit.requests < tenant_limit.per_seconds:
            warnings.append(
                f"tenant {tenant.name}: interval {format_duration(tenant.interval)} polls more "
                f"often than rate_limits.per_app_per_tenant {tenant_limit} allows; "
                "polls will wait for the limit and fail as throttled"
            )
    per_app: dict[str, float] = {}
    for tenant in config.tenants:
        per_app[tenant.client_id.lower()] = per_app.get(tenant.client_id.lower(), 0.0) + (
            config.per_app.per_seconds / tenant.interval
        )
    for client_id, requests in per_app.items():
        if requests > config.per_app.requests:
            warnings.append(
                f"client_id {client_id}: its tenants need about {requests:.0f} requests per "
                f"{format_duration(config.per_app.per_seconds)}, more than rate_limits.per_app "
                f"{config.per_app} allows; polls will wait for the limit"
            )
    return tuple(warnings)
