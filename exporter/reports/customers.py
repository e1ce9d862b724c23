"""Pure: pages of a partner's customer listing (``delegatedAdminCustomers`` or the
multi-tenant organization's ``tenants``) → each customer once, named for the ``tenant`` label.

A row without a usable ``tenantId`` (missing, null, not a GUID) is skipped and counted; a
``displayName`` is made one printable line of at most :data:`MAX_NAME` characters (the tenant
id when there is none); two customers with one name each get their tenant id in parentheses.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from exporter.reports.directory import Page, decode_listing, parse_object_id
from exporter.reports.registration import ReportParseError

MAX_CUSTOMERS = 50_000
MAX_NAME = 100


def _name(value: Any, tenant_id: str) -> str:
    if not isinstance(value, str):
        return tenant_id
    line = " ".join("".join(c if c.isprintable() else " " for c in value[: 4 * MAX_NAME]).split())
    return line[:MAX_NAME].strip() or tenant_id


class CustomerListing:
    """Customers from the listing's pages: tenant id (lower case) → display name, first seen."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self.skipped = 0

    def add_page(self, page: Any) -> Page:
        """One page (its JSON bytes, or the decoded document)."""
        rows, link = decode_listing(page, "customers")
        known = len(self.found)
        for row in rows:
            tenant_id = row.get("tenantId") if isinstance(row, dict) else None
            try:
                parse_object_id(tenant_id, 0)
            except ReportParseError:
                self.skipped += 1
                continue
            key = str(tenant_id).lower()
            self.found.setdefault(key, _name(row.get("displayName"), key))
        if len(self.found) > MAX_CUSTOMERS:
            raise ReportParseError(f"more than {MAX_CUSTOMERS} customers")
        return Page(link, len(rows), len(self.found) - known)


def named(customers: dict[str, str], taken: set[str]) -> list[tuple[str, str]]:
    """(tenant label, tenant id) of each customer: its display name, with its tenant id in
    parentheses when another customer (or a listed tenant, in ``taken``) has the same."""
    counts = Counter(customers.values())
    return [
        (f"{name} ({tenant_id})" if counts[name] > 1 or name in taken else name, tenant_id)
        for tenant_id, name in sorted(customers.items(), key=lambda item: (item[1], item[0]))
    ]
