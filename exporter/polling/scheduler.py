"""APScheduler jobs: one per tenant; each asks the runtime to poll that tenant. Nothing else.

Each tenant's job uses ``IntervalTrigger(interval)`` whose phase is a random offset in
``[0, jitter]`` drawn once per tenant, so tenants do not poll in lockstep and each polls exactly
once per interval. (APScheduler 3.x's own ``jitter`` is added to the previous *jittered* fire
time, so its average period is ``interval + jitter / 2`` and drifts.) APScheduler skips a run
silently while the previous one still runs; every such event is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.config.model import RateLimit, TenantConfig
from exporter.metrics.store import MetricsStore
from exporter.polling.clock import ClockWatch

log = logging.getLogger("exporter.scheduler")

# The job id suffix of a tenant's extra poll (a retry, or a poll right after a reload).
EXTRA_POLL = "#extra"
_EVENT_NAMES = MappingProxyType(
    {
        EVENT_JOB_MISSED: "missed",
        EVENT_JOB_MAX_INSTANCES: "max_instances",
        EVENT_JOB_ERROR: "error",
    }
)


# New tenants of one app are started this much faster than the app's reports budget lets their
# reports go, so the budget, not the spreading, sets the pace.
START_AHEAD_OF_BUDGET = 1.25


def first_poll_delays(tenants: Sequence[TenantConfig], per_app: RateLimit) -> dict[str, float]:
    """Seconds from now to each new tenant's first poll, which is also its phase.

    Each gets a random phase within its jitter. Many tenants of one app (a start, or a listing
    that brings thousands of customers) are also spread over the time the app's reports budget
    needs for one request each (``per_app``: a replica's share of it when replicas share the
    app, as :meth:`~exporter.config.sharding.Shard.select` sets it); otherwise thousands of
    tokens would be fetched at once, and their reports would wait in line for the budget on a
    machine busy with the tokens. The first window's worth starts at once, the rest at 1.25 x
    the budget's pace behind them; the spread never passes the interval.
    """
    by_app: dict[str, list[TenantConfig]] = {}
    for tenant in tenants:
        by_app.setdefault(tenant.client_id, []).append(tenant)
    per_second = per_app.requests / per_app.per_seconds * START_AHEAD_OF_BUDGET
    delays: dict[str, float] = {}
    for group in by_app.values():
        order = random.sample(group, len(group))
        for place, tenant in enumerate(order):
            # The first window's worth at once (the budget lets them all through), the rest
            # spread behind them.
            spacing = min(1 / per_second, tenant.interval / len(group))
            behind = max(0, place - per_app.requests)
            delays[tenant.name] = behind * spacing + random.uniform(0, tenant.jitter)
    return delays


class PollScheduler:
    """Runs each tenant's poll on its interval; ``poll(name)`` is the runtime's (it looks the
    tenant up in its registry, so a job never holds a tenant of its own)."""

    def __init__(
        self,
        store: MetricsStore,
        poll: Callable[[str, bool], Awaitable[object]],
        log_of: Callable[[str], logging.LoggerAdapter[logging.Logger]] | None = None,
    ) -> None:
        """``poll(name, retry)`` polls a tenant; ``log_of(name)`` is its logger (what the
        scheduler says about a tenant's job is the tenant's)."""
        self._store = store
        self._poll = poll
        self._log_of = log_of or (lambda name: logging.LoggerAdapter(log, {"tenant": name}))
        self._scheduler = AsyncIOScheduler(
            executors={"default": AsyncIOExecutor()},
            timezone=UTC,
        )
        self._scheduler.add_listener(
            self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
        )
        self.clock = ClockWatch(self._reschedule_all)
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the scheduler and its watch; call inside the running event loop."""
        self._scheduler.start()
        self.clock.start()

    def shutdown(self) -> None:
        """Stop scheduling; polls in flight are cancelled with the event loop's tasks."""
        self._stopping = True
        self.clock.stop()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def _reschedule_all(self) -> None:
        """Every job from now, each keeping its interval (the wall clock stepped)."""
        now = datetime.now(UTC)
        for job in self._scheduler.get_jobs():
            interval = getattr(job.trigger, "interval", None)
            if isinstance(interval, timedelta):
                job.reschedule(
                    IntervalTrigger(seconds=interval.total_seconds(), start_date=now, timezone=UTC)
                )

    def _on_event(self, event: JobEvent) -> None:
        kind = _EVENT_NAMES.get(event.code, "error")
        self._store.record_scheduler_event(kind)
        tenant = event.job_id.removesuffix(EXTRA_POLL)
        if event.code == EVENT_JOB_ERROR:
            exception = getattr(event, "exception", None)
            self._log_of(tenant).error("poll job raised", exc_info=exception)
        else:
            self._log_of(tenant).warning(f"poll skipped by the scheduler ({kind})")

    # ------------------------------------------------------------------ jobs

    def schedule(self, tenant: TenantConfig, first_in: float | None = None) -> Job:
        """Poll ``tenant`` every interval from ``first_in`` seconds from now (replacing); by
        default a random phase in ``[0, jitter]``. The job is its tenant's to hold and stop."""
        if first_in is None:
            first_in = random.uniform(0, tenant.jitter)
        first_run = datetime.now(UTC) + timedelta(seconds=first_in)
        return self._scheduler.add_job(
            self._poll_job,
            IntervalTrigger(seconds=tenant.interval, start_date=first_run, timezone=UTC),
            args=(tenant.name, False),
            id=tenant.name,
            name=f"poll {tenant.name}",
            next_run_time=first_run,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            # A poll that starts late still runs as long as its slot has not come round again.
            misfire_grace_time=max(1, int(tenant.interval)),
        )

    def every(self, job_id: str, seconds: float, task: Callable[[], Awaitable[object]]) -> None:
        """Run ``task`` every ``seconds``, first at once (replacing a job of that id)."""
        self._scheduler.add_job(
            self._task_job,
            IntervalTrigger(seconds=seconds, timezone=UTC),
            args=(task,),
            id=job_id,
            name=job_id,
            next_run_time=datetime.now(UTC),
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds)),
        )

    def unschedule_task(self, job_id: str) -> None:
        """Stop the job ``job_id`` (nothing if there is none)."""
        if self._scheduler.get_job(job_id) is not None:
            self._scheduler.remove_job(job_id)

    async def _task_job(self, task: Callable[[], Awaitable[object]]) -> None:
        try:
            await task()
        except asyncio.CancelledError:
            if not self._stopping:
                raise

    def unschedule(self, job: Job) -> None:
        """Stop a tenant's job (from :meth:`schedule`) and its extra poll, if one is due."""
        if self._scheduler.get_job(job.id) is not None:  # not already gone
            job.remove()
        extra = f"{job.id}{EXTRA_POLL}"
        if self._scheduler.get_job(extra) is not None:
            self._scheduler.remove_job(extra)

    def poll_soon(self, name: str, delay: float, retry: bool = False) -> None:
        """One extra poll of tenant ``name`` in ``delay`` seconds (replacing an earlier extra
        poll); its regular polls go on. Nothing when the regular one comes first anyway.
        A ``retry`` re-reads only the collectors that failed."""
        when = datetime.now(UTC) + timedelta(seconds=delay)
        regular = self._scheduler.get_job(name)
        next_run = getattr(regular, "next_run_time", None) if regular is not None else None
        if next_run is not None and next_run <= when:
            return
        self._scheduler.add_job(
            self._poll_job,
            DateTrigger(run_date=when, timezone=UTC),
            args=(name, retry),
            id=f"{name}{EXTRA_POLL}",
            name=f"extra poll {name}",
            replace_existing=True,
            misfire_grace_time=None,
        )

    def next_extra_poll(self, name: str) -> float | None:
        """When tenant ``name``'s extra poll (a retry) runs (Unix time), None if none is due."""
        job = self._scheduler.get_job(f"{name}{EXTRA_POLL}")
        when = getattr(job, "next_run_time", None) if job is not None else None
        return when.timestamp() if when is not None else None

    def next_poll(self, name: str) -> float | None:
        """When tenant ``name`` is polled next (Unix time), None if it is not scheduled."""
        job = self._scheduler.get_job(name)
        when = getattr(job, "next_run_time", None) if job is not None else None
        return when.timestamp() if when is not None else None

    async def _poll_job(self, name: str, retry: bool = False) -> None:
        try:
            await self._poll(name, retry)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Cancelled by shutdown: the end of a poll nobody waits for, not an error.
