"""The ``policy`` collector (``policy: true``): the tenant's authentication methods policy.

One ``GET {graph}/beta/policies/authenticationMethodsPolicy`` per poll (beta: ``optOutSettings``
exists only there). Graph refusing it (403) fails this collector alone, with the permission
named; the report's numbers and their collector are untouched.
"""

from __future__ import annotations

from dataclasses import replace

from exporter.config.permissions import METHODS_POLICY
from exporter.graph.answers import GraphError
from exporter.graph.client import DIRECTORY
from exporter.metrics.snapshots import POLICY_COLLECTOR
from exporter.polling.collectors import Collected, CollectorRun
from exporter.reports.policy import parse_methods_policy

POLICY_PATH = "/beta/policies/authenticationMethodsPolicy"
# The least-privileged application permission that reads it (Policy.Read.All reads it too).
POLICY_PERMISSION = METHODS_POLICY


class PolicyCollector:
    """Reads the authentication methods policy."""

    name = POLICY_COLLECTOR

    async def collect(self, run: CollectorRun) -> Collected:
        """The policy; a 403 names the permission the app lacks."""
        url = f"{run.tenant.endpoints.graph_host}{POLICY_PATH}"
        try:
            policy = await run.graph.get_document(
                run.tenant,
                url,
                run.request,
                parse_methods_policy,
                "authentication methods policy",
                DIRECTORY,
            )
        except GraphError as err:
            failure = err.failure
            if failure.http_status == 403:
                message = (
                    f"authentication methods policy refused ({failure.error_code or 'HTTP 403'}): "
                    f"grant the application permission {POLICY_PERMISSION}"
                )
                raise GraphError(replace(failure, message=message)) from None
            raise
        return Collected(policy)
