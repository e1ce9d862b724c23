"""Async Microsoft Graph client: retries, Retry-After, deadlines and result classes.

429 and 503 answers honour ``Retry-After`` (seconds or an HTTP date) and are retried while the
poll's deadline allows; other 5xx answers and connection errors are retried with exponential
backoff and full jitter, at most :data:`MAX_ATTEMPTS` attempts. Each outcome that is not a
report becomes a :class:`~exporter.graph.failures.PollFailure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, NamedTuple, TypeVar

import httpx

from exporter.config.model import RateLimit, TenantConfig
from exporter.graph.admission import Admission, Ticket
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
    describe_error,
)
from exporter.graph.pacing import GraphRateLimiter, RateLimitedError, TenantLimiter
from exporter.graph.service_budget import ServiceBudget, request_cost
from exporter.graph.transport import HttpResponse, ResponseBodyError, Transport
from exporter.reports.directory import Page
from exporter.reports.registration import (
    RegistrationReport,
    ReportParseError,
    parse_registration_report,
)

T = TypeVar("T")


class GraphRequest(NamedTuple):
    """What each Graph request of one poll carries: the token, the poll's deadline (a
    ``time.monotonic()`` value), the poll's tally of requests, and the tenant's logger (None:
    this module's, for a request of no tenant's poll)."""

    token: AccessToken
    deadline: float
    tally: RequestTally
    log: logging.LoggerAdapter[logging.Logger] | None = None
    # The poll's admission ticket, away while it waits on a shared budget or before a retry
    # (None: a request of no poll).
    ticket: Ticket | None = None


# The budget a request is paced by: Graph's identity and access reports limits, the identity
# and access service's resource units (roles, groups, policies), or the 1 request per second
# per tenant of Conditional Access.
REPORTS, DIRECTORY, CONDITIONAL_ACCESS = "reports", "directory", "conditional_access"
# At most this often, the pacing windows as good as new are dropped (a tenant's are, between
# its polls: some 3 KB a tenant).
SWEEP_SECONDS = 30.0


def _named(tenant: TenantConfig) -> logging.LoggerAdapter[logging.Logger]:
    """This module's logger, naming ``tenant`` in each line (a request of no tenant's poll)."""
    return logging.LoggerAdapter(log, {"tenant": tenant.name})


def _away(request: GraphRequest) -> AbstractContextManager[None]:
    """While the request's poll waits (a shared budget, a retry's delay): its ticket away."""
    return request.ticket.away() if request.ticket is not None else contextlib.nullcontext()


def requested_top(url: str) -> int | None:
    """The ``$top`` a URL asks for (None: it asks for none)."""
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("$top", [])
    return int(values[0]) if values and values[0].isdigit() else None


def _throttle_percentage(response: HttpResponse) -> float | None:
    """Graph's ``x-ms-throttle-limit-percentage`` (sent from 0.8 of a limit on), if any."""
    text = response.headers.get("x-ms-throttle-limit-percentage")
    try:
        return float(text) if text else None
    except ValueError:
        return None


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
        service: ServiceBudget | None = None,
        admission: Admission | None = None,
        conditional_access: TenantLimiter | None = None,
    ) -> None:
        self._transport = transport
        # When a poll may start (exporter.graph.admission); any time unless given one.
        self._admission = admission or Admission(None)
        self._limiter = limiter
        self._sleep = sleep
        # Directory requests (roles, groups, policies) are paced by the service's own budget.
        self.service = service or ServiceBudget()
        # Conditional Access reads: Graph's 1 request per second per tenant, whatever the app.
        self.conditional_access = conditional_access or TenantLimiter()
        self._next_sweep = 0.0

    def admitted(self) -> AbstractAsyncContextManager[Ticket]:
        """Wait until a poll may start (:mod:`exporter.graph.admission`); its ticket."""
        return self._admission.ticket()

    def note_tenant_size(self, tenant: TenantConfig, users: int) -> None:
        """The tenant's size, learnt from its report: it sets its directory budget."""
        self.service.note_size(tenant.client_id, tenant.tenant_id, users)

    def use_rate_limits(
        self,
        per_app_per_tenant: RateLimit,
        per_app: RateLimit,
        apps: set[tuple[str, str]],
        app_share: float = 1.0,
    ) -> None:
        """Pace to these limits from now on, for the (client_id, tenant_id) pairs in ``apps``;
        directory requests to ``app_share`` of each app's service budget (a replica's part).

        Unchanged limits keep their windows (requests just sent still count); changed limits
        start a new limiter. Windows of pairs no longer configured are dropped once idle.
        """
        self.service.use(apps, app_share)
        self.conditional_access.forget({tenant for _, tenant in apps})
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
        request = GraphRequest(token, deadline, tally)
        return await self.get_document(tenant, url, request, parse_registration_report, "report")

    async def get_document(
        self,
        tenant: TenantConfig,
        url: str,
        request: GraphRequest,
        parse: Callable[[Any], T],
        what: str,
        service: str = REPORTS,
    ) -> T:
        """GET ``url`` (one JSON document) and ``parse`` it; ReportParseError is a parse_error.

        ``service``: :data:`REPORTS`, :data:`DIRECTORY` or :data:`CONDITIONAL_ACCESS`, the
        budget the request is paced by.
        """
        response, client_request_id = await self._get_ok(tenant, url, request, service)
        document, request_id = decode_json(response, client_request_id)
        try:
            return parse(document)
        except ReportParseError as err:
            message = f"unusable {what}: {err}"
            raise GraphError(PollFailure(PARSE_ERROR, message, 200, None, request_id)) from None

    async def get_pages(
        self,
        tenant: TenantConfig,
        url: str,
        request: GraphRequest,
        add_page: Callable[[bytes], Page],
        what: str,
        service: str = REPORTS,
    ) -> int:
        """GET ``url`` and every ``@odata.nextLink`` after it; ``add_page`` takes each page.

        ``request`` is the poll's :class:`GraphRequest`. Pages are fetched one after the other and
        handed over as they come, as bytes (the consumer decodes them into the types it
        counts), so memory stays flat whatever the size; each page is a request like any other
        (rate limits, retries, the poll's deadline), and any failed page fails the whole walk.
        Returns the number of pages.
        """
        walk = PageWalk(tenant.endpoints.graph_host, what, requested_top(url))
        next_url: str | None = url
        while next_url is not None:
            walk.check(next_url)
            response, client_request_id = await self._get_ok(tenant, next_url, request, service)
            request_id = request_id_of(response, client_request_id)
            try:
                page = add_page(response.body)
            except ReportParseError as err:
                message = f"unusable {what} page {walk.pages}: {err}"
                raise GraphError(PollFailure(PARSE_ERROR, message, 200, None, request_id)) from None
            next_url = page.next_link
            walk.after_page(page.rows, next_url, page.new)
        return walk.pages

    async def _get_ok(
        self,
        tenant: TenantConfig,
        url: str,
        request: GraphRequest,
        service: str = REPORTS,
    ) -> tuple[HttpResponse, str]:
        """GET ``url`` until a 200, with retries; return (response, our client-request-id)."""
        deadline, tally = request.deadline, request.tally
        attempts = Attempts()
        while True:
            client_request_id = str(uuid.uuid4())
            try:
                response = await self._send(tenant, url, request, client_request_id, service)
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
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as err:
                # Only a link Graph sent (@odata.nextLink) can be one a request cannot follow.
                message = f"a link from Graph that cannot be requested: {describe_error(err)}"
                raise GraphError(PollFailure(PARSE_ERROR, message)) from None
            except (httpx.HTTPError, OSError, TimeoutError) as err:
                delay, failure = attempts.after_transport_error(
                    err, client_request_id, deadline - time.monotonic() < tenant.timeout
                )
            else:
                if response.status_code == 200:
                    return response, client_request_id
                delay, failure = attempts.after_answer(response, client_request_id, tally)
            await self._wait(delay, request, failure, request.log or _named(tenant))
            attempts.retried = failure

    def _slot(
        self, tenant: TenantConfig, url: str, deadline: float, service: str
    ) -> AbstractAsyncContextManager[float]:
        """A slot in the budget of the request's service."""
        now = time.monotonic()
        if now >= self._next_sweep:  # windows as good as new go: bytes, not state
            self._next_sweep = now + SWEEP_SECONDS
            self._limiter.sweep()
            self.service.sweep()
            self.conditional_access.sweep()
        if service == CONDITIONAL_ACCESS:
            return self.conditional_access.slot(tenant.tenant_id, deadline)
        if service == DIRECTORY:
            units = request_cost("GET", url)
            return self.service.slot(tenant.client_id, tenant.tenant_id, units, deadline)
        return self._limiter.slot(tenant.client_id, tenant.tenant_id, deadline)

    async def _send(
        self,
        tenant: TenantConfig,
        url: str,
        request: GraphRequest,
        client_request_id: str,
        service: str,
    ) -> HttpResponse:
        """One GET inside a pacing slot, bounded by the request timeout and the deadline."""
        token, deadline, tally = request.token, request.deadline, request.tally
        async with contextlib.AsyncExitStack() as slot:
            # Waiting on the reports' or the directory's budget (which the app's other tenants
            # may hold), the poll lets its place in the admission go. Conditional Access is
            # paced per tenant, at most a second, by this tenant's own reads: the poll keeps it
            # (letting go, every poll due would start within that second and hold its bytes).
            with _away(request) if service != CONDITIONAL_ACCESS else contextlib.nullcontext():
                waited = await slot.enter_async_context(self._slot(tenant, url, deadline, service))
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
            response = await self._transport.request(
                "GET", url, timeout=min(tenant.timeout, remaining), headers=headers
            )
        load = _throttle_percentage(response)
        if load is not None:
            self.service.note_load(tenant.client_id, tenant.tenant_id, load)
        return response

    async def _wait(
        self,
        delay: float,
        request: GraphRequest,
        failure: PollFailure,
        tenant_log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        """Sleep before a retry (the poll not under way meanwhile), or give up with
        ``failure`` if the request's deadline comes first.

        A retry needs some time of its own after the delay: one that could only start at the
        deadline would end as a timeout and hide the real failure.
        """
        if time.monotonic() + delay + MIN_RETRY_SECONDS >= request.deadline:
            raise GraphError(failure)
        tenant_log.debug(
            "retrying Graph request",
            extra={"delay_seconds": round(delay, 3), **failure.log_fields()},
        )
        with _away(request):
            await self._sleep(delay)
