"""YAML configuration → a validated, immutable :class:`Config`.

Every problem is collected with the path of the key it concerns (``tenants[2].client_id: ...``)
and reported together, so a user fixes a broken file in one pass. Secret values are wrapped in
:class:`Secret`, whose ``repr`` never shows them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

DEFAULT_SOURCE = "credentialUserRegistrationCount"
DETAILS_SOURCE = "userRegistrationDetails"
AUTO_SOURCE = "auto"
SOURCES = (DEFAULT_SOURCE, DETAILS_SOURCE, AUTO_SOURCE)


@dataclass(frozen=True, slots=True)
class CloudEndpoints:
    """Identity-provider and Graph hosts of one Microsoft cloud."""

    authority_host: str
    graph_host: str


# Microsoft's national clouds. China: MSAL marks login.chinacloudapi.cn deprecated.
CLOUDS: Mapping[str, CloudEndpoints] = {
    "global": CloudEndpoints("https://login.microsoftonline.com", "https://graph.microsoft.com"),
    "usgov": CloudEndpoints("https://login.microsoftonline.us", "https://graph.microsoft.us"),
    "usgovdod": CloudEndpoints(
        "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"
    ),
    "china": CloudEndpoints(
        "https://login.partner.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn"
    ),
}
CLOUD_NAMES = (*CLOUDS, "custom")


class Secret:
    """A secret string that never shows itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call only where it is handed to MSAL."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ClientSecretCredential:
    """A client secret, given inline (``client_secret``) or in a file (``client_secret_file``)."""

    secret: Secret
    secret_file: str | None = None

    @property
    def kind(self) -> str:
        return "client_secret_file" if self.secret_file else "client_secret"


@dataclass(frozen=True, slots=True)
class CertificateCredential:
    """An app registration certificate: PEM private key plus the PEM certificate."""

    private_key_pem: Secret
    certificate_pem: str
    private_key_file: str
    certificate_file: str
    passphrase: Secret | None = None
    # Send the certificate (x5c) with each assertion, for subject name + issuer auth.
    send_x5c: bool = True

    @property
    def kind(self) -> str:
        return "certificate"


@dataclass(frozen=True, slots=True)
class WorkloadIdentityCredential:
    """A federated token re-read from ``token_file`` for every token request."""

    token_file: str

    @property
    def kind(self) -> str:
        return "workload_identity"


@dataclass(frozen=True, slots=True)
class ManagedIdentityCredential:
    """An Azure managed identity: system-assigned (``client_id`` None) or user-assigned."""

    client_id: str | None

    @property
    def kind(self) -> str:
        return "managed_identity"


Credential = (
    ClientSecretCredential
    | CertificateCredential
    | WorkloadIdentityCredential
    | ManagedIdentityCredential
)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``requests`` requests per ``per_seconds`` seconds."""

    requests: int
    per_seconds: float

    def __str__(self) -> str:
        return f"{self.requests}/{format_duration(self.per_seconds)}"


# Graph's documented limits for identity and access reports.
DEFAULT_PER_APP_PER_TENANT = RateLimit(5, 10.0)
DEFAULT_PER_APP = RateLimit(122, 10.0)


@dataclass(frozen=True, slots=True)
class TenantConfig:
    """One tenant to poll, with the defaults already applied."""

    name: str
    tenant_id: str
    client_id: str
    credential: Credential
    interval: float
    timeout: float
    jitter: float
    cloud: str
    source: str
    stale_after: float
    endpoints: CloudEndpoints

    @property
    def authority(self) -> str:
        return f"{self.endpoints.authority_host}/{self.tenant_id}"

    @property
    def graph_scope(self) -> str:
        return f"{self.endpoints.graph_host}/.default"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    tenants: tuple[TenantConfig, ...]
    concurrency: int = 32
    per_app_per_tenant: RateLimit = DEFAULT_PER_APP_PER_TENANT
    per_app: RateLimit = DEFAULT_PER_APP
    tls_ca_file: str | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value in this config, for log redaction."""
        values: list[str] = []
        for tenant in self.tenants:
            cred = tenant.credential
            if isinstance(cred, ClientSecretCredential):
                values.append(cred.secret.reveal())
            elif isinstance(cred, CertificateCredential):
                values.append(cred.private_key_pem.reveal())
                if cred.passphrase:
                    values.append(cred.passphrase.reveal())
        return tuple(v for v in values if v)


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` holds one ``path: message`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} configuration problem(s)")
        self.problems = problems


# --------------------------------------------------------------------------- scalar parsers

_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")
_VAR_RE = re.compile(r"\$\$|\$\{([^}]*)\}")
_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_duration(text: object) -> float:
    """Parse ``30s``, ``5m``, ``1h30m``, ``250ms`` into seconds; raise ValueError otherwise."""
    match = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration (use e.g. 30s, 5m, 1h30m, 250ms)")
    hours, minutes, seconds, millis = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def format_duration(seconds: float) -> str:
    """Format seconds the way :func:`parse_duration` reads them (``90`` → ``1m30s``)."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"


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


def is_guid(text: str) -> bool:
    """True for a GUID such as ``72f988bf-86f1-41af-91ab-2d7cd011db47``."""
    return bool(_GUID_RE.match(text))


def is_domain(text: str) -> bool:
    """True for a DNS domain such as ``contoso.onmicrosoft.com``."""
    return bool(_DOMAIN_RE.match(text))


# --------------------------------------------------------------------------- the loader


_DEFAULTS_KEYS = ("interval", "timeout", "jitter", "cloud", "source", "stale_after")
_TOP_KEYS = {
    "defaults",
    "concurrency",
    "rate_limits",
    "endpoints",
    "tls_ca_file",
    "tenants",
}
_CREDENTIAL_KEYS = (
    "client_secret",
    "client_secret_file",
    "certificate",
    "workload_identity",
    "managed_identity",
)
SYSTEM_MANAGED_IDENTITY = "system"
_TENANT_KEYS = {"name", "tenant_id", "client_id", *_CREDENTIAL_KEYS, *_DEFAULTS_KEYS}
_BUILTIN_DEFAULTS: dict[str, str] = {
    "interval": "10m",
    "timeout": "30s",
    "jitter": "30s",
    "cloud": "global",
    "source": DEFAULT_SOURCE,
    "stale_after": "3x",
}
MIN_INTERVAL = 1.0
MAX_INTERVAL = 24 * 3600.0
MIN_TIMEOUT = 0.1
MAX_TIMEOUT = 300.0
MAX_CONCURRENCY = 1000


class _Problems:
    """Collects ``path: message`` lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}" if path else message)


def _expand_env(node: Any, path: str, environ: Mapping[str, str], problems: _Problems) -> Any:
    """Replace ``${VAR}`` in every string of the tree; ``$$`` is a literal ``$``."""
    if isinstance(node, dict):
        return {k: _expand_env(v, _join(path, str(k)), environ, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, f"{path}[{i}]", environ, problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if not _VAR_NAME_RE.match(name):
            problems.add(path, f"${{{name}}} is not a valid environment variable reference")
            return match.group(0)  # left as written: one problem is reported, not two
        if name not in environ:
            problems.add(path, f"environment variable {name} is not set")
            return match.group(0)
        return environ[name]

    return _VAR_RE.sub(substitute, node)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_keys(node: dict[str, Any], allowed: set[str], path: str, problems: _Problems) -> None:
    for key in node:
        if key not in allowed:
            hint = ", ".join(sorted(allowed))
            problems.add(_join(path, str(key)), f"unknown key (expected one of: {hint})")


def _read_text_file(path_text: str, key_path: str, problems: _Problems) -> str | None:
    try:
        return Path(path_text).read_text(encoding="utf-8")
    except OSError as err:
        problems.add(key_path, f"cannot read {path_text}: {err.strerror or err}")
    except UnicodeDecodeError:
        problems.add(key_path, f"{path_text} is not UTF-8 text")
    return None


def _string(value: Any, path: str, problems: _Problems, *, required: bool = True) -> str | None:
    if value is None:
        if required:
            problems.add(path, "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        problems.add(path, "must be a non-empty string")
        return None
    return value.strip()


@dataclass(slots=True)
class _Settings:
    """Raw per-tenant settings (defaults merged with overrides) before validation."""

    values: dict[str, Any]
    paths: dict[str, str]


def _parse_settings(
    settings: _Settings, problems: _Problems
) -> tuple[float, float, float, str, str, float] | None:
    """Validate interval, timeout, jitter, cloud, source and stale_after of one tenant."""
    ok = True
    parsed: dict[str, float] = {}
    for key, low, high in (
        ("interval", MIN_INTERVAL, MAX_INTERVAL),
        ("timeout", MIN_TIMEOUT, MAX_TIMEOUT),
        ("jitter", 0.0, MAX_INTERVAL),
    ):
        raw = settings.values[key]
        try:
            seconds = parse_duration(raw)
        except ValueError as err:
            problems.add(settings.paths[key], str(err))
            ok = False
            continue
        if not low <= seconds <= high:
            problems.add(
                settings.paths[key],
                f"{raw} is out of range ({format_duration(low)} to {format_duration(high)})",
            )
            ok = False
        parsed[key] = seconds
    if ok and parsed["jitter"] > parsed["interval"]:
        problems.add(settings.paths["jitter"], "must not be longer than interval")
        ok = False

    cloud = settings.values["cloud"]
    if cloud not in CLOUD_NAMES:
        problems.add(settings.paths["cloud"], f"{cloud!r} is not one of {', '.join(CLOUD_NAMES)}")
        ok = False
    source = settings.values["source"]
    if source not in SOURCES:
        problems.add(settings.paths["source"], f"{source!r} is not one of {', '.join(SOURCES)}")
        ok = False

    stale_raw = settings.values["stale_after"]
    stale_after = 0.0
    if isinstance(stale_raw, str) and stale_raw.strip().endswith("x"):
        try:
            factor = float(stale_raw.strip()[:-1])
        except ValueError:
            factor = math.nan
        if not factor >= 1:
            problems.add(
                settings.paths["stale_after"], f"{stale_raw!r}: use Nx with N >= 1 or a duration"
            )
            ok = False
        elif "interval" in parsed:
            stale_after = factor * parsed["interval"]
    else:
        try:
            stale_after = parse_duration(stale_raw)
        except ValueError as err:
            problems.add(settings.paths["stale_after"], str(err))
            ok = False
        else:
            if "interval" in parsed and stale_after < parsed["interval"]:
                problems.add(settings.paths["stale_after"], "must not be shorter than interval")
                ok = False
    if not ok:
        return None
    return (
        parsed["interval"],
        parsed["timeout"],
        parsed["jitter"],
        str(cloud),
        str(source),
        stale_after,
    )


def _parse_credential(
    node: dict[str, Any], path: str, environ: Mapping[str, str], problems: _Problems
) -> Credential | None:
    present = [key for key in _CREDENTIAL_KEYS if key in node and node[key] not in (None, False)]
    if not present:
        problems.add(
            path,
            "no credential: set exactly one of client_secret, client_secret_file, "
            "certificate, workload_identity",
        )
        return None
    if len(present) > 1:
        problems.add(path, f"more than one credential ({', '.join(present)}): set exactly one")
        return None
    key = present[0]
    key_path = _join(path, key)
    value = node[key]
    if key == "client_secret":
        if not isinstance(value, str) or not value:
            problems.add(
                key_path, "must be a non-empty string (quote a secret that looks like a number)"
            )
            return None
        return ClientSecretCredential(Secret(value))
    if key == "client_secret_file":
        file_name = _string(value, key_path, problems)
        if file_name is None:
            return None
        text = _read_text_file(file_name, key_path, problems)
        if text is None:
            return None
        secret = text.strip()
        if not secret:
            problems.add(key_path, f"{file_name} is empty")
            return None
        return ClientSecretCredential(Secret(secret), secret_file=file_name)
    if key == "certificate":
        return _parse_certificate(value, key_path, problems)
    if key == "managed_identity":
        return _parse_managed_identity(value, key_path, problems)
    # workload_identity
    if value is not True:
        problems.add(key_path, "must be true (or absent)")
        return None
    token_file = environ.get("AZURE_FEDERATED_TOKEN_FILE", "")
    if not token_file:
        problems.add(key_path, "environment variable AZURE_FEDERATED_TOKEN_FILE is not set")
        return None
    if not os.access(token_file, os.R_OK):
        problems.add(key_path, f"cannot read AZURE_FEDERATED_TOKEN_FILE {token_file}")
        return None
    return WorkloadIdentityCredential(token_file)


def _parse_managed_identity(
    value: Any, path: str, problems: _Problems
) -> ManagedIdentityCredential | None:
    if value == SYSTEM_MANAGED_IDENTITY:
        return ManagedIdentityCredential(None)
    if isinstance(value, dict):
        _check_keys(value, {"client_id"}, path, problems)
        client_id = _string(value.get("client_id"), _join(path, "client_id"), problems)
        if client_id and not is_guid(client_id):
            problems.add(_join(path, "client_id"), f"{client_id!r} is not a GUID")
            return None
        return ManagedIdentityCredential(client_id) if client_id else None
    problems.add(
        path, "must be 'system' or a mapping with the client_id of a user-assigned identity"
    )
    return None


def _parse_certificate(value: Any, path: str, problems: _Problems) -> CertificateCredential | None:
    if not isinstance(value, dict):
        problems.add(path, "must be a mapping with private_key_file and certificate_file")
        return None
    _check_keys(
        value, {"private_key_file", "certificate_file", "passphrase", "send_x5c"}, path, problems
    )
    send_x5c = value.get("send_x5c", True)
    if not isinstance(send_x5c, bool):
        problems.add(_join(path, "send_x5c"), "must be true or false")
        return None
    key_file = _string(value.get("private_key_file"), _join(path, "private_key_file"), problems)
    cert_file = _string(value.get("certificate_file"), _join(path, "certificate_file"), problems)
    passphrase_raw = value.get("passphrase")
    if passphrase_raw is not None and not isinstance(passphrase_raw, str):
        problems.add(_join(path, "passphrase"), "must be a string")
        return None
    if key_file is None or cert_file is None:
        return None
    key_pem = _read_text_file(key_file, _join(path, "private_key_file"), problems)
    cert_pem = _read_text_file(cert_file, _join(path, "certificate_file"), problems)
    if key_pem is None or cert_pem is None:
        return None
    passphrase = passphrase_raw.encode() if passphrase_raw else None
    try:
        private_key = serialization.load_pem_private_key(key_pem.encode(), password=passphrase)
    except (ValueError, TypeError):
        # The library's message may quote key material; say only what the user must fix.
        problems.add(
            _join(path, "private_key_file"),
            f"{key_file} is not a PEM private key (or the passphrase is wrong)",
        )
        return None
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        problems.add(_join(path, "certificate_file"), f"{cert_file} is not a PEM certificate")
        return None
    cert_key = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    own_key = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if cert_key != own_key:
        problems.add(path, f"{key_file} does not belong to the certificate in {cert_file}")
        return None
    return CertificateCredential(
        private_key_pem=Secret(key_pem),
        certificate_pem=cert_pem,
        private_key_file=key_file,
        certificate_file=cert_file,
        passphrase=Secret(passphrase_raw) if passphrase_raw else None,
        send_x5c=send_x5c,
    )


def _parse_endpoints(value: Any, path: str, problems: _Problems) -> CloudEndpoints | None:
    if not isinstance(value, dict):
        problems.add(path, "must be a mapping with authority_host and graph_host")
        return None
    _check_keys(value, {"authority_host", "graph_host"}, path, problems)
    hosts: list[str] = []
    for key in ("authority_host", "graph_host"):
        host = _string(value.get(key), _join(path, key), problems)
        if host is None:
            return None
        if not re.match(r"^https://[^/\s]+$", host.rstrip("/")):
            problems.add(_join(path, key), f"{host!r} must be an https:// URL without a path")
            return None
        hosts.append(host.rstrip("/"))
    return CloudEndpoints(hosts[0], hosts[1])


def _parse_int(value: Any, path: str, low: int, high: int, problems: _Problems) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(path, f"{value!r} is not an integer")
        return None
    if not low <= value <= high:
        problems.add(path, f"{value} is out of range ({low} to {high})")
        return None
    return value


def parse_config(document: Any, environ: Mapping[str, str] | None = None) -> Config:
    """Validate an already-parsed YAML document; raise :class:`ConfigError` with every problem."""
    environ = os.environ if environ is None else environ
    problems = _Problems()
    if not isinstance(document, dict):
        raise ConfigError(["config: the file must hold a mapping with a 'tenants' list"])
    document = _expand_env(document, "", environ, problems)
    _check_keys(document, _TOP_KEYS, "", problems)

    defaults_node = document.get("defaults") or {}
    defaults = dict(_BUILTIN_DEFAULTS)
    default_paths = {key: f"defaults.{key}" for key in _DEFAULTS_KEYS}
    if not isinstance(defaults_node, dict):
        problems.add("defaults", "must be a mapping")
    else:
        _check_keys(defaults_node, set(_DEFAULTS_KEYS), "defaults", problems)
        defaults.update({k: v for k, v in defaults_node.items() if k in _DEFAULTS_KEYS})

    concurrency = 32
    if "concurrency" in document:
        concurrency = (
            _parse_int(document["concurrency"], "concurrency", 1, MAX_CONCURRENCY, problems) or 32
        )

    limits = {"per_app_per_tenant": DEFAULT_PER_APP_PER_TENANT, "per_app": DEFAULT_PER_APP}
    rate_node = document.get("rate_limits")
    if rate_node is not None:
        if not isinstance(rate_node, dict):
            problems.add("rate_limits", "must be a mapping")
        else:
            _check_keys(rate_node, set(limits), "rate_limits", problems)
            for key in limits:
                if key in rate_node:
                    try:
                        limits[key] = parse_rate_limit(rate_node[key])
                    except ValueError as err:
                        problems.add(f"rate_limits.{key}", str(err))

    custom_endpoints = None
    if document.get("endpoints") is not None:
        custom_endpoints = _parse_endpoints(document["endpoints"], "endpoints", problems)

    tls_ca_file = None
    if document.get("tls_ca_file") is not None:
        tls_ca_file = _string(document["tls_ca_file"], "tls_ca_file", problems)
        if tls_ca_file:
            text = _read_text_file(tls_ca_file, "tls_ca_file", problems)
            if text is not None and "-----BEGIN CERTIFICATE-----" not in text:
                problems.add("tls_ca_file", f"{tls_ca_file} holds no PEM certificate")

    tenants_node = document.get("tenants")
    tenants: list[TenantConfig] = []
    if tenants_node is None:
        problems.add("tenants", "is required (a list of tenants to poll)")
    elif not isinstance(tenants_node, list):
        problems.add("tenants", "must be a list")
    elif not tenants_node:
        problems.add("tenants", "must hold at least one tenant")
    else:
        seen: dict[str, int] = {}
        for index, node in enumerate(tenants_node):
            path = f"tenants[{index}]"
            tenant = _parse_tenant(
                node,
                path,
                defaults,
                default_paths,
                custom_endpoints,
                environ,
                problems,
                # An invalid 'endpoints' was already reported; don't report it missing too.
                endpoints_invalid=document.get("endpoints") is not None,
            )
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

    if problems.lines:
        raise ConfigError(problems.lines)
    return Config(
        tenants=tuple(tenants),
        concurrency=concurrency,
        per_app_per_tenant=limits["per_app_per_tenant"],
        per_app=limits["per_app"],
        tls_ca_file=tls_ca_file,
    )


def _parse_tenant(
    node: Any,
    path: str,
    defaults: dict[str, Any],
    default_paths: dict[str, str],
    custom_endpoints: CloudEndpoints | None,
    environ: Mapping[str, str],
    problems: _Problems,
    *,
    endpoints_invalid: bool = False,
) -> TenantConfig | None:
    if not isinstance(node, dict):
        problems.add(path, "must be a mapping")
        return None
    before = len(problems.lines)
    _check_keys(node, _TENANT_KEYS, path, problems)
    tenant_id = _string(node.get("tenant_id"), f"{path}.tenant_id", problems)
    if tenant_id and not (is_guid(tenant_id) or is_domain(tenant_id)):
        problems.add(f"{path}.tenant_id", f"{tenant_id!r} is neither a GUID nor a domain name")
    managed = node.get("managed_identity") not in (None, False)
    # A managed identity is its own application: client_id is only a rate-limit key then.
    client_id = _string(node.get("client_id"), f"{path}.client_id", problems, required=not managed)
    if managed and client_id is None:
        identity = node.get("managed_identity")
        client_id = (
            str(identity.get("client_id"))
            if isinstance(identity, dict) and identity.get("client_id")
            else f"managed-identity:{node.get('tenant_id')}"
        )
    elif client_id and not is_guid(client_id):
        problems.add(f"{path}.client_id", f"{client_id!r} is not a GUID (the application ID)")
    name: str | None = tenant_id
    if "name" in node:
        name = _string(node["name"], f"{path}.name", problems)
        if name and (len(name) > 128 or any(ord(c) < 32 for c in name)):
            problems.add(f"{path}.name", "must be at most 128 printable characters")
    credential = _parse_credential(node, path, environ, problems)

    values = dict(defaults)
    paths = dict(default_paths)
    for key in _DEFAULTS_KEYS:
        if key in node:
            values[key] = node[key]
            paths[key] = f"{path}.{key}"
    settings = _parse_settings(_Settings(values, paths), problems)
    endpoints = None
    if settings is not None:
        cloud = settings[3]
        if cloud == "custom":
            if custom_endpoints is None and not endpoints_invalid:
                problems.add(paths["cloud"], "cloud: custom needs a top-level 'endpoints' mapping")
            endpoints = custom_endpoints
        else:
            endpoints = CLOUDS[cloud]
    if len(problems.lines) > before or None in (tenant_id, client_id, name, credential, endpoints):
        return None
    assert settings is not None
    assert endpoints is not None
    assert credential is not None
    interval, timeout, jitter, cloud, source, stale_after = settings
    return TenantConfig(
        name=str(name),
        tenant_id=str(tenant_id),
        client_id=str(client_id),
        credential=credential,
        interval=interval,
        timeout=timeout,
        jitter=jitter,
        cloud=cloud,
        source=source,
        stale_after=stale_after,
        endpoints=endpoints,
    )


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping
)


def _yaml_error_line(path: str, err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or "invalid YAML"
    if mark is not None:
        return f"{path}:{mark.line + 1}:{mark.column + 1}: YAML syntax error: {problem}"
    return f"{path}: YAML syntax error: {problem}"


def _world_readable_warnings(path: Path, config: Config) -> tuple[str, ...]:
    files = [path] + [
        Path(t.credential.secret_file)
        for t in config.tenants
        if isinstance(t.credential, ClientSecretCredential) and t.credential.secret_file
    ]
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


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the config file; raise :class:`ConfigError` on any problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([f"{file}: cannot read config file: {err.strerror or err}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{file}: config file is not UTF-8 text"]) from None
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError([_yaml_error_line(str(file), err)]) from None
    config = parse_config(document, environ)
    warnings = _world_readable_warnings(file, config) + rate_limit_warnings(config)
    return dataclasses.replace(config, warnings=warnings)


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
            f"interval={format_duration(tenant.interval)}"
        )
    return lines
