"""Pure: what Graph's answers mean for a request and a poll.

``Retry-After`` (seconds or an HTTP date), the error code, request id and message of an error
answer, the JSON of a 200, the retry decision after each attempt, and the guard on a walk along
``@odata.nextLink``. No I/O: :mod:`exporter.graph.client` sends the requests and asks these.
"""

from __future__ import annotations

import email.utils
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import msgspec

from exporter.graph.failures import (
    PARSE_ERROR,
    TIMEOUT,
    PollFailure,
    classify_http_status,
    classify_transport_error,
    describe_error,
    is_retryable_status,
)
from exporter.graph.transport import HttpResponse

MAX_PAGES = 10_000
# Graph may answer a page without rows now and then; this many in a row is a loop.
MAX_EMPTY_PAGES = 20
# Graph's links are a few hundred characters; a longer one is not worth following.
MAX_LINK_LENGTH = 8192
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
        document: Any = msgspec.json.decode(response.body)
    except (msgspec.DecodeError, RecursionError):
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


class PageWalk:
    """Guards a walk along ``@odata.nextLink``: same host, no loop, an end in sight."""

    def __init__(self, host: str, what: str, top: int | None = None) -> None:
        self._host = host
        self._what = what
        self._top = top  # the page size asked for ($top): a page holding more is refused
        self._seen: set[bytes] = set()  # digests of the links followed, not the links
        self._empty_in_a_row = 0
        self.pages = 0

    def _fail(self, message: str) -> GraphError:
        return GraphError(PollFailure(PARSE_ERROR, f"{self._what}: {message}", 200))

    def check(self, url: str) -> None:
        """Before fetching ``url``: refuse another host and a link already followed."""
        if not url.startswith(f"{self._host}/"):
            # Never send the tenant's token to a host other than its Graph.
            raise self._fail("@odata.nextLink points away from Graph")
        if len(url) > MAX_LINK_LENGTH:
            raise self._fail(f"@odata.nextLink longer than {MAX_LINK_LENGTH} characters")
        digest = hashlib.blake2b(url.encode("utf-8", "replace"), digest_size=16).digest()
        if digest in self._seen:
            raise self._fail(f"@odata.nextLink loops back to page {len(self._seen)} or earlier")
        self._seen.add(digest)
        self.pages += 1
        if self.pages > MAX_PAGES:
            raise self._fail(f"more than {MAX_PAGES} pages")

    def after_page(self, rows: int, next_url: str | None, new: int | None = None) -> None:
        """After a page of ``rows`` (``new`` of them new to the walk, None: all): pages with
        nothing new that keep linking on, under ever-new links, are a loop too, and a page
        holding more rows than asked for is refused (memory follows the page size)."""
        if self._top is not None and rows > self._top:
            raise self._fail(f"a page of {rows} rows, more than the {self._top} asked for")
        fresh = rows if new is None else new
        self._empty_in_a_row = 0 if fresh else self._empty_in_a_row + 1
        if next_url is not None and self._empty_in_a_row >= MAX_EMPTY_PAGES:
            raise self._fail(f"{MAX_EMPTY_PAGES} pages in a row with nothing new, and still a link")


@dataclass(slots=True)
class Attempts:
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
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None:  # remembered past this poll (exporter.polling.retries)
                failure = replace(failure, retry_after=retry_after)
            if self.throttled >= MAX_THROTTLED_ATTEMPTS:
                raise GraphError(failure)
            return (
                retry_after if retry_after is not None else backoff_delay(self.throttled)
            ), failure
        self.failures += 1
        if self.failures >= MAX_ATTEMPTS:
            raise GraphError(failure)
        return backoff_delay(self.failures), failure


def request_id_of(response: HttpResponse, client_request_id: str) -> str:
    """The id to quote for an answer: Graph's ``request-id``, else the one we sent."""
    return response.headers.get("request-id") or client_request_id


def decode_json(response: HttpResponse, client_request_id: str) -> tuple[Any, str]:
    """A 200's JSON and its request id; a body that is not JSON is a parse_error.

    msgspec, as for the pages (they decode into typed rows, see :mod:`exporter.reports.details`).
    """
    request_id = request_id_of(response, client_request_id)
    try:
        return msgspec.json.decode(response.body), request_id
    except (msgspec.DecodeError, RecursionError):  # RecursionError: arrays nested deep
        content_type = response.headers.get("content-type", "unknown")
        raise GraphError(
            PollFailure(
                PARSE_ERROR,
                f"Graph answered 200 with a body that is not JSON (content-type {content_type})",
                http_status=200,
                request_id=request_id,
            )
        ) from None
