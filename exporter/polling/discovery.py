"""Discovery (``discovery:``): the partner's customer listing, read app-only in the partner's
tenant every ``interval``; each customer becomes a tenant polled with the same app.

A failed listing keeps the last good set (healthy tenants are never removed because of one bad
page) and says so in its own health: ``entra_exporter_discovery_up``, ``_tenants`` and
``_last_success_timestamp_seconds``. Listed tenants win over discovered ones with the same
tenant id; excluded ids are never polled; each replica keeps only its shard's share (the same
stable hash as listed tenants).
"""

from __future__ import annotations

import logging
import time

from exporter.config.discovery import DiscoveryConfig
from exporter.config.model import TenantConfig
from exporter.config.sharding import shard_of
from exporter.graph.answers import GraphError, RequestTally
from exporter.graph.auth import TenantTokenSource, TokenError
from exporter.graph.client import DIRECTORY, GraphRequest
from exporter.polling.lookups import naming_permission
from exporter.polling.tenant import PollingServices
from exporter.reports.customers import CustomerListing, named

log = logging.getLogger("exporter.discovery")
TIMEOUTS_PER_LISTING = 10  # a listing of thousands of customers is many pages


def _listing(config: DiscoveryConfig) -> tuple[str, str]:
    """What a listing read is: its source and the partner tenant it is read in."""
    return config.source, config.partner.tenant_id


class Discovery:
    """One partner's listing and the customers last read from it."""

    def __init__(
        self, config: DiscoveryConfig, services: PollingServices, previous: Discovery | None = None
    ) -> None:
        """Discovery for ``config``; a reload keeps ``previous``'s last good listing when the
        listing read is the same (source and partner)."""
        self.config = config
        self._services = services
        partner = config.partner
        self._tokens = TenantTokenSource(
            partner, services.transport, services.executor, services.hold
        )
        # The last good listing: tenant id -> display name (None: never read).
        self._customers: dict[str, str] | None = None
        self.tried = False
        if previous is not None and _listing(previous.config) == _listing(config):
            self._customers, self.tried = previous.found(), previous.tried

    def found(self) -> dict[str, str] | None:
        """The last good listing (tenant id -> display name), None before the first."""
        return self._customers

    def found_count(self) -> int:
        """Customers the last good listing found, after exclude."""
        return len(set(self._customers or ()) - self.config.exclude)

    def customers(self, listed: tuple[TenantConfig, ...]) -> tuple[TenantConfig, ...]:
        """The discovered tenants this replica polls, next to the ``listed`` ones."""
        if not self._customers:
            return ()
        listed_ids = {tenant.tenant_id.lower() for tenant in listed}
        index, count = self.config.shard
        kept = {
            tenant_id: name
            for tenant_id, name in self._customers.items()
            if tenant_id not in listed_ids
            and tenant_id not in self.config.exclude
            and shard_of(tenant_id, count) == index
        }
        taken = {tenant.name for tenant in listed}
        return tuple(self.config.customer(name, tid) for name, tid in named(kept, taken))

    async def refresh(self) -> bool:
        """Read the listing (every page); False, with the last good set kept, when it fails."""
        config, partner = self.config, self.config.partner
        deadline = time.monotonic() + partner.timeout * TIMEOUTS_PER_LISTING
        listing = CustomerListing()
        url = f"{partner.endpoints.graph_host}{config.path}"
        try:
            token = await self._tokens.get_token()
            with naming_permission(config.permission):
                await self._services.graph.get_pages(
                    partner, url, GraphRequest(token, deadline, RequestTally()), listing.add_page,
                    f"{config.source} of {partner.tenant_id}", DIRECTORY,
                )  # fmt: skip
        except (GraphError, TokenError) as err:
            self.tried = True
            log.warning(
                f"customer listing failed, the last good set is kept: {err.failure.message}",
                extra={"source": config.source, **err.failure.log_fields()},
            )
            return False
        self.tried = True
        if listing.skipped:
            log.warning(
                f"{listing.skipped} row(s) of the customer listing had no usable tenantId",
                extra={"source": config.source, "skipped_rows": listing.skipped},
            )
        self._customers = listing.found
        return True
