"""The immutable configuration model that the rest of the exporter imports.

Loading and validating a file into these classes is :mod:`exporter.config.loader`'s job; nothing
here reads a file. Secret values are wrapped in :class:`Secret`, whose ``repr`` never shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

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
CLOUDS: Mapping[str, CloudEndpoints] = MappingProxyType(
    {
        "global": CloudEndpoints(
            "https://login.microsoftonline.com", "https://graph.microsoft.com"
        ),
        "usgov": CloudEndpoints("https://login.microsoftonline.us", "https://graph.microsoft.us"),
        "usgovdod": CloudEndpoints(
            "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"
        ),
        "china": CloudEndpoints(
            "https://login.partner.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn"
        ),
    }
)
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


# usersRegisteredByFeature's privilegedAdmin roles, by role template ID (Microsoft's built-in
# roles page): Global, Security, Conditional Access, Exchange, SharePoint, Helpdesk, Billing,
# User and Authentication Administrator.
DEFAULT_PRIVILEGED_ROLES = (
    "62e90394-69f5-4237-9190-012177145e10",
    "194ae4cb-b126-40b2-bd5b-6091b380977d",
    "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9",
    "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "f28a1f50-f6e7-4571-818b-6a12f2af6b6c",
    "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "b0f54661-2d74-4c50-afa3-1ec803f12efe",
    "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "c4e39bd9-1100-46d3-8c65-fb160da0071f",
)
# Clouds for which Microsoft does not document getCredentialUserRegistrationCount.
DETAILS_ONLY_CLOUDS = ("usgov", "usgovdod", "china")


@dataclass(frozen=True, slots=True)
class SegmentsConfig:
    """What the successor report is broken down by, besides user type and ``isAdmin``."""

    # Role template IDs whose holders count as privileged_admin (empty: no role look-ups).
    privileged_roles: tuple[str, ...] = ()
    # Also PIM-eligible assignments of those roles (Entra ID P2).
    include_eligible: bool = False
    # (label value, group object ID): coverage per group, transitive members.
    groups: tuple[tuple[str, str], ...] = ()


# Microsoft's SMS and voice retirement dates hold for the global cloud; ``custom`` stands in
# front of it (proxies, the simulator).
READINESS_CLOUDS = ("global", "custom")


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
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    # Its client_id or credential comes from defaults (one multi-tenant app).
    shared_app: bool = False
    # Read the authentication methods policy every poll (the ``policy`` collector).
    policy: bool = False
    # Read security defaults and Conditional Access every poll (the ``enforcement`` collector).
    enforcement: bool = False
    # Values of the config's ``tenant_labels`` on entra_tenant_info, in their order.
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def authority(self) -> str:
        return f"{self.endpoints.authority_host}/{self.tenant_id}"

    def readiness_off(self, source: str | None = None) -> str | None:
        """Why SMS/voice retirement readiness is off for this tenant reading ``source`` (its
        configured one by default); None when it is on."""
        source = source or self.source
        if source == DEFAULT_SOURCE:
            return "source is credentialUserRegistrationCount (needs userRegistrationDetails)"
        if self.cloud not in READINESS_CLOUDS:
            return f"cloud {self.cloud} has no retirement date yet"
        if not self.segments.privileged_roles:
            return "segments.privileged_roles is not set (Global Administrators need it)"
        return None

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
    # This replica's part of each app's budgets when replicas share the app (1 / shards).
    app_share: float = 1.0
    # Extra labels of entra_tenant_info, declared once (values per tenant).
    tenant_labels: tuple[str, ...] = ()
    # MSPs: customer tenants found from the partner relationship (exporter.config.discovery).
    discovery: Any = None

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
