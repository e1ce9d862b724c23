"""One object per tenant, owning everything about it: :class:`Tenant`.

Its config, token source, settled source (``source: auto``), collectors, last snapshot (each
collector's last good values and health, the recent polls, the log lines of the last failure)
and log tail. :meth:`Tenant.poll` acquires a token, runs the collectors and publishes the new
snapshot; it returns a :class:`~exporter.metrics.snapshots.PollResult`, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace

from apscheduler.job import Job

from exporter.config.model import AUTO_SOURCE, DEFAULT_SOURCE, DETAILS_SOURCE, TenantConfig
from exporter.graph.answers import GraphError, RequestTally
from exporter.graph.auth import AccessToken, Hold, TenantTokenSource, TokenError
from exporter.graph.client import GraphClient
from exporter.graph.failures import (
    AUTH_ERROR,
    SUCCESS,
    TIMEOUT,
    PollFailure,
    describe_error,
    unexpected_failure,
    worst_result,
)
from exporter.graph.transport import Transport
from exporter.metrics.rendering import dropped_label_values
from exporter.metrics.snapshots import (
    ENFORCEMENT_COLLECTOR,
    REPORT_COLLECTOR,
    CollectorResult,
    PollResult,
    TenantSnapshot,
)
from exporter.metrics.store import MetricsStore
from exporter.polling.collectors import Collector, CollectorRun, PollExchange
from exporter.polling.registry import collectors_for
from exporter.polling.scheduler import PollScheduler
from exporter.reports.registration import RegistrationReport

log = logging.getLogger("exporter.polling")
# No family's capped label values logged yet (shared by every tenant: one object, not one each).
NOTHING_LOGGED: frozenset[str] = frozenset()

# A poll never runs into the next one: it ends after this share of the interval at the latest.
INTERVAL_SHARE = 0.9
# ...and, for long intervals, after a few request timeouts (room for retries and backoff).
TIMEOUTS_PER_POLL = 4
# The Graph client gives up at the budget with its own reason; this outer bound only catches
# what has no deadline of its own (MSAL's token request).
OUTER_GRACE_SECONDS = 0.5
# Log lines kept per tenant for its page (the lines of its last failed poll).
LOG_TAIL_LINES = 20
MAX_LOG_LINE = 2000  # characters of one kept line


def poll_budget(tenant: TenantConfig, source: str | None = None) -> float:
    """Hard overall deadline of one poll, in seconds.

    One report call gets a few request timeouts; paging through userRegistrationDetails
    (``source`` being it, or ``auto`` which may switch to it) gets the whole share of the
    interval, since a large tenant is many pages at Graph's 5 requests per 10 seconds.
    """
    share = tenant.interval * INTERVAL_SHARE
    if (source or tenant.source) in (DETAILS_SOURCE, AUTO_SOURCE):
        return share
    return min(share, tenant.timeout * TIMEOUTS_PER_POLL)


def _auth_key(tenant: TenantConfig) -> tuple[object, ...]:
    """The settings that shape a tenant's MSAL app; a change means a new app."""
    return (tenant.tenant_id, tenant.client_id, tenant.credential, tenant.endpoints, tenant.timeout)


@dataclass(frozen=True, slots=True)
class PollingServices:
    """What every tenant shares: the HTTP transport, MSAL's threads, Graph, the store."""

    transport: Transport
    executor: Executor
    graph: GraphClient
    store: MetricsStore
    # Secrets and tokens out of what a failure quotes, before pages and HTTP answers show it.
    redact: Callable[[str], str] = str
    # Values a token source comes to hold (tokens, a rotated secret), to be redacted too.
    hold: Hold = lambda _owner, _secrets, _tokens=(): None
    # A tenant's logger, given its name and where to keep its lines (the tail its page shows):
    # the runtime's redacts and formats them as stderr does. By default lines are not kept.
    tenant_log: Callable[
        [str, Callable[[float, str], None]], logging.LoggerAdapter[logging.Logger]
    ] = lambda name, _keep: logging.LoggerAdapter(log, {"tenant": name})


class Tenant:
    """One configured tenant: its config and everything its polls leave behind."""

    def __init__(
        self, config: TenantConfig, services: PollingServices, previous: Tenant | None = None
    ) -> None:
        """A tenant for ``config``; ``previous`` is the tenant it replaces at a reload, whose
        history (snapshot, log tail) it takes over, and its tokens and settled source where
        the credential and source did not change."""
        self.config = config
        self._services = services
        self.collectors: tuple[Collector, ...] = collectors_for(config)
        # The tail of lines logged about the tenant, made at its first line (most tenants
        # log none between failures): a list cut back to its last lines, not a deque (some
        # 600 bytes however few lines it holds).
        self.log_tail: list[tuple[float, str]] | None = None
        self.settled_source: str | None = None
        self._last_result: str | None = None
        self.failures = 0  # failed polls in a row (a retry backs off with them)
        self._inflight: asyncio.Task[PollResult] | None = None
        # Families whose capped label values were logged (once each, until they fit again).
        self.dropped_labels_logged = NOTHING_LOGGED
        # Every line about this tenant goes through its logger, which keeps it in the tail too.
        self.log = services.tenant_log(config.name, self.log_line)
        if previous is None:
            self.tokens = TenantTokenSource(
                config, services.transport, services.executor, services.hold, self.log
            )
            self.snapshot = TenantSnapshot.for_tenant(config)
        else:
            old = previous.config
            same_app = _auth_key(old) == _auth_key(config)
            self.tokens = (
                previous.tokens
                if same_app
                else TenantTokenSource(
                    config, services.transport, services.executor, services.hold, self.log
                )
            )
            if old.source == config.source:
                self.settled_source = previous.settled_source
            # One tail for both: what the old one's token source (kept when the credential
            # did not change) or a poll of it still in flight logs is this tenant's too.
            if previous.log_tail is None:
                previous.log_tail = []
            self.log_tail = previous.log_tail
            self._last_result = previous.last_result
            self.dropped_labels_logged = previous.dropped_labels_logged
            self.snapshot = previous.snapshot.with_config(config)
        self.current = True  # False once removed or replaced: its polls publish nothing
        self.job: Job | None = None  # its scheduled polls, once started

    @property
    def name(self) -> str:
        """The tenant's name (the ``tenant`` label)."""
        return self.config.name

    @property
    def last_result(self) -> str | None:
        """The result class of the last poll, None before the first."""
        return self._last_result

    def publish(self) -> None:
        """Show the tenant's snapshot from the next scrape on."""
        if self.current:
            self._services.store.publish(self.snapshot)

    def start(self, scheduler: PollScheduler, first_in: float) -> None:
        """Show the tenant and poll it: first in ``first_in`` seconds, then every interval
        (the scheduler's job is this tenant's, held until :meth:`stop`)."""
        self.publish()
        self.job = scheduler.schedule(self.config, first_in)

    def take_over(self, old: Tenant, scheduler: PollScheduler) -> None:
        """Replace ``old`` (a reload changed the config): it publishes nothing more; this one
        shows from now and keeps its job, rescheduled when the interval or jitter changed."""
        old.retire()  # a poll of the old one still in flight publishes nothing
        self.publish()
        self.job = old.job
        timing = (old.config.interval, old.config.jitter)
        if self.job is None or timing != (self.config.interval, self.config.jitter):
            self.job = scheduler.schedule(self.config)

    def stop(self, scheduler: PollScheduler) -> None:
        """The tenant left the config: its polls stop, its series go."""
        self.retire()
        if self.job is not None:
            scheduler.unschedule(self.job)
            self.job = None
        self._services.store.remove(self.name)

    def retire(self) -> None:
        """The tenant left the config, or another replaced it: publish nothing more."""
        self.current = False

    def forget_tokens(self) -> None:
        """Drop cached tokens, so the next poll asks the identity provider for a new one."""
        self.tokens.forget_tokens()

    def log_line(self, created: float, line: str) -> None:
        """Keep a line logged about this tenant (already redacted and formatted), bounded."""
        tail = self.log_tail
        if tail is None:
            tail = self.log_tail = []
        tail.append((created, line[:MAX_LOG_LINE]))  # lines come from MSAL's threads too:
        if len(tail) > LOG_TAIL_LINES:  # each step is atomic, and at worst one more is cut
            del tail[: len(tail) - LOG_TAIL_LINES]

    def lines_since(self, started: float) -> tuple[str, ...]:
        """The tenant's log lines logged at or after ``started`` (Unix time)."""
        tail = list(self.log_tail or ())
        return tuple(line for created, line in tail if created >= started - 0.001)

    def failed_collectors(self) -> frozenset[str]:
        """The collectors whose last run failed (a retry re-reads only these)."""
        return frozenset(c.name for c in self.snapshot.collectors if not c.up)

    async def poll(self, only: frozenset[str] | None = None) -> PollResult:
        """Poll once, log the outcome, publish the new snapshot. Never raises.

        ``only``: run just these collectors (a retry of the failed ones), the others keep their
        values and health. A poll asked for while one runs (a retry meeting the regular poll)
        shares its result.
        """
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.get_running_loop().create_task(self._poll_once(only))
        task = self._inflight
        result = await asyncio.shield(task)
        if self._inflight is task:  # done: not kept (with its result) until the next poll
            self._inflight = None
        return result

    async def _poll_once(self, only: frozenset[str] | None) -> PollResult:
        config, tokens = self.config, self.tokens
        collectors = tuple(c for c in self.collectors if only is None or c.name in only)
        result = await run_poll(
            config,
            tokens,
            self._services.graph,
            collectors or self.collectors,
            self.log,
            self.settled_source,
        )
        result = self._redacted(replace(result, token_requests=tokens.take_token_requests()))
        self._settle(result)
        self._log(result)
        self._last_result = result.result
        self.failures = 0 if result.result == SUCCESS else self.failures + 1
        lines = () if result.result == SUCCESS else self.lines_since(result.started_at)
        configured = tuple(c.name for c in self.collectors)
        self.snapshot = self.snapshot.after_poll(result, config.stale_after, lines, configured)
        self._log_dropped_labels()
        self.publish()
        return result

    def _log_dropped_labels(self) -> None:
        """Log once per family that Graph sent more label values than its cap."""
        dropped = dict(dropped_label_values(self.snapshot))
        for family in sorted(dropped.keys() - self.dropped_labels_logged):
            self.log.warning(
                f"Graph sent more distinct label values for {family} than the exporter shows "
                f"per tenant: {dropped[family]} are counted in the totals, with no series of "
                "their own (entra_exporter_label_values_dropped)",
                extra={"family": family, "dropped_values": dropped[family]},
            )
        if dropped.keys() != self.dropped_labels_logged:  # most polls: nothing, as before
            self.dropped_labels_logged = frozenset(dropped) if dropped else NOTHING_LOGGED

    def _redacted(self, result: PollResult) -> PollResult:
        """``result`` with whatever its failures quote redacted (Graph echoes tokens)."""
        redact = self._services.redact

        def clean(failure: PollFailure | None) -> PollFailure | None:
            if failure is None:
                return None
            return replace(
                failure,
                message=redact(failure.message),
                error_code=None if failure.error_code is None else redact(failure.error_code),
                request_id=None if failure.request_id is None else redact(failure.request_id),
            )

        runs = tuple(replace(run, failure=clean(run.failure)) for run in result.collectors)
        return replace(result, failure=clean(result.failure), collectors=runs)

    def _settle(self, result: PollResult) -> None:
        if self.config.source != AUTO_SOURCE or result.source != DETAILS_SOURCE:
            return
        if self.settled_source != DETAILS_SOURCE:
            self.log.warning(
                "Graph no longer serves getCredentialUserRegistrationCount for this tenant: "
                "switching to userRegistrationDetails (needs AuditLog.Read.All)"
            )
        self.settled_source = DETAILS_SOURCE

    def _log(self, result: PollResult) -> None:
        fields = {"duration_seconds": round(result.duration, 3)}
        if result.result == SUCCESS:
            if self._last_result not in (None, SUCCESS):
                self.log.info("poll recovered", extra=fields)
            else:
                self.log.debug("poll succeeded", extra=fields)
            return
        for run in result.collector_results():
            if run.failure is None:
                continue
            # Values are kept while the collector's last good ones are not yet stale.
            kept = self.snapshot.collector(run.name)
            kept_values = kept is not None and kept.fresh_value(time.time()) is not None
            self.log.warning(
                f"poll failed: {run.failure.message}",
                extra={
                    **fields,
                    "collector": run.name,
                    **run.failure.log_fields(),
                    "kept_last_values": kept_values,
                },
            )


async def _collect_one(
    collector: Collector, run: CollectorRun, tokens: TenantTokenSource
) -> tuple[CollectorResult, str | None]:
    """Run one collector; if Graph refuses a reused token (401), drop it and try once more."""
    for attempt in (1, 2):
        try:
            collected = await collector.collect(run)
        except GraphError as err:
            refused = err.failure.result == AUTH_ERROR and err.failure.http_status == 401
            if not refused or attempt == 2 or time.monotonic() >= run.deadline:
                return CollectorResult(collector.name, err.failure.result, None, err.failure), None
            tokens.forget_tokens()  # revoked, or expired early: the next token is a new one
            run = replace(run, token=await tokens.get_token())
        else:
            return CollectorResult(collector.name, SUCCESS, collected.value), collected.source
    raise AssertionError("unreachable")  # pragma: no cover


async def _guarded(
    collector: Collector, run: CollectorRun, tokens: TenantTokenSource
) -> tuple[CollectorResult, str | None]:
    """One collector's result whatever it raises: a token refused on its retry is its
    failure; an exception from our own code is ``internal_error``, logged with its stack."""
    try:
        return await _collect_one(collector, run, tokens)
    except TokenError as err:
        return CollectorResult(collector.name, err.failure.result, None, err.failure), None
    except Exception as err:
        failure = unexpected_failure(err)
        run.log.error(
            "collector failed unexpectedly",
            exc_info=err,
            extra={"collector": collector.name, **failure.log_fields()},
        )
        return CollectorResult(collector.name, failure.result, None, failure), None


async def _collect_all(
    run: CollectorRun,
    collectors: tuple[Collector, ...],
    tokens: TenantTokenSource,
    done: list[CollectorResult],
) -> str | None:
    """Run the collectors side by side, appending each result to ``done`` as it ends (in the
    collectors' order at the end); the report source read, if any.

    Side by side: each waits on its own Graph budget (the report on the reports budget, the
    policy on the service's), so one never queues behind the other's pacing.
    """
    source = None

    async def one(collector: Collector) -> None:
        nonlocal source
        result, used = await _guarded(collector, run, tokens)
        done.append(result)
        source = used or source

    async with asyncio.TaskGroup() as group:
        for collector in collectors:
            group.create_task(one(collector))
    order = [c.name for c in collectors]
    done.sort(key=lambda result: order.index(result.name))
    return source


async def run_poll(
    tenant: TenantConfig,
    tokens: TenantTokenSource,
    graph: GraphClient,
    collectors: tuple[Collector, ...],
    tenant_log: logging.LoggerAdapter[logging.Logger],
    source: str | None = None,
) -> PollResult:
    """Acquire a token and run ``collectors`` within :func:`poll_budget`.

    ``source`` overrides the configured one (an ``auto`` tenant that already switched).
    """
    source = source or tenant.source
    started = time.monotonic()
    budget = poll_budget(tenant, source)
    tally = RequestTally()
    done: list[CollectorResult] = []
    used: str | None = None
    common: PollFailure | None = None  # what failed every collector not yet done
    try:
        async with (
            asyncio.timeout(budget + OUTER_GRACE_SECONDS),
            graph.admitted() as ticket,  # waiting for room counts as waiting for Graph did
        ):
            token: AccessToken = await tokens.get_token()
            enforcement = any(c.name == ENFORCEMENT_COLLECTOR for c in collectors)
            run = CollectorRun(
                graph,
                tenant,
                token,
                started + budget,
                tally,
                source,
                tenant_log,
                PollExchange(enforcement),
                ticket,
            )
            used = await _collect_all(run, collectors, tokens, done)
    except TokenError as err:
        common = err.failure
    except TimeoutError:
        common = PollFailure(TIMEOUT, f"poll did not finish within {budget:.1f}s")
    except Exception as err:  # noqa: BLE001 - logged with its stack, through the tenant's logger
        common = unexpected_failure(err)
        tenant_log.error(
            "poll failed unexpectedly",
            exc_info=err,
            extra={"result": common.result, "error": describe_error(err)},
        )
    finished = [r.name for r in done]
    if common is not None:
        done += [
            CollectorResult(c.name, common.result, None, common)
            for c in collectors
            if c.name not in finished
        ]
    order = [c.name for c in collectors]
    done.sort(key=lambda result: order.index(result.name))
    return _poll_result(done, source, used, time.monotonic() - started, tally)


def _poll_result(
    done: list[CollectorResult], source: str, used: str | None, duration: float, tally: RequestTally
) -> PollResult:
    result = worst_result(tuple(r.result for r in done))
    failure = next((r.failure for r in done if r.result == result and r.failure), None)
    values = (r.value for r in done if r.name == REPORT_COLLECTOR and r.result == SUCCESS)
    report = next((v for v in values if isinstance(v, RegistrationReport)), None)
    if used is None:
        used = DETAILS_SOURCE if source == DETAILS_SOURCE else DEFAULT_SOURCE
    return PollResult(
        result=result,
        report=report,
        failure=failure,
        duration=duration,
        finished_at=time.time(),
        tally=tally,
        source=used,
        collectors=tuple(done),
    )
