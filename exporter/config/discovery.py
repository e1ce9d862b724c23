"""``discovery:``: an MSP's customer tenants, found from the partner relationship.

The listing is read app-only in the partner's own tenant with the credential under
``defaults`` (one multi-tenant app, admin-consented in the partner and in every customer), and
every customer found is polled with that same app and the ``defaults``. Parsing here builds the
partner's tenant (to read the listing) from the same defaults; :mod:`exporter.polling.discovery`
reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from exporter.config.credentials import is_domain, is_guid
from exporter.config.labels import Labels, parse_labels
from exporter.config.model import TenantConfig
from exporter.config.network import parse_duration
from exporter.config.problems import Problems, join

SOURCES = MappingProxyType(
    {
        "delegatedAdminCustomers": (
            "/v1.0/tenantRelationships/delegatedAdminCustomers",
            "DelegatedAdminRelationship.Read.All",
        ),
        "multiTenantOrganization": (
            "/v1.0/tenantRelationships/multiTenantOrganization/tenants",
            "MultiTenantOrganization.Read.All",
        ),
    }
)
KEYS = frozenset({"source", "tenant_id", "interval", "exclude", "labels"})
DEFAULT_INTERVAL = 3600.0
PARTNER_NAME = "discovery"  # the partner tenant's name in logs (it is never polled as one)


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """What discovery reads, how often, and what each customer it finds becomes."""

    source: str
    partner: TenantConfig  # the partner's tenant, with the defaults' app and settings
    interval: float = DEFAULT_INTERVAL
    exclude: frozenset[str] = frozenset()
    labels: Labels = ()
    # This replica's shard (index, count): it polls only its share of the customers.
    shard: tuple[int, int] = (0, 1)

    @property
    def path(self) -> str:
        return SOURCES[self.source][0]

    @property
    def permission(self) -> str:
        return SOURCES[self.source][1]

    def customer(self, name: str, tenant_id: str) -> TenantConfig:
        """A customer tenant, polled with the partner's app and the defaults."""
        return dataclasses.replace(self.partner, name=name, tenant_id=tenant_id, labels=self.labels)


def parse_discovery_node(
    node: Any, declared: tuple[str, ...], problems: Problems
) -> tuple[str, str, float, frozenset[str], Labels] | None:
    """``discovery``'s own keys: (source, partner tenant id, interval, exclude, labels)."""
    if not isinstance(node, dict):
        problems.add("discovery", "must be a mapping")
        return None
    before = len(problems.lines)
    problems.check_keys(node, KEYS, "discovery")
    source = node.get("source")
    if source not in SOURCES:
        problems.add("discovery.source", f"{source!r} is not one of {', '.join(SOURCES)}")
    tenant_id = problems.string(node.get("tenant_id"), "discovery.tenant_id")
    if tenant_id and not (is_guid(tenant_id) or is_domain(tenant_id)):
        problems.add("discovery.tenant_id", f"{tenant_id!r} is neither a GUID nor a domain name")
    interval = DEFAULT_INTERVAL
    if "interval" in node:
        try:
            interval = parse_duration(node["interval"])
        except ValueError as err:
            problems.add("discovery.interval", str(err))
    exclude = node.get("exclude") or []
    if not isinstance(exclude, list) or not all(isinstance(e, str) and is_guid(e) for e in exclude):
        problems.add("discovery.exclude", "must be a list of tenant IDs (GUIDs)")
        exclude = []
    labels = parse_labels(node.get("labels"), declared, join("discovery", "labels"), problems)
    if len(problems.lines) > before or tenant_id is None:
        return None
    return (
        str(source),
        tenant_id,
        max(60.0, interval),
        frozenset(e.lower() for e in exclude),
        labels,
    )
