"""One poll of one tenant: token, Graph report, outcome — never an exception."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from exporter.auth import TenantTokenSource, TokenError
from exporter.config import TenantConfig
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


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll produced: a report on success, a failure otherwise."""

    result: str
    report: RegistrationReport | None
    failure: PollFailure | None
    duration: float
    finished_at: float
    tally: RequestTally = field(default_factory=RequestTally)


def poll_budget(tenant: TenantConfig) -> float:
    """Hard overall deadline of one poll, in seconds."""
    return min(tenant.interval * INTERVAL_SHARE, tenant.timeout * TIMEOUTS_PER_POLL)


async def _token_then_report(
    tenant: TenantConfig,
    tokens: TenantTokenSource,
    graph: GraphClient,
    deadline: float,
    tally: RequestTally,
) -> RegistrationReport:
    """Fetch the report; if Graph refuses a reused token (401), drop it and try once more."""
    for attempt in (1, 2):
        token = await tokens.get_token()
        try:
            return await graph.fetch_registration_report(tenant, token, deadline, tally)
        except GraphError as err:
            refused = err.failure.result == AUTH_ERROR and err.failure.http_status == 401
            if not refused:
                raise
            tokens.forget_tokens()  # revoked, or expired early: the next token is a new one
            if attempt == 2 or time.monotonic() >= deadline:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def poll_tenant(
    tenant: TenantConfig, tokens: TenantTokenSource, graph: GraphClient
) -> PollResult:
    """Acquire a token and fetch the tenant's report within :func:`poll_budget`."""
    started = time.monotonic()
    budget = poll_budget(tenant)
    deadline = started + budget
    report: RegistrationReport | None = None
    failure: PollFailure | None = None
    tally = RequestTally()
    try:
        async with asyncio.timeout(budget + OUTER_GRACE_SECONDS):
            report = await _token_then_report(tenant, tokens, graph, deadline, tally)
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
    )
