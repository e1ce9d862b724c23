"""The ``enforcement`` collector (``enforcement: true``): security defaults and every
Conditional Access policy, each poll.

``GET /v1.0/policies/identitySecurityDefaultsEnforcementPolicy`` (the identity and access
service's budget) and ``GET /v1.0/identity/conditionalAccess/policies``, every page (1 request
per second per tenant, all apps together; Graph's 429 there carries no Retry-After, so the
client backs off on its own). Application permission ``Policy.Read.All``; a 403 fails this
collector alone and names it. The policies go to the report collector through the poll's
exchange (it classifies each user in its one pass), and are this collector's value: the
``entra_security_defaults_enabled`` and ``entra_conditional_access_policies`` families.
"""

from __future__ import annotations

from exporter.config.permissions import POLICIES
from exporter.graph.client import CONDITIONAL_ACCESS, DIRECTORY
from exporter.metrics.snapshots import ENFORCEMENT_COLLECTOR
from exporter.polling.collectors import Collected, CollectorRun
from exporter.polling.lookups import naming_permission
from exporter.reports.enforcement import (
    EnforcementPolicies,
    PolicyListing,
    parse_security_defaults,
)

SECURITY_DEFAULTS_PATH = "/v1.0/policies/identitySecurityDefaultsEnforcementPolicy"
CA_POLICIES_PATH = "/v1.0/identity/conditionalAccess/policies"


async def read_enforcement(run: CollectorRun) -> EnforcementPolicies:
    """Security defaults, then every Conditional Access policy."""
    host, request = run.tenant.endpoints.graph_host, run.request
    with naming_permission(POLICIES):
        defaults = await run.graph.get_document(
            run.tenant,
            f"{host}{SECURITY_DEFAULTS_PATH}",
            request,
            parse_security_defaults,
            "security defaults",
            DIRECTORY,
        )
        listing = PolicyListing()
        await run.graph.get_pages(
            run.tenant,
            f"{host}{CA_POLICIES_PATH}",
            request,
            listing.add_page,
            "Conditional Access policies",
            CONDITIONAL_ACCESS,
        )
    return EnforcementPolicies(defaults, listing.policies())


class EnforcementCollector:
    """Reads security defaults and the Conditional Access policies."""

    name = ENFORCEMENT_COLLECTOR

    async def collect(self, run: CollectorRun) -> Collected:
        """The policies by state and kind; whatever happens, the report collector is told every
        policy (None: not read)."""
        policies = None
        try:
            policies = await read_enforcement(run)
        finally:
            if run.exchange is not None:
                run.exchange.offer_policies(policies)
        return Collected(policies.summary())
