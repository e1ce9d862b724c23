"""Async Microsoft Graph client: retries, Retry-After, deadlines and result classes.

429 and 503 answers honour ``Retry-After`` (seconds or an HTTP date) and are retried while the
poll's deadline allows; other 5xx answers and connection errors are retried with exponential
backoff and full jitter, at most :data:`MAX_ATTEMPTS` attempts. Each outcome that is not a
report becomes a :class:`~exporter.graph.failures.PollFailure`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from exporter.config.model import RateLimit, TenantConfig
from exporter.graph.answers import (
    MIN_RETRY_SECONDS,
    Attempts,
    GraphError,
    PageWalk,
    RequestTally,
    decode_json,
    request_id_of,
)
from exporter.graph.auth import AccessToken
from exporter.graph.failures import (
    PARSE_ERROR,
    THROTTLED,
    TIMEOUT,
    PollFailure,
)
from exporter.graph.pacing import GraphRateLimiter, RateLimitedError
from exporter.graph.transport import HttpResponse, ResponseBodyError, Transport
from exporter.reports.directory import Page
from exporter.reports.registration import (
    RegistrationReport,
    ReportParseError,
    parse_registration_report,
)

log = logging.getLogger("exporter.graph")

REPORT_PATH = "/beta/reports/getCredentialUserRegistrationCount()"


class GraphClient:
    """Calls Graph's registration reports over the shared :class:`Transport`.

    Every request, retries included, first takes a slot from the rate limiter it was built
    with; a reload changes the limits through :meth:`use_rate_limits` only.
    """

    def __init__(
        self,
        transport: Transport,
        limiter: GraphRateLimiter,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._transport = transport
        self._limiter = limiter
        self._sleep = sleep

    def use_rate_limits(
        self, per_app_per_tenant: RateLimit, per_app: RateLimit, apps: set[tuple[str, str]]
    ) -> None:
        """Pace to these limits from now on, for the (client_id, tenant_id) pairs in ``apps``.

        Unchanged limits keep their windows (requests just sent still count); changed limits
        start a new limiter. Windows of pairs no longer configured are dropped once idle.
        """
        limiter = self._limiter
        if (limiter.per_app_per_tenant, limiter.per_app) != (per_app_per_tenant, per_app):
            self._limiter = GraphRateLimiter(per_app_per_tenant, per_app)
        else:
            limiter.forget(apps)

    async def fetch_registration_report(
        self,
        tenant: TenantConfig,
        token: AccessToken,
        deadline: float,
        tally: RequestTally,
    ) -> RegistrationReport:
        """GET getCredentialUserRegistrationCount, retrying within ``deadline`` (monotonic)."""
        url = f"{tenant.endpoints.graph_host}{REPORT_PATH}"
        response, client_request_id = await self._get_ok(tenant, url, token, deadline, tally)
        document, request_id = decode_json(response, client_request_id)
        try:
            return parse_registration_report(document)
        except ReportParseError as err:
            raise GraphError(
                PollFailure(
                    PARSE_ERROR, f"unusable report: {err}", http_status=200, request_id=request_id
                )
            ) from None

    async def get_pages(
        self,
        tenant: TenantConfig,
        url: str,
        request: tuple[AccessToken, float, RequestTally],
        add_page: Callable[[bytes], Page],
        what: str,
    ) -> int:
        """GET ``url`` and every ``@odata.nextLink`` after it; ``add_page`` takes each page.

        ``request`` is (token, deadline, tally). Pages are fetched one after the other and
        handed over as they come, as bytes (the consumer decodes them into the types it
        counts), so memory stays flat whatever the size; each page is a request like any other
        (rate limits, retries, the poll's deadline), and any failed page fails the whole walk.
        Returns the number of pages.
        """
        token, deadline, tally = request
        walk = PageWalk(tenant.endpoints.graph_host, what)
        next_url: str | None = url
        while next_url is not None:
            walk.check(next_url)
            response, client_request_id = await self._get_ok(
                tenant, next_url, token, deadline, tally
            )
            request_id = request_id_of(response, client_request_id)
            try:
                next_url, rows = add_page(response.body)
            except ReportParseError as err:
                message = f"unusable {what} page {walk.pages}: {err}"
                raise GraphError(PollFailure(PARSE_ERROR, message, 200, None, request_id)) from None
            walk.after_page(rows, next_url)
        return walk.pages

    async def _get_ok(
        self,
        tenant: TenantConfig,
        url: str,
        token: AccessToken,
        deadline: float,
        tally: RequestTally,
    ) -> tuple[HttpResponse, str]:
        """GET ``url`` until a 200, with retries; return (response, our client-request-id)."""
        attempts = Attempts()
        while True:
            client_request_id = str(uuid.uuid4())
            try:
                response = await self._send(tenant, url, token, client_request_id, deadline, tally)
            except RateLimitedError as err:
                raise GraphError(attempts.retried or PollFailure(THROTTLED, str(err))) from None
            except GraphError:
                if attempts.retried is not None:
                    raise GraphError(attempts.retried) from None
                raise
            except ResponseBodyError as err:
                raise GraphError(
                    PollFailure(PARSE_ERROR, str(err), request_id=client_request_id)
                ) from None
            except (httpx.HTTPError, OSError, TimeoutError) as err:
                delay, failure = attempts.after_transport_error(
                    err, client_request_id, deadline - time.monotonic() < tenant.timeout
                )
            else:
                if response.status_code == 200:
                    return response, client_request_id
                delay, failure = attempts.after_answer(response, client_request_id, tally)
            await self._wait(delay, deadline, failure, tenant.name)
            attempts.retried = failure

    async def _send(
        self,
        tenant: TenantConfig,
        url: str,
        token: AccessToken,
        client_request_id: str,
        deadline: float,
        tally: RequestTally,
    ) -> HttpResponse:
        """One GET inside a rate-limit slot, bounded by the request timeout and the deadline."""
        async with self._limiter.slot(tenant.client_id, tenant.tenant_id, deadline) as waited:
            tally.paced_seconds += waited
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GraphError(PollFailure(TIMEOUT, "poll deadline passed before Graph answered"))
            tally.graph_requests += 1
            headers = {
                "Authorization": f"Bearer {token.value}",
                "Accept": "application/json",
                "client-request-id": client_request_id,
            }
            return await self._transport.request(
                "GET", url, timeout=min(tenant.timeout, remaining), headers=headers
            )

    async def _wait(self, delay: float, deadline: float, failure: PollFailure, tenant: str) -> None:
        """Sleep before a retry, or give up with ``failure`` if the deadline comes first.

        A retry needs some time of its own after the delay: one that could only start at the
        deadline would end as a timeout and hide the real failure.
        """
        if time.monotonic() + delay + MIN_RETRY_SECONDS >= deadline:
            raise GraphError(failure)
        log.debug(
            "retrying Graph request",
            extra={"tenant": tenant, "delay_seconds": round(delay, 3), **failure.log_fields()},
        )
        await self._sleep(delay)
