"""One object per tenant: its config, token source, settled source and outcome of each poll.

:meth:`TenantPoller.poll` acquires a token, reads the tenant's report and returns a
:class:`PollResult` that carries everything the metrics store needs — never an exception. The
poller also owns what ``source: auto`` means: it asks the seed's report, reads the successor
when Graph says the seed is gone, and from then on reads the successor directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

from exporter.config.model import AUTO_SOURCE, DEFAULT_SOURCE, DETAILS_SOURCE, TenantConfig
from exporter.graph.answers import GraphError, RequestTally
from exporter.graph.auth import AccessToken, TenantTokenSource, TokenError
from exporter.graph.client import GraphClient
from exporter.graph.failures import (
    AUTH_ERROR,
    SUCCESS,
    TIMEOUT,
    PollFailure,
    describe_error,
    unexpected_failure,
)
from exporter.graph.transport import Transport
from exporter.polling.report_collector import fetch_registration_details
from exporter.reports.registration import RegistrationReport

log = logging.getLogger("exporter.poller")

# A poll never runs into the next one: it ends after this share of the interval at the latest.
INTERVAL_SHARE = 0.9
# ...and, for long intervals, after a few request timeouts (room for retries and backoff).
TIMEOUTS_PER_POLL = 4
# The Graph client gives up at the budget with its own reason; this outer bound only catches
# what has no deadline of its own (MSAL's token request).
OUTER_GRACE_SECONDS = 0.5
# What Graph answers for a report it no longer serves (with one of its error codes).
GONE_STATUSES = (400, 404, 410)


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll produced: a report on success, a failure otherwise."""

    result: str
    report: RegistrationReport | None
    failure: PollFailure | None
    duration: float
    finished_at: float
    tally: RequestTally = field(default_factory=RequestTally)
    # The report the poll read (or tried to): credentialUserRegistrationCount or
    # userRegistrationDetails; with source auto, the one it settled on.
    source: str = DEFAULT_SOURCE
    # Requests this poll sent to the identity provider (MSAL's cache hits send none).
    token_requests: int = 0

    @property
    def started_at(self) -> float:
        """Unix time the poll started."""
        return self.finished_at - self.duration


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


def seed_report_is_gone(failure: PollFailure) -> bool:
    """True when Graph says the seed's report no longer exists or is unsupported."""
    return failure.http_status in GONE_STATUSES and bool(failure.error_code)


async def fetch_from_source(
    graph: GraphClient,
    tenant: TenantConfig,
    source: str,
    token: AccessToken,
    deadline: float,
    tally: RequestTally,
) -> tuple[RegistrationReport, str]:
    """The report from ``source``; ``auto`` falls back to the successor when the seed is gone."""
    if source == DETAILS_SOURCE:
        return await fetch_registration_details(graph, tenant, token, deadline, tally), source
    try:
        report = await graph.fetch_registration_report(tenant, token, deadline, tally)
    except GraphError as err:
        if source != AUTO_SOURCE or not seed_report_is_gone(err.failure):
            raise
        report = await fetch_registration_details(graph, tenant, token, deadline, tally)
        return report, DETAILS_SOURCE
    return report, DEFAULT_SOURCE


async def _token_then_report(
    tenant: TenantConfig,
    source: str,
    tokens: TenantTokenSource,
    graph: GraphClient,
    deadline: float,
    tally: RequestTally,
) -> tuple[RegistrationReport, str]:
    """Fetch the report; if Graph refuses a reused token (401), drop it and try once more."""
    for attempt in (1, 2):
        token = await tokens.get_token()
        try:
            return await fetch_from_source(graph, tenant, source, token, deadline, tally)
        except GraphError as err:
            refused = err.failure.result == AUTH_ERROR and err.failure.http_status == 401
            if not refused:
                raise
            tokens.forget_tokens()  # revoked, or expired early: the next token is a new one
            if attempt == 2 or time.monotonic() >= deadline:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def poll_tenant(
    tenant: TenantConfig,
    tokens: TenantTokenSource,
    graph: GraphClient,
    source: str | None = None,
) -> PollResult:
    """Acquire a token and fetch the tenant's report within :func:`poll_budget`.

    ``source`` overrides the configured one (an ``auto`` tenant that already switched).
    """
    source = source or tenant.source
    used_source = DETAILS_SOURCE if source == DETAILS_SOURCE else DEFAULT_SOURCE
    started = time.monotonic()
    budget = poll_budget(tenant, source)
    deadline = started + budget
    report: RegistrationReport | None = None
    failure: PollFailure | None = None
    tally = RequestTally()
    try:
        async with asyncio.timeout(budget + OUTER_GRACE_SECONDS):
            report, used_source = await _token_then_report(
                tenant, source, tokens, graph, deadline, tally
            )
    except (TokenError, GraphError) as err:
        failure = err.failure
    except TimeoutError:
        failure = PollFailure(TIMEOUT, f"poll did not finish within {budget:.1f}s")
    except Exception as err:  # noqa: BLE001 - a poll never raises: whatever failed is a result
        failure = unexpected_failure(err)
        log.error(
            "poll failed unexpectedly",
            extra={"tenant": tenant.name, "result": failure.result, "error": describe_error(err)},
        )
    return PollResult(
        result=SUCCESS if failure is None else failure.result,
        report=report,
        failure=failure,
        duration=time.monotonic() - started,
        finished_at=time.time(),
        tally=tally,
        source=used_source,
    )


def _auth_key(tenant: TenantConfig) -> tuple[object, ...]:
    """The settings that shape a tenant's MSAL app; a change means a new app."""
    return (tenant.tenant_id, tenant.client_id, tenant.credential, tenant.endpoints, tenant.timeout)


class TenantPoller:
    """Polls one tenant; owns its config, token source, settled source and last outcome."""

    def __init__(
        self, tenant: TenantConfig, transport: Transport, executor: Executor, graph: GraphClient
    ) -> None:
        self._transport = transport
        self._executor = executor
        self._graph = graph
        self._tenant = tenant
        self.tokens = TenantTokenSource(tenant, transport, executor)
        # For source auto: the report it settled on once the seed's report was gone.
        self._settled_source: str | None = None
        self._last_result: str | None = None
        self._has_report = False

    @property
    def tenant(self) -> TenantConfig:
        """The configuration the next poll uses."""
        return self._tenant

    @property
    def name(self) -> str:
        """The tenant's name (the ``tenant`` label)."""
        return self._tenant.name

    def reconfigure(self, tenant: TenantConfig) -> bool:
        """Use ``tenant`` from the next poll on; True if the polling interval changed."""
        old = self._tenant
        if _auth_key(old) != _auth_key(tenant):
            # The old MSAL app (and its cached tokens) goes with the old credential.
            self.tokens = TenantTokenSource(tenant, self._transport, self._executor)
        if old.source != tenant.source:
            self._settled_source = None
        self._tenant = tenant
        return (old.interval, old.jitter) != (tenant.interval, tenant.jitter)

    def forget_tokens(self) -> None:
        """Drop cached tokens, so the next poll asks the identity provider for a new one."""
        self.tokens.forget_tokens()

    async def poll(self) -> PollResult:
        """Poll the tenant once; the outcome is logged with the tenant's name. Never raises."""
        tenant, tokens = self._tenant, self.tokens
        result = await poll_tenant(tenant, tokens, self._graph, self._settled_source)
        result = replace(result, token_requests=tokens.take_token_requests())
        if tenant is self._tenant:  # not reconfigured meanwhile
            self._settle(result)
        self._log(result)
        self._last_result = result.result
        self._has_report = self._has_report or result.result == SUCCESS
        return result

    def _settle(self, result: PollResult) -> None:
        if self._tenant.source != AUTO_SOURCE or result.source != DETAILS_SOURCE:
            return
        if self._settled_source != DETAILS_SOURCE:
            log.warning(
                "Graph no longer serves getCredentialUserRegistrationCount for this tenant: "
                "switching to userRegistrationDetails (needs AuditLog.Read.All)",
                extra={"tenant": self.name},
            )
        self._settled_source = DETAILS_SOURCE

    def _log(self, result: PollResult) -> None:
        fields = {"tenant": self.name, "duration_seconds": round(result.duration, 3)}
        if result.result == SUCCESS:
            if self._last_result not in (None, SUCCESS):
                log.info("poll recovered", extra=fields)
            else:
                log.debug("poll succeeded", extra=fields)
        elif result.failure is not None:
            log.warning(
                f"poll failed: {result.failure.message}",
                extra={
                    **fields,
                    **result.failure.log_fields(),
                    "kept_last_values": self._has_report,
                },
            )
