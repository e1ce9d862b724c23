"""Graph client edge cases with respx (the end-to-end path is covered against the simulator)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import gzip
import json
import time

import httpx
import pytest
import respx

from exporter.config.model import CloudEndpoints, RateLimit
from exporter.graph.admission import Admission
from exporter.graph.answers import (
    BACKOFF_BASE_SECONDS,
    MAX_THROTTLED_ATTEMPTS,
    Attempts,
    GraphError,
    RequestTally,
    backoff_delay,
    decode_json,
    graph_error_details,
    parse_retry_after,
)
from exporter.graph.auth import AccessToken
from exporter.graph.client import CONDITIONAL_ACCESS, REPORT_PATH, GraphClient, GraphRequest
from exporter.graph.failures import (
    AUTH_ERROR,
    HTTP_ERROR,
    NETWORK_ERROR,
    PARSE_ERROR,
    THROTTLED,
    TIMEOUT,
    PollFailure,
    classify_http_status,
    classify_oauth_error,
    classify_transport_error,
)
from exporter.graph.pacing import GraphRateLimiter, TenantLimiter
from exporter.graph.transport import HttpResponse, Transport, build_ssl_context
from tests.conftest import tenant_config as metrics_tenant

HOST = "https://graph.example"
URL = f"{HOST}{REPORT_PATH}"
REPORT = {
    "value": [
        {
            "totalUserCount": 10,
            "userRegistrationCounts": [
                {"userRegistrationStatus": "registered", "userRegistrationCount": 4}
            ],
        }
    ]
}
TOKEN = AccessToken("test-token-value")


class Sleeps:
    """Records the delays the client asks for instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


TENANT = dataclasses.replace(
    metrics_tenant(),
    endpoints=CloudEndpoints("https://login.example", HOST),
    timeout=5.0,
)
UNLIMITED = GraphRateLimiter(RateLimit(10_000, 1.0), RateLimit(10_000, 1.0))


async def fetch(sleeps: Sleeps, budget: float = 30.0, tally: RequestTally | None = None) -> object:
    transport = Transport(build_ssl_context(None), concurrency=4)
    try:
        client = GraphClient(transport, UNLIMITED, sleep=sleeps)
        deadline = time.monotonic() + budget
        return await client.fetch_registration_report(
            TENANT, TOKEN, deadline, tally if tally is not None else RequestTally()
        )
    finally:
        await transport.aclose()


def graph_error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": "nope", "innerError": {"request-id": "rid-1"}}}
    return httpx.Response(status, json=body, headers=headers)


@respx.mock
async def test_429_honours_retry_after_seconds_then_succeeds() -> None:
    route = respx.get(URL).mock(
        side_effect=[
            graph_error(429, "TooManyRequests", {"Retry-After": "7"}),
            httpx.Response(200, json=REPORT),
        ]
    )
    sleeps = Sleeps()
    tally = RequestTally()
    report = await fetch(sleeps, tally=tally)
    assert report.total_users == 10  # type: ignore[attr-defined]
    assert sleeps.delays == [7.0]
    assert (tally.graph_requests, tally.throttled_responses) == (2, 1)
    assert route.call_count == 2
    assert route.calls[0].request.headers["Authorization"] == "Bearer test-token-value"


@respx.mock
async def test_429_honours_retry_after_as_http_date() -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    respx.get(URL).mock(
        side_effect=[
            graph_error(429, "TooManyRequests", {"Retry-After": when}),
            httpx.Response(200, json=REPORT),
        ]
    )
    sleeps = Sleeps()
    await fetch(sleeps)
    assert len(sleeps.delays) == 1
    assert 17 <= sleeps.delays[0] <= 20


@respx.mock
async def test_retry_after_past_the_deadline_gives_up_as_throttled_without_waiting() -> None:
    route = respx.get(URL).mock(
        return_value=graph_error(429, "TooManyRequests", {"Retry-After": "120"})
    )
    sleeps = Sleeps()
    with pytest.raises(GraphError) as caught:
        await fetch(sleeps, budget=10)
    failure = caught.value.failure
    assert (failure.result, failure.http_status, failure.error_code, failure.request_id) == (
        THROTTLED,
        429,
        "TooManyRequests",
        "rid-1",
    )
    assert sleeps.delays == []
    assert route.call_count == 1


@respx.mock
async def test_503_retries_after_retry_after_then_succeeds() -> None:
    respx.get(URL).mock(
        side_effect=[
            graph_error(503, "ServiceUnavailable", {"Retry-After": "2"}),
            httpx.Response(200, json=REPORT),
        ]
    )
    sleeps = Sleeps()
    await fetch(sleeps)
    assert sleeps.delays == [2.0]


@respx.mock
async def test_500_is_retried_at_most_three_attempts_with_backoff() -> None:
    route = respx.get(URL).mock(return_value=graph_error(500, "InternalServerError"))
    sleeps = Sleeps()
    with pytest.raises(GraphError) as caught:
        await fetch(sleeps)
    assert caught.value.failure.result == HTTP_ERROR
    assert route.call_count == 3
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.5 and 0 <= sleeps.delays[1] <= 1.0


@respx.mock
async def test_connection_errors_are_retried_then_network_error() -> None:
    route = respx.get(URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(GraphError) as caught:
        await fetch(Sleeps())
    assert caught.value.failure.result == NETWORK_ERROR
    assert route.call_count == 3


@respx.mock
async def test_a_reset_then_success_recovers_within_the_poll() -> None:
    respx.get(URL).mock(
        side_effect=[httpx.ReadError("connection reset"), httpx.Response(200, json=REPORT)]
    )
    report = await fetch(Sleeps())
    assert report.total_users == 10  # type: ignore[attr-defined]


@respx.mock
async def test_timeouts_are_not_retried() -> None:
    route = respx.get(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(GraphError) as caught:
        await fetch(Sleeps())
    assert caught.value.failure.result == TIMEOUT
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("status", "code", "result"),
    [
        (401, "InvalidAuthenticationToken", AUTH_ERROR),
        (403, "Authentication_ApplicationHasNoReadAuditLogDataAccess", AUTH_ERROR),
        (404, "UnknownResource", HTTP_ERROR),
        (400, "BadRequest", HTTP_ERROR),
    ],
)
@respx.mock
async def test_client_errors_are_final_and_keep_graphs_error_code(
    status: int, code: str, result: str
) -> None:
    route = respx.get(URL).mock(return_value=graph_error(status, code, {"request-id": "hdr-rid"}))
    with pytest.raises(GraphError) as caught:
        await fetch(Sleeps())
    failure = caught.value.failure
    assert (failure.result, failure.http_status, failure.error_code, failure.request_id) == (
        result,
        status,
        code,
        "hdr-rid",
    )
    assert route.call_count == 1


@respx.mock
async def test_bodies_over_one_mebibyte_are_refused() -> None:
    respx.get(URL).mock(return_value=httpx.Response(200, content=b" " * (1024 * 1024 + 1)))
    with pytest.raises(GraphError) as caught:
        await fetch(Sleeps())
    assert caught.value.failure.result == PARSE_ERROR


@respx.mock
async def test_gzip_bombs_are_refused_and_gzip_bodies_are_read() -> None:
    respx.get(URL).mock(
        side_effect=[
            httpx.Response(
                200,
                content=gzip.compress(json.dumps(REPORT).encode()),
                headers={"Content-Encoding": "gzip"},
            ),
            httpx.Response(
                200,
                content=gzip.compress(b" " * (4 * 1024 * 1024)),
                headers={"Content-Encoding": "gzip"},
            ),
        ]
    )
    report = await fetch(Sleeps())
    assert report.total_users == 10  # type: ignore[attr-defined]
    with pytest.raises(GraphError) as caught:
        await fetch(Sleeps())
    assert caught.value.failure.result == PARSE_ERROR


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"value": [', "application/json", "not JSON"),
        (b"<html>error</html>", "text/html", "content-type text/html"),
        (b'{"value": [{"id": "x"}]}', "application/json", "totalUserCount is missing"),
    ],
)
@respx.mock
async def test_unusable_200_answers_are_parse_errors(
    body: bytes, content_type: str, message: str
) -> None:
    respx.get(URL).mock(
        return_value=httpx.Response(200, content=body, headers={"Content-Type": content_type})
    )
    with pytest.raises(GraphError) as caught:
        await fetch(Sleeps())
    assert caught.value.failure.result == PARSE_ERROR
    assert message in caught.value.failure.message


def test_parse_retry_after() -> None:
    now = time.time()
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(
        email.utils.formatdate(now + 60, usegmt=True), now=now
    ) == pytest.approx(60, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0


def test_backoff_grows_and_stays_capped() -> None:
    assert backoff_delay(1, rng=lambda: 1.0) == 0.5
    assert backoff_delay(3, rng=lambda: 1.0) == 2.0
    assert backoff_delay(30, rng=lambda: 1.0) == 30.0
    assert backoff_delay(3, rng=lambda: 0.0) == 0.0


def test_result_classification() -> None:
    assert classify_http_status(401) == AUTH_ERROR
    assert classify_http_status(403) == AUTH_ERROR
    assert classify_http_status(429) == THROTTLED
    assert classify_http_status(503) == HTTP_ERROR
    assert classify_http_status(404) == HTTP_ERROR
    assert classify_transport_error(httpx.ConnectTimeout("x")) == TIMEOUT
    assert classify_transport_error(TimeoutError()) == TIMEOUT
    assert classify_transport_error(httpx.ConnectError("x")) == NETWORK_ERROR
    assert classify_transport_error(ConnectionResetError()) == NETWORK_ERROR
    assert classify_oauth_error("invalid_client") == AUTH_ERROR
    assert classify_oauth_error("unauthorized_client") == AUTH_ERROR
    assert classify_oauth_error("temporarily_unavailable") == NETWORK_ERROR


@respx.mock
async def test_a_retry_cut_short_by_the_deadline_reports_the_failure_that_caused_it() -> None:
    respx.get(URL).mock(
        side_effect=[graph_error(500, "InternalServerError"), httpx.ReadTimeout("cut")]
    )
    with pytest.raises(GraphError) as caught:
        await fetch(Sleeps(), budget=3.0)  # less than the 5 s request timeout is left
    failure = caught.value.failure
    assert (failure.result, failure.http_status, failure.error_code) == (
        HTTP_ERROR,
        500,
        "InternalServerError",
    )


@respx.mock
async def test_no_retry_is_started_too_close_to_the_deadline() -> None:
    route = respx.get(URL).mock(return_value=graph_error(500, "InternalServerError"))
    sleeps = Sleeps()
    with pytest.raises(GraphError) as caught:
        await fetch(sleeps, budget=0.05)
    assert caught.value.failure.http_status == 500
    assert route.call_count == 1 and sleeps.delays == []


# ------------------------------------------------------- what Graph's answers mean (pure parts)


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, httpx.Headers(headers or {}), body)


def test_a_200_that_is_not_json_is_a_parse_error_naming_its_content_type() -> None:
    with pytest.raises(GraphError) as caught:
        decode_json(answer(200, b"<html>"), "client-1")
    assert caught.value.failure == PollFailure(
        "parse_error",
        "Graph answered 200 with a body that is not JSON (content-type unknown)",
        http_status=200,
        request_id="client-1",
    )
    assert str(caught.value) == caught.value.failure.message
    with pytest.raises(GraphError) as caught:
        decode_json(answer(200, b"{", {"content-type": "text/html", "request-id": "r-9"}), "c")
    assert caught.value.failure.request_id == "r-9"
    assert caught.value.failure.message.endswith("(content-type text/html)")


def test_a_200_gives_its_document_and_graphs_request_id_or_ours() -> None:
    assert decode_json(answer(200, b'{"a": 1}'), "client-1") == ({"a": 1}, "client-1")
    assert decode_json(answer(200, b"[]", {"request-id": "r-1"}), "client-1") == ([], "r-1")


@pytest.mark.parametrize(
    ("body", "headers", "details"),
    [
        (b'{"error": {"code": 5, "message": ""}}', {}, (None, None, "HTTP 400")),
        (b'{"error": {"message": 7}}', {"client-request-id": "c-1"}, (None, "c-1", "HTTP 400")),
        (
            b'{"error": {"code": "X", "message": "' + b"m" * 300 + b'"}}',
            {},
            ("X", None, "HTTP 400: " + "m" * 200),
        ),
        (
            b'{"error": {"code": "X", "innererror": {"request-id": "inner-1"}}}',
            {},
            ("X", "inner-1", "HTTP 400"),
        ),
        (b'{"error": {"innerError": {"request-id": 5}}}', {}, (None, None, "HTTP 400")),
    ],
)
def test_error_details_take_only_what_has_the_right_type(
    body: bytes, headers: dict[str, str], details: tuple[str | None, str | None, str]
) -> None:
    assert graph_error_details(answer(400, body, headers)) == details


def test_a_retry_after_date_without_a_zone_is_utc_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_retry_after("Sun, 06 Nov 1994 08:49:37", now=784111777.0 - 30) == 30.0
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_throttled_answers_are_counted_and_retried_until_the_sixth() -> None:
    attempts, tally = Attempts(), RequestTally()
    delays = [
        attempts.after_answer(answer(429, b"", {"retry-after": "7"}), "c", tally)[0]
        for _ in range(MAX_THROTTLED_ATTEMPTS - 1)
    ]
    assert delays == [7.0] * (MAX_THROTTLED_ATTEMPTS - 1)
    assert tally.throttled_responses == MAX_THROTTLED_ATTEMPTS - 1
    with pytest.raises(GraphError) as caught:
        attempts.after_answer(answer(503, b'{"error": {"message": "busy"}}'), "c", tally)
    assert caught.value.failure.message == "HTTP 503: busy"
    assert tally.throttled_responses == MAX_THROTTLED_ATTEMPTS
    delay, failure = Attempts().after_answer(answer(429), "c", RequestTally())
    assert 0.0 <= delay <= BACKOFF_BASE_SECONDS  # no Retry-After: the first backoff
    assert failure.message == "HTTP 429" and failure.request_id == "c"


def test_a_connection_error_names_itself_and_a_timeout_near_the_deadline_reports_the_cause() -> (
    None
):
    attempts = Attempts()
    _, failure = attempts.after_transport_error(OSError("reset"), "c-1", near_deadline=True)
    assert failure == PollFailure(
        "network_error", "Graph request failed: OSError: reset", request_id="c-1"
    )
    attempts.retried = failure
    # A second connection error near the deadline is retried like the first...
    assert (
        attempts.after_transport_error(OSError("again"), "c-2", near_deadline=True)[1].request_id
        == "c-2"
    )
    # ...but a timeout then reports what made us retry, not the deadline.
    with pytest.raises(GraphError) as caught:
        attempts.after_transport_error(TimeoutError(), "c-3", near_deadline=True)
    assert caught.value.failure is failure


def _identity(document: object) -> object:
    return document


async def _admitted_while(admission: Admission, waiting: asyncio.Task[object]) -> bool:
    """Whether another poll got in while ``waiting`` was under way (it is then cancelled)."""
    async with asyncio.timeout(30):
        async with admission.ticket():
            other = not waiting.done()
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    return other


@respx.mock
async def test_a_poll_lets_its_admission_go_while_it_waits_to_retry_or_on_a_budget() -> None:
    respx.get(URL).mock(
        side_effect=[graph_error(503, "ServiceUnavailable", {"Retry-After": "3"})]
        + [httpx.Response(200, json=REPORT)] * 3
    )
    admission = Admission(1)
    seen: list[int] = []

    async def sleep(delay: float) -> None:
        seen.append(admission.admitted)

    transport = Transport(build_ssl_context(None), concurrency=4)
    two_a_minute = GraphRateLimiter(RateLimit(2, 60.0), RateLimit(10_000, 1.0))
    client = GraphClient(transport, two_a_minute, sleep=sleep, admission=admission)
    try:
        async with client.admitted() as ticket:
            request = GraphRequest(TOKEN, time.monotonic() + 600, RequestTally(), None, ticket)
            await client.get_document(TENANT, URL, request, _identity, "report")
            assert seen == [0]  # the retry's delay: not under way
            assert admission.admitted == 1  # under way again
            # The next request waits most of a minute on the tenant's reports window (the
            # request and its retry took both places): another poll may start meanwhile.
            paced = asyncio.create_task(
                client.get_document(TENANT, URL, request, _identity, "report")
            )
            assert await _admitted_while(admission, paced)
    finally:
        await transport.aclose()


@respx.mock
async def test_a_poll_keeps_its_admission_while_conditional_access_paces_it() -> None:
    url = f"{HOST}/v1.0/identity/conditionalAccess/policies"
    respx.get(url).mock(return_value=httpx.Response(200, json={"value": []}))
    admission = Admission(1)
    transport = Transport(build_ssl_context(None), concurrency=4)
    one_a_tenth = TenantLimiter(RateLimit(1, 0.1))  # the wait's length does not matter here
    client = GraphClient(transport, UNLIMITED, admission=admission, conditional_access=one_a_tenth)
    try:
        async with client.admitted() as ticket:
            request = GraphRequest(TOKEN, time.monotonic() + 600, RequestTally(), None, ticket)
            await client.get_document(TENANT, url, request, _identity, "x", CONDITIONAL_ACCESS)
            again = asyncio.create_task(  # 1 per window per tenant: it waits for the window
                client.get_document(TENANT, url, request, _identity, "x", CONDITIONAL_ACCESS)
            )
            other = asyncio.create_task(_admitted_while(admission, again))
            await again  # done, paced by the window, while the other poll still waited
            assert request.tally.paced_seconds > 0  # it did wait on the tenant's window
            assert not other.done()
        assert not await other  # it got in only when this poll ended
    finally:
        await transport.aclose()
