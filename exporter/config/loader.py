"""The config file (YAML) → a validated, immutable :class:`~exporter.config.model.Config`.

``${VAR}`` is read from the environment, ``*_file`` keys are read from disk, and every problem
is collected with the path of the key it concerns (``tenants[2].client_id: ...``) and reported
together in one :class:`~exporter.config.problems.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exporter.config.checks import rate_limit_warnings, world_readable_warnings
from exporter.config.credentials import (
    CREDENTIAL_KEYS,
    SHARED_APP_KEYS,
    SharedApp,
    has_own_credential,
    parse_credential,
    parse_identity,
    parse_shared_app,
    with_shared_app,
)
from exporter.config.discovery import PARTNER_NAME, DiscoveryConfig, parse_discovery_node
from exporter.config.environment import expand_env
from exporter.config.labels import parse_labels, parse_tenant_labels
from exporter.config.model import (
    CLOUD_NAMES,
    CLOUDS,
    DEFAULT_SOURCE,
    DETAILS_ONLY_CLOUDS,
    DETAILS_SOURCE,
    SOURCES,
    CloudEndpoints,
    Config,
    TenantConfig,
    format_duration,
)
from exporter.config.network import (
    parse_duration,
    parse_endpoints,
    parse_rate_limits_key,
    parse_tls_ca_file,
)
from exporter.config.problems import Problems, read_yaml_file
from exporter.config.segments import check_default_segments, parse_segments

# The collectors a tenant may turn on beside the report: true or false each.
SWITCHES = ("policy", "enforcement")
DEFAULTS_KEYS = ("interval", "timeout", "jitter", "cloud", "source", "stale_after", *SWITCHES)
_TOP_KEYS = frozenset(
    {
        "defaults",
        "concurrency",
        "rate_limits",
        "endpoints",
        "tls_ca_file",
        "tenants",
        "tenant_labels",
        "discovery",
    }
)
_TENANT_KEYS = frozenset(
    {"name", "tenant_id", "client_id", "segments", "labels", *CREDENTIAL_KEYS, *DEFAULTS_KEYS}
)
_BUILTIN_DEFAULTS: Mapping[str, str | bool | None] = MappingProxyType(
    {
        "interval": "10m",
        "timeout": "30s",
        "jitter": "30s",
        "cloud": "global",
        "source": None,  # depends on the cloud: see _source_for
        "stale_after": "3x",
        "policy": False,
        "enforcement": False,
    }
)
MIN_INTERVAL = 1.0
MAX_INTERVAL = 24 * 3600.0
MIN_TIMEOUT = 0.1
MAX_TIMEOUT = 300.0
DEFAULT_CONCURRENCY = 32
MAX_CONCURRENCY = 1000


# --------------------------------------------------------------------------- scalars


def _parse_int(value: Any, path: str, low: int, high: int, problems: Problems) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(path, f"{value!r} is not an integer")
        return None
    if not low <= value <= high:
        problems.add(path, f"{value} is out of range ({low} to {high})")
        return None
    return value


# --------------------------------------------------------------------------- per-tenant settings


@dataclass(frozen=True, slots=True)
class _RawSettings:
    """A tenant's polling settings as written (defaults merged in), with each one's key path."""

    values: Mapping[str, Any]
    paths: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _Settings:
    """A tenant's polling settings, validated."""

    interval: float
    timeout: float
    jitter: float
    cloud: str
    source: str
    stale_after: float
    policy: bool
    enforcement: bool


def _parse_durations(raw: _RawSettings, problems: Problems) -> dict[str, float] | None:
    """interval, timeout and jitter, each in its range, jitter no longer than interval."""
    parsed: dict[str, float] = {}
    ok = True
    for key, low, high in (
        ("interval", MIN_INTERVAL, MAX_INTERVAL),
        ("timeout", MIN_TIMEOUT, MAX_TIMEOUT),
        ("jitter", 0.0, MAX_INTERVAL),
    ):
        try:
            seconds = parse_duration(raw.values[key])
        except ValueError as err:
            problems.add(raw.paths[key], str(err))
            ok = False
            continue
        if not low <= seconds <= high:
            problems.add(
                raw.paths[key],
                f"{raw.values[key]} is out of range "
                f"({format_duration(low)} to {format_duration(high)})",
            )
            ok = False
        parsed[key] = seconds
    if ok and parsed["jitter"] > parsed["interval"]:
        # Blame the key set closest to the tenant: a tenant's interval under the defaults'
        # jitter is the tenant's interval, not the defaults'.
        jitter_path, interval_path = raw.paths["jitter"], raw.paths["interval"]
        if interval_path.startswith("tenants[") and not jitter_path.startswith("tenants["):
            problems.add(
                interval_path,
                f"{raw.values['interval']} is shorter than jitter {raw.values['jitter']} "
                f"(from {jitter_path}): lengthen it or set this tenant's jitter",
            )
        else:
            problems.add(jitter_path, "must not be longer than interval")
        ok = False
    return parsed if ok else None


def _parse_stale_after(
    raw: _RawSettings, interval: float | None, problems: Problems
) -> float | None:
    """``Nx`` (N intervals, N >= 1) or a duration no shorter than the interval."""
    text, path = raw.values["stale_after"], raw.paths["stale_after"]
    if isinstance(text, str) and text.strip().endswith("x"):
        try:
            factor = float(text.strip()[:-1])
        except ValueError:
            factor = math.nan
        if not factor >= 1:
            problems.add(path, f"{text!r}: use Nx with N >= 1 or a duration")
            return None
        return None if interval is None else factor * interval
    try:
        seconds = parse_duration(text)
    except ValueError as err:
        problems.add(path, str(err))
        return None
    if interval is not None and seconds < interval:
        problems.add(path, "must not be shorter than interval")
        return None
    return seconds


def _parse_settings(raw: _RawSettings, problems: Problems) -> _Settings | None:
    """Validate interval, timeout, jitter, cloud, source and stale_after of one tenant."""
    durations = _parse_durations(raw, problems)
    cloud, source = raw.values["cloud"], raw.values["source"]
    ok = durations is not None
    if cloud not in CLOUD_NAMES:
        problems.add(raw.paths["cloud"], f"{cloud!r} is not one of {', '.join(CLOUD_NAMES)}")
        ok = False
    if source is not None and source not in SOURCES:
        problems.add(raw.paths["source"], f"{source!r} is not one of {', '.join(SOURCES)}")
        ok = False
    for switch in SWITCHES:
        if not isinstance(raw.values[switch], bool):
            problems.add(raw.paths[switch], "must be true or false")
            ok = False
    interval = durations.get("interval") if durations else None
    stale_after = _parse_stale_after(raw, interval, problems)
    if not ok or durations is None or stale_after is None:
        return None
    settings = _Settings(
        interval=durations["interval"],
        timeout=durations["timeout"],
        jitter=durations["jitter"],
        cloud=str(cloud),
        source=_source_for(str(cloud), source, raw.paths["source"], problems),
        stale_after=stale_after,
        policy=bool(raw.values["policy"]),
        enforcement=bool(raw.values["enforcement"]),
    )
    if settings.enforcement and settings.source == DEFAULT_SOURCE:
        problems.add(
            raw.paths["enforcement"],
            "needs source userRegistrationDetails or auto: who must use MFA is decided user by "
            "user, and the seed's report (credentialUserRegistrationCount) has only totals",
        )
        return None
    return settings


def _source_for(cloud: str, source: str | None, path: str, problems: Problems) -> str:
    """The report source: as configured, else the cloud's default.

    Microsoft documents getCredentialUserRegistrationCount for the global cloud only, so the
    national clouds read userRegistrationDetails unless told otherwise (then with a warning).
    """
    if cloud not in DETAILS_ONLY_CLOUDS:
        return source or DEFAULT_SOURCE
    if source is None:
        return DETAILS_SOURCE
    if source == DEFAULT_SOURCE:
        problems.warnings.append(
            f"{path}: Microsoft documents getCredentialUserRegistrationCount for the global "
            f"cloud only, not {cloud}; userRegistrationDetails is this cloud's default source"
        )
    return source


# --------------------------------------------------------------------------- top-level keys


@dataclass(frozen=True, slots=True)
class _Context:
    """What every tenant of one file is parsed against."""

    defaults: _RawSettings
    default_segments: dict[str, Any]
    shared_app: SharedApp
    custom_endpoints: CloudEndpoints | None
    # An invalid 'endpoints' was already reported; a custom-cloud tenant does not repeat it.
    endpoints_given: bool
    environ: Mapping[str, str]
    tenant_labels: tuple[str, ...] = ()


def _parse_defaults(
    document: dict[str, Any], environ: Mapping[str, str], problems: Problems
) -> tuple[_RawSettings, dict[str, Any], SharedApp]:
    """The polling settings under ``defaults`` (built-ins filled in), its ``segments``, and
    the app (``client_id`` and credential) its tenants share."""
    values: dict[str, Any] = dict(_BUILTIN_DEFAULTS)
    node = document.get("defaults") or {}
    segments: dict[str, Any] = {}
    shared = SharedApp({})
    if not isinstance(node, dict):
        problems.add("defaults", "must be a mapping")
    else:
        problems.check_keys(node, {*DEFAULTS_KEYS, "segments", *SHARED_APP_KEYS}, "defaults")
        values.update({k: v for k, v in node.items() if k in DEFAULTS_KEYS})
        segments = check_default_segments(node.get("segments"), problems)
        shared = parse_shared_app(node, environ, problems)
    paths = {key: f"defaults.{key}" for key in DEFAULTS_KEYS}
    return _RawSettings(values, paths), segments, shared


def _parse_tenants(
    node: Any, context: _Context, problems: Problems, discovery: bool = False
) -> list[TenantConfig]:
    """The listed tenants; with ``discovery`` there may be none."""
    if node is None and not discovery:
        problems.add("tenants", "is required (a list of tenants to poll)")
        return []
    if not isinstance(node, list | None):
        problems.add("tenants", "must be a list")
        return []
    if not node:
        if not discovery:
            problems.add("tenants", "must hold at least one tenant")
        return []
    tenants: list[TenantConfig] = []
    seen: dict[str, int] = {}
    for index, tenant_node in enumerate(node):
        path = f"tenants[{index}]"
        tenant = _parse_tenant(tenant_node, path, context, problems)
        if tenant is None:
            continue
        if tenant.name in seen:
            problems.add(
                f"{path}.name",
                f"duplicate tenant name {tenant.name!r} (also tenants[{seen[tenant.name]}])",
            )
            continue
        seen[tenant.name] = index
        tenants.append(tenant)
    return tenants


def parse_config(document: Any, environ: Mapping[str, str] | None = None) -> Config:
    """Validate an already-parsed YAML document; raise ConfigError with every problem."""
    problems = Problems()
    if not isinstance(document, dict):
        problems.add("config", "the file must hold a mapping with a 'tenants' list")
        problems.raise_if_any()
    environ = os.environ if environ is None else environ
    document = expand_env(document, "", environ, problems)
    problems.check_keys(document, _TOP_KEYS, "")
    defaults, default_segments, shared = _parse_defaults(document, environ, problems)
    concurrency = DEFAULT_CONCURRENCY
    if "concurrency" in document:
        concurrency = (
            _parse_int(document["concurrency"], "concurrency", 1, MAX_CONCURRENCY, problems)
            or DEFAULT_CONCURRENCY
        )
    limits = parse_rate_limits_key(document, problems)
    endpoints_given = document.get("endpoints") is not None
    context = _Context(
        defaults=defaults,
        default_segments=default_segments,
        shared_app=shared,
        custom_endpoints=(
            parse_endpoints(document["endpoints"], "endpoints", problems)
            if endpoints_given
            else None
        ),
        endpoints_given=endpoints_given,
        environ=environ,
        tenant_labels=parse_tenant_labels(document.get("tenant_labels"), problems),
    )
    tls_ca_file = parse_tls_ca_file(document, problems)
    discovery = _parse_discovery(document.get("discovery"), context, problems)
    tenants = _parse_tenants(document.get("tenants"), context, problems, "discovery" in document)
    problems.raise_if_any()
    return Config(
        tenants=tuple(tenants),
        concurrency=concurrency,
        per_app_per_tenant=limits["per_app_per_tenant"],
        per_app=limits["per_app"],
        tls_ca_file=tls_ca_file,
        warnings=tuple(problems.warnings),
        tenant_labels=context.tenant_labels,
        discovery=discovery,
    )


def _parse_discovery(node: Any, context: _Context, problems: Problems) -> DiscoveryConfig | None:
    """``discovery``: its keys, and the partner's tenant built from the defaults' app."""
    if node is None:
        return None
    parsed = parse_discovery_node(node, context.tenant_labels, problems)
    shared = context.shared_app
    if not (shared.has_credential() and "client_id" in shared.node):
        problems.add(
            "discovery",
            "needs client_id and a credential under defaults: the one multi-tenant app that "
            "reads the listing in the partner's tenant and every customer",
        )
        return None
    if parsed is None:
        return None
    source, tenant_id, interval, exclude, labels = parsed
    partner = _parse_tenant(
        {"name": PARTNER_NAME, "tenant_id": tenant_id}, "discovery", context, problems
    )
    if partner is None:
        return None
    return DiscoveryConfig(source, partner, interval, exclude, labels)


# --------------------------------------------------------------------------- one tenant


def _tenant_settings(
    node: dict[str, Any], path: str, context: _Context, problems: Problems
) -> tuple[_Settings | None, CloudEndpoints | None]:
    """The tenant's settings (its overrides over the defaults) and its cloud's endpoints."""
    values, paths = dict(context.defaults.values), dict(context.defaults.paths)
    for key in DEFAULTS_KEYS:
        if key in node:
            values[key] = node[key]
            paths[key] = f"{path}.{key}"
    settings = _parse_settings(_RawSettings(values, paths), problems)
    if settings is None:
        return None, None
    if settings.cloud != "custom":
        return settings, CLOUDS[settings.cloud]
    if context.custom_endpoints is None and not context.endpoints_given:
        problems.add(paths["cloud"], "cloud: custom needs a top-level 'endpoints' mapping")
    return settings, context.custom_endpoints


def _parse_tenant(
    node: Any, path: str, context: _Context, problems: Problems
) -> TenantConfig | None:
    if not isinstance(node, dict):
        problems.add(path, "must be a mapping")
        return None
    before = len(problems.lines)
    problems.check_keys(node, _TENANT_KEYS, path)
    merged, shared_app = with_shared_app(node, context.shared_app)
    tenant_id, client_id, name = parse_identity(merged, path, problems)
    if has_own_credential(node) or not context.shared_app.has_credential():
        credential = parse_credential(node, path, context.environ, problems)
    else:
        credential = context.shared_app.credential  # problems already said at defaults
    settings, endpoints = _tenant_settings(node, path, context, problems)
    segments = parse_segments(
        context.default_segments,
        node.get("segments"),
        f"{path}.segments",
        settings.source if settings else None,
        problems,
    )
    labels = parse_labels(node.get("labels"), context.tenant_labels, f"{path}.labels", problems)
    if (
        len(problems.lines) > before
        or tenant_id is None
        or client_id is None
        or name is None
        or credential is None
        or settings is None
        or endpoints is None
        or segments is None
    ):
        return None
    return TenantConfig(
        name=name,
        tenant_id=tenant_id,
        client_id=client_id,
        credential=credential,
        endpoints=endpoints,
        segments=segments,
        shared_app=shared_app,
        labels=labels,
        **dataclasses.asdict(settings),
    )


# --------------------------------------------------------------------------- the file


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the config file; raise ConfigError on any problem."""
    file = Path(path)
    config = parse_config(read_yaml_file(file, "config file"), environ)
    warnings = config.warnings + world_readable_warnings(file, config)
    warnings += rate_limit_warnings(config)
    return dataclasses.replace(config, warnings=warnings)
