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
            token = await tokens.get_token()
            report = await graph.fetch_registration_report(tenant, token, deadline, tally)
    except TokenError as err:
        failure = err.failure
    except GraphError as err:
        failure = err.failure
        if failure.result == AUTH_ERROR and failure.http_status == 401:
            tokens.forget_tokens()
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
