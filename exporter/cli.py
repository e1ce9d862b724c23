"""Command line: flags (:mod:`exporter.settings`) → check the config, poll once, or serve
(:mod:`exporter.service`).

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import resource
import sys

from exporter.config.loader import load_config
from exporter.config.model import (
    AUTO_SOURCE,
    DETAILS_SOURCE,
    Config,
    TenantConfig,
    format_duration,
)
from exporter.config.permissions import permissions_needed
from exporter.config.problems import ConfigError
from exporter.demo import run_demo
from exporter.health import check_health
from exporter.logs import SecretRedactor, configure_logging
from exporter.service import EXIT_OK, run_once, serve_forever
from exporter.settings import EXIT_USAGE, HEALTH_CHECK_FLAG, Settings, parse_settings
from exporter.web.config import WebConfig, describe_web_config, load_web_config

log = logging.getLogger("exporter")
PR_SET_DUMPABLE = 4  # prctl(2)


def print_config_errors(problems: list[str]) -> None:
    """One line per problem on stderr."""
    for line in problems:
        print(line, file=sys.stderr)


def describe_config(config: Config) -> list[str]:
    """A short, secret-free summary for ``--check-config``."""
    lines = [
        f"config ok: {len(config.tenants)} tenant(s), concurrency {config.concurrency}, "
        f"rate limits {config.per_app_per_tenant} per app per tenant, {config.per_app} per app"
    ]
    for tenant in config.tenants:
        lines.append(
            f"  {tenant.name}: tenant_id={tenant.tenant_id} client_id={tenant.client_id} "
            f"credential={tenant.credential.kind} cloud={tenant.cloud} source={tenant.source} "
            f"interval={format_duration(tenant.interval)}{_describe_segments(tenant)}"
            + (" policy" if tenant.policy else "")
            + (" enforcement" if tenant.enforcement else "")
            + (" (shared app from defaults)" if tenant.shared_app else "")
        )
        lines.append(f"    permissions: {', '.join(permissions_needed(tenant))}")
        lines.append(f"    sms/voice retirement readiness: {_describe_readiness(tenant)}")
    discovery = config.discovery
    if discovery is not None:
        lines.append(
            f"discovery: {discovery.source} in {discovery.partner.tenant_id} (application "
            f"permission {discovery.permission}, with the defaults' app), every "
            f"{format_duration(discovery.interval)}, {len(discovery.exclude)} excluded; each "
            "customer found is polled with the defaults; read when serving or with --once "
            "(nothing is read now)"
        )
    shared = [tenant.name for tenant in config.tenants if tenant.shared_app]
    if shared:
        lines.append(f"shared app (defaults) used by {len(shared)} tenant(s): {', '.join(shared)}")
    return lines


def _describe_readiness(tenant: TenantConfig) -> str:
    reason = tenant.readiness_off()
    if reason is None:
        return "on"
    if tenant.source == AUTO_SOURCE and tenant.readiness_off(DETAILS_SOURCE) is None:
        return "on once source auto settles on userRegistrationDetails"
    return f"off: {reason}"


def _describe_segments(tenant: TenantConfig) -> str:
    segments = tenant.segments
    parts = []
    if segments.privileged_roles:
        eligible = "+eligible" if segments.include_eligible else ""
        parts.append(f"privileged_roles={len(segments.privileged_roles)}{eligible}")
    if segments.groups:
        parts.append(f"groups={','.join(name for name, _ in segments.groups)}")
    return f" segments: {' '.join(parts)}" if parts else ""


def check_config(settings: Settings, full_config: Config, config: Config, web: WebConfig) -> int:
    """``--check-config``: warnings on stderr, the summary on stdout, exit 0."""
    for warning in config.warnings + web.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print("\n".join(describe_config(config)))
    shard = settings.shard
    if shard.count > 1:
        print(
            f"shard {shard.index} of {shard.count}: {len(config.tenants)} of "
            f"{len(full_config.tenants)} tenants, pacing to {config.per_app} of the app's "
            f"{full_config.per_app}"
        )
    if settings.web_config_file:
        print(f"web config ok: {describe_web_config(web)}")
    return EXIT_OK


def run_with_config(settings: Settings, redactor: SecretRedactor) -> int:
    """Load the config (and web config), then check it, poll once, or serve."""
    try:
        full_config = load_config(settings.config_file)
        web = load_web_config(settings.web_config_file) if settings.web_config_file else WebConfig()
    except ConfigError as err:
        print_config_errors(err.problems)
        return EXIT_USAGE
    config = settings.shard.select(full_config)
    if settings.check_config:
        return check_config(settings, full_config, config, web)
    redactor.set_secrets(config.secrets())
    for warning in config.warnings + web.warnings:
        log.warning(warning)
    if settings.once:
        return asyncio.run(run_once(config, settings.output, redactor))
    return asyncio.run(serve_forever(settings, config, web, redactor))


def keep_secrets_out_of_core_dumps() -> None:
    """No core file, and no other process of the same user reading this one's memory (the
    config's secrets and the tokens live there)."""
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``entra-registration-exporter``."""
    keep_secrets_out_of_core_dumps()
    arguments = sys.argv[1:] if argv is None else argv
    if HEALTH_CHECK_FLAG in arguments:  # before parsing: the flags may be process 1's
        return check_health(arguments)
    settings = parse_settings(argv)
    redactor = configure_logging(settings.log_level, settings.log_format)
    if settings.demo:
        return run_demo(settings, lambda demo: run_with_config(demo, redactor))
    return run_with_config(settings, redactor)
