"""The runtime: the one registry of :class:`~exporter.polling.tenant.Tenant` objects and what
they share (transport, MSAL's threads, Graph client, scheduler, metrics store).

Serving, ``--once`` and the tests all build one with :func:`build_runtime`. A reload hands it a
new config through :meth:`Runtime.apply`: a diff of tenant sets — add, replace, remove — and
the rate limits swapped in the same place. Nothing else holds a tenant: the scheduler's jobs
name tenants and ask :meth:`Runtime.poll`; the store shows what tenants publish.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from exporter.config.model import Config, TenantConfig
from exporter.graph.admission import Admission
from exporter.graph.client import GraphClient
from exporter.graph.failures import SUCCESS
from exporter.graph.pacing import GraphRateLimiter
from exporter.graph.transport import Transport, build_ssl_context
from exporter.logs import SecretRedactor, TenantLogger
from exporter.metrics.snapshots import PollResult
from exporter.metrics.store import MetricsStore
from exporter.polling.discovery import Discovery
from exporter.polling.retries import RetryAfterMemory, retry_delay
from exporter.polling.scheduler import PollScheduler, first_poll_delays
from exporter.polling.tenant import PollingServices, Tenant

log = logging.getLogger("exporter")
DISCOVERY_JOB = "#discovery"  # the scheduler's job that reads the customer listing
# Threads for MSAL's token requests (each holds the GIL for most of its CPU).
MSAL_THREADS = 16


class Runtime:
    """The tenants of the config in force, and the parts they share."""

    def __init__(self, config: Config, redactor: SecretRedactor | None = None) -> None:
        self.store = MetricsStore()
        self.transport = Transport(build_ssl_context(config.tls_ca_file), config.concurrency)
        # MSAL is synchronous: its token requests run in threads, at most MSAL_THREADS (and
        # never more than requests may be in flight). Past a few, threads only contend for the
        # GIL with the loop: 1,000 tenants' cold round went 1.14 -> 1.06 x ideal, 2 MB less RSS.
        token_threads = min(config.concurrency, MSAL_THREADS)
        self._executor = ThreadPoolExecutor(max_workers=token_threads, thread_name_prefix="msal")
        # A poll under way is at Graph (``concurrency`` requests at most) or getting its token
        # (a thread each): room for that many, the rest wait holding almost nothing.
        self._graph = GraphClient(
            self.transport,
            GraphRateLimiter(config.per_app_per_tenant, config.per_app),
            admission=Admission(config.concurrency + token_threads),
        )
        self.redactor = redactor or SecretRedactor()
        self._services = PollingServices(
            self.transport,
            self._executor,
            self._graph,
            self.store,
            self.redactor.redact,
            self.redactor.hold,
            self._tenant_logger,
        )
        self.scheduler = PollScheduler(self.store, self.scheduled_poll, self._log_of)
        self.tenants: dict[str, Tenant] = {}
        self.retry_after = RetryAfterMemory()
        self.config = config
        self.discovery: Discovery | None = None
        self.apply(config)

    def apply(self, config: Config) -> None:
        """Make the tenants match ``config`` and the customers discovery found: add, replace
        (history kept) and remove."""
        self.redactor.set_secrets(config.secrets())
        self._use_discovery(config)
        listed = config.tenants
        found = self.discovery.customers(listed) if self.discovery is not None else ()
        config = dataclasses.replace(config, tenants=listed + found)
        wanted = {tenant.name: tenant for tenant in config.tenants}
        self._graph.use_rate_limits(
            config.per_app_per_tenant,
            config.per_app,
            {(t.client_id, t.tenant_id) for t in config.tenants},
            config.app_share,
        )
        for name in list(self.tenants.keys() - wanted.keys()):
            self._remove(name)
        added = [tenant for name, tenant in wanted.items() if name not in self.tenants]
        delays = first_poll_delays(added, config.per_app)
        for name, tenant_config in wanted.items():
            old = self.tenants.get(name)
            if old is None:
                self._add(Tenant(tenant_config, self._services), delays[name])
            elif old.config != tenant_config:
                self._replace(old, tenant_config)
        self.config = dataclasses.replace(config, tenants=listed)

    def _use_discovery(self, config: Config) -> None:
        """Discovery as ``config`` says (the last good listing kept across a reload), read every
        interval, first at once."""
        previous = self.discovery
        if config.discovery is None:
            self.discovery = None
            self.scheduler.unschedule_task(DISCOVERY_JOB)
        elif previous is None or previous.config != config.discovery:
            self.discovery = Discovery(config.discovery, self._services, previous)
            self.scheduler.every(DISCOVERY_JOB, config.discovery.interval, self.discover)
        self.store.expect_discovery(config.discovery is not None)

    async def discover(self) -> None:
        """Read the customer listing, then add the customers that joined and remove those that
        left, as a reload would (a failed listing changes nothing)."""
        discovery = self.discovery
        if discovery is None:
            return
        ok = await discovery.refresh()
        self.store.record_discovery(ok, discovery.found_count())
        if ok and discovery is self.discovery:
            self.apply(self.config)

    def _add(self, tenant: Tenant, first_in: float) -> None:
        """Start polling ``tenant``: first in ``first_in`` seconds (its jitter, and a batch of
        one app's new tenants spread over its reports budget), then every interval."""
        self.tenants[tenant.name] = tenant
        tenant.start(self.scheduler, first_in)

    def _replace(self, old: Tenant, config: TenantConfig) -> None:
        new = Tenant(config, self._services, previous=old)
        self.tenants[new.name] = new
        new.take_over(old, self.scheduler)
        # What changed shows within the jitter window (an edit of the defaults changes every
        # tenant: their polls are spread, not all at once).
        self.scheduler.poll_soon(new.name, random.uniform(0, config.jitter))
        new.log.info("tenant configuration changed")

    def _remove(self, name: str) -> None:
        tenant = self.tenants.pop(name)
        tenant.stop(self.scheduler)
        self.retry_after.forget(name)
        tenant.log.info("tenant removed")

    def _tenant_logger(
        self, name: str, keep: Callable[[float, str], None]
    ) -> logging.LoggerAdapter[logging.Logger]:
        """The logger tenant ``name`` is given: its lines go to stderr and to ``keep``."""
        return TenantLogger(logging.getLogger("exporter.polling"), name, keep, self.redactor)

    def _log_of(self, name: str) -> logging.LoggerAdapter[logging.Logger]:
        """Tenant ``name``'s logger (the scheduler's lines about its job are the tenant's); a
        tenant already gone gets this module's, naming it."""
        tenant = self.tenants.get(name)
        return tenant.log if tenant is not None else logging.LoggerAdapter(log, {"tenant": name})

    @property
    def services(self) -> PollingServices:
        """What every tenant (and discovery) of this runtime shares."""
        return self._services

    def tenant(self, name: str) -> Tenant:
        """Tenant ``name`` (KeyError if the config has no such tenant)."""
        return self.tenants[name]

    async def poll(self, name: str) -> PollResult:
        """Poll tenant ``name`` now (as a scheduled poll would); KeyError if there is none."""
        return await self.tenants[name].poll()

    async def scheduled_poll(self, name: str, retry: bool = False) -> PollResult | None:
        """A scheduled poll of tenant ``name``; a ``retry`` re-reads its failed collectors
        alone (nothing when none failed since)."""
        tenant = self.tenants.get(name)  # None: removed while its job was due
        if tenant is None:
            return None
        only = tenant.failed_collectors() if retry else None
        if only is not None and not only:
            return None
        result = await tenant.poll(only)
        if result.result != SUCCESS and tenant.current:
            # A failed tenant is asked again sooner than its interval, backing off; never
            # before the time Graph named, for it or (a refusal per app) for its app.
            client_id = tenant.config.client_id
            for run in result.collector_results():
                if run.failure is not None and run.failure.retry_after is not None:
                    self.retry_after.note(name, client_id, run.failure.retry_after)
            delay = max(
                retry_delay(tenant.failures, tenant.config.interval),
                self.retry_after.wait(name, client_id),
            )
            self.scheduler.poll_soon(name, delay, retry=True)
        return result

    async def poll_all(self) -> list[PollResult]:
        """Poll every tenant once, concurrently (bounded by the transport's in-flight cap)."""
        return await asyncio.gather(*(tenant.poll() for tenant in list(self.tenants.values())))

    async def aclose(self) -> None:
        """Stop the scheduler, cancel token requests that have not started, close connections."""
        self.scheduler.shutdown()
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self.transport.aclose()


def build_runtime(config: Config, redactor: SecretRedactor | None = None) -> Runtime:
    """The exporter's runtime for ``config``; call inside the running event loop."""
    asyncio.get_running_loop()  # the transport and the scheduler belong to this loop
    return Runtime(config, redactor)
