"""Async Microsoft Graph client: retries, Retry-After, deadlines and result classes.

429 and 503 answers honour ``Retry-After`` (seconds or an HTTP date) and are retried while the
poll's deadline allows; other 5xx answers and connection errors are retried with exponential
backoff and full jitter, at most :data:`MAX_ATTEMPTS` attempts. Each outcome that is not a
report becomes a :class:`~exporter.failures.PollFailure`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from exporter.auth import AccessToken
from exporter.config import RateLimit, TenantConfig
from exporter.failures import (
    PARSE_ERROR,
    THROTTLED,
    TIMEOUT,
    PollFailure,
    classify_http_status,
    classify_transport_error,
    describe_error,
    is_retryable_status,
)
from exporter.ratelimit import GraphRateLimiter, RateLimitedError
from exporter.report import RegistrationReport, ReportParseError, parse_registration_report
from exporter.transport import HttpResponse, ResponseBodyError, Transport

log = logging.getLogger("exporter.graph")

REPORT_PATH = "/beta/reports/getCredentialUserRegistrationCount()"
MAX_PAGES = 10_000
# Graph may answer a page without rows now and then; this many in a row is a loop.
MAX_EMPTY_PAGES = 20
MAX_ATTEMPTS = 3
MIN_RETRY_SECONDS = 0.1
MAX_THROTTLED_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0


@dataclass(slots=True)
class RequestTally:
    """What one poll cost: Graph requests sent, throttled answers, time spent pacing."""

    graph_requests: int = 0
    throttled_responses: int = 0
    paced_seconds: float = 0.0


class GraphError(Exception):
    """A Graph call failed for good; ``failure`` says why."""

    def __init__(self, failure: PollFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # "²".isdigit() is true too, and float() refuses it
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return float(rng() * ceiling)


def graph_error_details(response: HttpResponse) -> tuple[str | None, str | None, str]:
    """Graph's error code, request id and message from an error answer (any of them may lack)."""
    request_id = response.headers.get("request-id") or response.headers.get("client-request-id")
    code: str | None = None
    message = f"HTTP {response.status_code}"
    try:
        document: Any = json.loads(response.body)
    except (ValueError, RecursionError):
        return code, request_id, message
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        text = error.get("message")
        if isinstance(text, str) and text:
            message = f"HTTP {response.status_code}: {text.splitlines()[0][:200]}"
        inner = error.get("innerError") or error.get("innererror")
        if isinstance(inner, dict) and not request_id:
            inner_id = inner.get("request-id")
            request_id = inner_id if isinstance(inner_id, str) else None
    return code, request_id, message


class _PageWalk:
    """Guards a walk along ``@odata.nextLink``: same host, no loop, an end in sight."""

    def __init__(self, host: str, what: str) -> None:
        self._host = host
        self._what = what
        self._seen: set[str] = set()
        self._empty_in_a_row = 0
        self.pages = 0

    def _fail(self, message: str) -> GraphError:
        return GraphError(PollFailure(PARSE_ERROR, f"{self._what}: {message}", 200))

    def check(self, url: str) -> None:
        """Before fetching ``url``: refuse another host and a link already followed."""
        if not url.startswith(f"{self._host}/"):
            # Never send the tenant's token to a host other than its Graph.
            raise self._fail("@odata.nextLink points away from Graph")
        if url in self._seen:
            raise self._fail(f"@odata.nextLink loops back to page {len(self._seen)} or earlier")
        self._seen.add(url)
        self.pages += 1
        if self.pages > MAX_PAGES:
            raise self._fail(f"more than {MAX_PAGES} pages")

    def after_page(self, document: Any, next_url: str | None) -> None:
        """After a page: pages with no rows that keep linking on are a loop too."""
        rows = document.get("value") if isinstance(document, dict) else None
        self._empty_in_a_row = 0 if rows else self._empty_in_a_row + 1
        if next_url is not None and self._empty_in_a_row >= MAX_EMPTY_PAGES:
            raise self._fail(f"{MAX_EMPTY_PAGES} pages in a row without rows, and still a link")


@dataclass(slots=True)
class _Attempts:
    """The retry state of one Graph request: what failed so far, and what to do next."""

    failures: int = 0
    throttled: int = 0
    # The failure that made us retry: if the retry is then cut short by the poll's deadline,
    # that failure, not the deadline, is what the poll reports.
    retried: PollFailure | None = None

    def after_transport_error(
        self, err: BaseException, client_request_id: str, near_deadline: bool
    ) -> tuple[float, PollFailure]:
        """(delay before the retry, failure) after a connection error; raise to give up."""
        result = classify_transport_error(err)
        self.failures += 1
        failure = PollFailure(
            result, f"Graph request failed: {describe_error(err)}", request_id=client_request_id
        )
        if self.retried is not None and result == TIMEOUT and near_deadline:
            raise GraphError(self.retried)
        if result == TIMEOUT or self.failures >= MAX_ATTEMPTS:
            raise GraphError(failure)
        return backoff_delay(self.failures), failure

    def after_answer(
        self, response: HttpResponse, client_request_id: str, tally: RequestTally
    ) -> tuple[float, PollFailure]:
        """(delay before the retry, failure) after a non-200 answer; raise to give up."""
        status = response.status_code
        code, request_id, message = graph_error_details(response)
        failure = PollFailure(
            classify_http_status(status),
            message,
            http_status=status,
            error_code=code,
            request_id=request_id or client_request_id,
        )
        if not is_retryable_status(status):
            raise GraphError(failure)
        if status in (429, 503):
            self.throttled += 1
            tally.throttled_responses += 1
            if self.throttled >= MAX_THROTTLED_ATTEMPTS:
                raise GraphError(failure)
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            return (
                retry_after if retry_after is not None else backoff_delay(self.throttled)
            ), failure
        self.failures += 1
        if self.failures >= MAX_ATTEMPTS:
            raise GraphError(failure)
        return backoff_delay(self.failures), failure


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
        document, request_id = await self._get_json(tenant, url, token, deadline, tally)
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
        add_page: Callable[[Any], str | None],
        what: str,
    ) -> int:
        """GET ``url`` and every ``@odata.nextLink`` after it; ``add_page`` takes each page.

        ``request`` is (token, deadline, tally). Pages are fetched one after the other and
        handed over as they come, so memory stays flat whatever the size; each page is a
        request like any other (rate limits, retries, the poll's deadline), and any failed
        page fails the whole walk. Returns the number of pages.
        """
        token, deadline, tally = request
        walk = _PageWalk(tenant.endpoints.graph_host, what)
        next_url: str | None = url
        while next_url is not None:
            walk.check(next_url)
            document, request_id = await self._get_json(tenant, next_url, token, deadline, tally)
            try:
                next_url = add_page(document)
            except ReportParseError as err:
                message = f"unusable {what} page {walk.pages}: {err}"
                raise GraphError(PollFailure(PARSE_ERROR, message, 200, None, request_id)) from None
            walk.after_page(document, next_url)
        return walk.pages

    async def _get_json(
        self,
        tenant: TenantConfig,
        url: str,
        token: AccessToken,
        deadline: float,
        tally: RequestTally,
    ) -> tuple[Any, str]:
        """GET ``url`` and decode its JSON, with retries; return (document, request id)."""
        attempts = _Attempts()
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
                    return _decode_json(response, client_request_id)
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


def _decode_json(response: HttpResponse, client_request_id: str) -> tuple[Any, str]:
    request_id = response.headers.get("request-id") or client_request_id
    try:
        return json.loads(response.body), request_id
    except (ValueError, RecursionError):  # RecursionError: arrays nested a few thousand deep
        content_type = response.headers.get("content-type", "unknown")
        raise GraphError(
            PollFailure(
                PARSE_ERROR,
                f"Graph answered 200 with a body that is not JSON (content-type {content_type})",
                http_status=200,
                request_id=request_id,
            )
        ) from None
