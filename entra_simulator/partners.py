"""A partner tenant's customer listings, as Graph answers them for an MSP's app:
``tenantRelationships/delegatedAdminCustomers`` and the multi-tenant organization's ``tenants``.

A tenant is a customer of the partner whose ``tenant_id`` its ``customer_of`` holds; tests make
customers join and leave by setting it. Pages of :data:`PAGE_SIZE`.
"""

from __future__ import annotations

from typing import Any

from entra_simulator.directory import SimTenant

DELEGATED_ADMIN_CUSTOMERS = "/v1.0/tenantRelationships/delegatedAdminCustomers"
MTO_TENANTS = "/v1.0/tenantRelationships/multiTenantOrganization/tenants"
PARTNER_PATHS = (DELEGATED_ADMIN_CUSTOMERS, MTO_TENANTS)
PAGE_SIZE = 2
LARGE_PAGE_SIZE = 300


def customer_rows(partner: SimTenant, tenants: list[SimTenant], path: str) -> list[dict[str, Any]]:
    """The listing's rows (one per customer), in a stable order."""
    rows = []
    for tenant in tenants:
        if tenant.customer_of != partner.tenant_id:
            continue
        name = tenant.display_name if tenant.display_name is not None else tenant.name
        if path == DELEGATED_ADMIN_CUSTOMERS:
            rows.append({"id": tenant.tenant_id, "tenantId": tenant.tenant_id, "displayName": name,
                         "serviceManagementDetails": []})  # fmt: skip
        else:
            rows.append({"tenantId": tenant.tenant_id, "displayName": name,
                         "addedDateTime": "2026-01-01T00:00:00Z", "state": "active"})  # fmt: skip
    return rows


class PartnerHandler:
    """The handler's part for the two listings (mixed into the simulator's request handler)."""

    def _partner_listing(self, path: str, query: str) -> None:
        handler: Any = self
        call = handler._graph_call(query, units=1, directory=False)
        if call is None:
            return
        partner, params = call
        handler._record("partner_listing", partner)
        with handler.sim.lock:
            tenants = list(handler.sim.tenants.values())
        rows = customer_rows(partner, tenants, path)
        offset = int(params.get("$skiptoken", "0"))
        # Small listings in small pages (the walk is exercised); large ones as Graph pages them.
        following = offset + (PAGE_SIZE if len(rows) <= 10 else LARGE_PAGE_SIZE)
        handler._send_page(path, params, rows[offset:following],
                           following if following < len(rows) else None)  # fmt: skip
