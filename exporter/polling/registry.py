"""Which collectors a tenant's poll runs: the registry (each collector's module imports
:mod:`exporter.polling.collectors` for its run and value types, never this one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exporter.config.model import TenantConfig
from exporter.polling.collectors import Collector
from exporter.polling.enforcement_collector import EnforcementCollector
from exporter.polling.policy_collector import PolicyCollector
from exporter.polling.report_collector import ReportCollector


@dataclass(frozen=True, slots=True)
class CollectorKind:
    """A collector class and which tenants run it."""

    build: Callable[[], Collector]
    wanted: Callable[[TenantConfig], bool]


# In the order a poll lists them: the report, then the rest.
COLLECTORS = (
    CollectorKind(ReportCollector, lambda _tenant: True),
    CollectorKind(PolicyCollector, lambda tenant: tenant.policy),
    CollectorKind(EnforcementCollector, lambda tenant: tenant.enforcement),
)


def collectors_for(tenant: TenantConfig) -> tuple[Collector, ...]:
    """The collectors a poll of ``tenant`` runs, in order."""
    return tuple(kind.build() for kind in COLLECTORS if kind.wanted(tenant))
