"""The pipeline, built once from a :class:`~exporter.config.model.Config`: serving, ``--once``
and the tests all call :func:`build_pipeline`.

Data flows one way: config → pipeline → scheduler → poller → (auth, graph) → report → metrics
store → HTTP server. A reload hands the pipeline a new config through :meth:`Pipeline.apply`,
which adds, reconfigures and removes tenant pollers and swaps the rate limits in one place.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from exporter.config.model import Config
from exporter.graph.client import GraphClient
from exporter.graph.pacing import GraphRateLimiter
from exporter.graph.transport import Transport, build_ssl_context
from exporter.metrics.store import MetricsStore
from exporter.polling.scheduler import PollScheduler
from exporter.polling.tenant import PollResult, TenantPoller

log = logging.getLogger("exporter")


class Pipeline:
    """Transport, Graph client, one poller per tenant, the scheduler and the metrics store."""

    def __init__(self, config: Config) -> None:
        self.store = MetricsStore()
        self.transport = Transport(build_ssl_context(config.tls_ca_file), config.concurrency)
        self._graph = GraphClient(
            self.transport, GraphRateLimiter(config.per_app_per_tenant, config.per_app)
        )
        # MSAL is synchronous; one thread per possible request in flight, no fewer, so token
        # requests for many tenants do not queue behind a small pool.
        self._executor = ThreadPoolExecutor(
            max_workers=config.concurrency, thread_name_prefix="msal"
        )
        self.scheduler = PollScheduler(self.store)
        self._pollers: dict[str, TenantPoller] = {}
        self.config = config
        self.apply(config)

    def apply(self, config: Config) -> None:
        """Make the pollers match ``config``: add, change and remove tenants."""
        wanted = {tenant.name: tenant for tenant in config.tenants}
        self._graph.use_rate_limits(
            config.per_app_per_tenant,
            config.per_app,
            {(t.client_id, t.tenant_id) for t in config.tenants},
        )
        for name in list(self._pollers.keys() - wanted.keys()):
            del self._pollers[name]
            self.scheduler.unschedule(name)
            log.info("tenant removed", extra={"tenant": name})
        self.store.set_tenants(config.tenants)
        for name, tenant in wanted.items():
            poller = self._pollers.get(name)
            if poller is None:
                poller = TenantPoller(tenant, self.transport, self._executor, self._graph)
                self._pollers[name] = poller
                self.scheduler.schedule(poller)
            elif poller.tenant != tenant:
                if poller.reconfigure(tenant):
                    self.scheduler.schedule(poller)
                log.info("tenant configuration changed", extra={"tenant": name})
        self.config = config

    def poller(self, name: str) -> TenantPoller:
        """The poller of tenant ``name`` (KeyError if the config has no such tenant)."""
        return self._pollers[name]

    async def poll(self, name: str) -> PollResult:
        """Poll tenant ``name`` now and record the result (as a scheduled poll would)."""
        result = await self.scheduler.poll(name)
        if result is None:
            raise KeyError(name)
        return result

    async def poll_all(self) -> list[PollResult | None]:
        """Poll every tenant once, concurrently, and record the results."""
        return await self.scheduler.poll_all()

    async def aclose(self) -> None:
        """Stop the scheduler, cancel token requests that have not started, close connections."""
        self.scheduler.shutdown()
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self.transport.aclose()


def build_pipeline(config: Config) -> Pipeline:
    """The exporter's pipeline for ``config``; call inside the running event loop."""
    asyncio.get_running_loop()  # the transport and the scheduler belong to this loop
    return Pipeline(config)
