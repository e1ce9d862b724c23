"""One poll of one tenant: token, Graph report, outcome — never an exception."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from exporter.auth import AccessToken, TenantTokenSource, TokenError
from exporter.config import AUTO_SOURCE, DEFAULT_SOURCE, DETAILS_SOURCE, TenantConfig
from exporter.failures import AUTH_ERROR, SUCCESS, TIMEOUT, PollFailure
from exporter.graph import GraphClient, GraphError, RequestTally
from exporter.report import RegistrationReport

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
        return await graph.fetch_registration_details(tenant, token, deadline, tally), source
    try:
        report = await graph.fetch_registration_report(tenant, token, deadline, tally)
    except GraphError as err:
        if source != AUTO_SOURCE or not seed_report_is_gone(err.failure):
            raise
        report = await graph.fetch_registration_details(tenant, token, deadline, tally)
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
    return PollResult(
        result=SUCCESS if failure is None else failure.result,
        report=report,
        failure=failure,
        duration=time.monotonic() - started,
        finished_at=time.time(),
        tally=tally,
        source=used_source,
    )
