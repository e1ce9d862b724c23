"""APScheduler jobs: one per tenant; each runs :func:`poll_tenant` and hands the result to metrics.

Each tenant's job uses ``IntervalTrigger(interval)`` whose phase is a random offset in
``[0, jitter]`` drawn once per tenant, so tenants do not poll in lockstep and each polls exactly
once per interval. (APScheduler 3.x's own ``jitter`` is added to the previous *jittered* fire
time, so its average period is ``interval + jitter / 2`` and drifts.)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from exporter.auth import TenantTokenSource
from exporter.config import (
    AUTO_SOURCE,
    DEFAULT_PER_APP,
    DEFAULT_PER_APP_PER_TENANT,
    DETAILS_SOURCE,
    Config,
    TenantConfig,
)
from exporter.failures import SUCCESS
from exporter.graph import GraphClient
from exporter.metrics import MetricsStore
from exporter.poll import PollResult, poll_tenant
from exporter.ratelimit import GraphRateLimiter
from exporter.transport import Transport

log = logging.getLogger("exporter.scheduler")

HEARTBEAT_SECONDS = 5.0
_HEARTBEAT_JOB = "_heartbeat"
_EVENT_NAMES = {
    EVENT_JOB_MISSED: "missed",
    EVENT_JOB_MAX_INSTANCES: "max_instances",
    EVENT_JOB_ERROR: "error",
}


def _auth_key(tenant: TenantConfig) -> tuple[object, ...]:
    """The settings that shape a tenant's MSAL app; a change means a new app."""
    return (tenant.tenant_id, tenant.client_id, tenant.credential, tenant.endpoints, tenant.timeout)


@dataclass(slots=True)
class _TenantJob:
    tenant: TenantConfig
    tokens: TenantTokenSource
    # For source auto: the report it settled on once the seed's report was gone.
    settled_source: str | None = None


class PollScheduler:
    """Owns the tenant jobs, their MSAL token sources and the MSAL worker threads."""

    def __init__(self, store: MetricsStore, transport: Transport, concurrency: int) -> None:
        self._store = store
        self._transport = transport
        self._graph = GraphClient(
            transport, GraphRateLimiter(DEFAULT_PER_APP_PER_TENANT, DEFAULT_PER_APP)
        )
        # MSAL is synchronous; one thread per possible request in flight, no fewer, so token
        # requests for many tenants do not queue behind a small pool.
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="msal")
        self._jobs: dict[str, _TenantJob] = {}
        self._scheduler = AsyncIOScheduler(
            executors={"default": AsyncIOExecutor()},
            timezone=UTC,
        )
        self._scheduler.add_listener(
            self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
        )
        self.heartbeat = time.monotonic()
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the scheduler; call inside the running event loop."""
        self._scheduler.start()
        self._scheduler.add_job(
            self._beat,
            IntervalTrigger(seconds=HEARTBEAT_SECONDS, timezone=UTC),
            id=_HEARTBEAT_JOB,
            misfire_grace_time=None,
            coalesce=True,
        )

    def shutdown(self) -> None:
        """Stop scheduling and cancel the polls in flight."""
        self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _beat(self) -> None:
        self.heartbeat = time.monotonic()

    def _on_event(self, event: JobEvent) -> None:
        kind = _EVENT_NAMES.get(event.code, "error")
        self._store.record_scheduler_event(kind)
        tenant = event.job_id
        if event.code == EVENT_JOB_ERROR:
            exception = getattr(event, "exception", None)
            log.error(
                "poll job raised",
                extra={"tenant": tenant, "error": type(exception).__name__},
            )
        else:
            log.warning(f"poll skipped by the scheduler ({kind})", extra={"tenant": tenant})

    # ------------------------------------------------------------------ configuration

    def apply(self, config: Config) -> None:
        """Make the jobs match ``config``: add, change and remove tenants."""
        wanted = {tenant.name: tenant for tenant in config.tenants}
        limiter = self._graph.limiter
        if (limiter.per_app_per_tenant, limiter.per_app) != (
            config.per_app_per_tenant,
            config.per_app,
        ):
            self._graph.limiter = GraphRateLimiter(config.per_app_per_tenant, config.per_app)
        else:
            limiter.forget({(t.client_id, t.tenant_id) for t in config.tenants})
        for name in list(self._jobs.keys() - wanted.keys()):
            del self._jobs[name]
            if self._scheduler.get_job(name) is not None:
                self._scheduler.remove_job(name)
            log.info("tenant removed", extra={"tenant": name})
        self._store.set_tenants(config.tenants)
        for name, tenant in wanted.items():
            job = self._jobs.get(name)
            if job is None:
                self._jobs[name] = _TenantJob(tenant, self._token_source(tenant))
                self._schedule(tenant)
                continue
            old = job.tenant
            if old == tenant:
                continue
            if _auth_key(old) != _auth_key(tenant):
                # The old MSAL app (and its cached tokens) goes with the old credential.
                job.tokens = self._token_source(tenant)
            if old.source != tenant.source:
                job.settled_source = None
            job.tenant = tenant
            if (old.interval, old.jitter) != (tenant.interval, tenant.jitter):
                self._schedule(tenant)
            log.info("tenant configuration changed", extra={"tenant": name})

    def _token_source(self, tenant: TenantConfig) -> TenantTokenSource:
        return TenantTokenSource(tenant, self._transport, self._executor)

    def _schedule(self, tenant: TenantConfig) -> None:
        first_run = datetime.now(UTC) + timedelta(seconds=random.uniform(0, tenant.jitter))
        self._scheduler.add_job(
            self._poll_job,
            IntervalTrigger(seconds=tenant.interval, start_date=first_run, timezone=UTC),
            args=(tenant.name,),
            id=tenant.name,
            name=f"poll {tenant.name}",
            next_run_time=first_run,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            # A poll that starts late still runs as long as its slot has not come round again.
            misfire_grace_time=max(1, int(tenant.interval)),
        )

    # ------------------------------------------------------------------ polling

    async def _poll_job(self, name: str) -> None:
        try:
            await self.poll(name)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Cancelled by shutdown: the end of a poll nobody waits for, not an error.

    async def poll(self, name: str) -> PollResult | None:
        """Poll one tenant now and record the result; None if the tenant is gone."""
        job = self._jobs.get(name)
        if job is None:
            return None
        tenant, tokens = job.tenant, job.tokens
        previous = self._store.snapshot(name)
        result = await poll_tenant(tenant, tokens, self._graph, job.settled_source)
        if self._jobs.get(name) is not job:
            return result  # removed or replaced while polling: its numbers must not come back
        if tenant.source == AUTO_SOURCE and result.source == DETAILS_SOURCE:
            if job.settled_source != DETAILS_SOURCE:
                log.warning(
                    "Graph no longer serves getCredentialUserRegistrationCount for this tenant: "
                    "switching to userRegistrationDetails (needs AuditLog.Read.All)",
                    extra={"tenant": name},
                )
            job.settled_source = DETAILS_SOURCE
        snapshot = self._store.record_poll(tenant, result, tokens.token_requests)
        fields = {"tenant": name, "duration_seconds": round(result.duration, 3)}
        if result.result == SUCCESS:
            if previous is not None and previous.polled and not previous.up:
                log.info("poll recovered", extra=fields)
            else:
                log.debug("poll succeeded", extra=fields)
        elif result.failure is not None:
            kept = snapshot is not None and snapshot.report is not None
            log.warning(
                f"poll failed: {result.failure.message}",
                extra={**fields, **result.failure.log_fields(), "kept_last_values": kept},
            )
        return result

    async def poll_all(self) -> list[PollResult | None]:
        """Poll every tenant once, concurrently (bounded by the transport's in-flight cap)."""
        return await asyncio.gather(*(self.poll(name) for name in list(self._jobs)))
