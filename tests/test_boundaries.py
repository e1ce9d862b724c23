"""Boundaries a mutation pass found untested: each test here fails when the line it guards is
changed (an operator flipped, a branch dropped, a constant moved)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import time

import httpx
import pytest

from exporter.config.loader import parse_config
from exporter.config.model import (
    CertificateCredential,
    Config,
    ManagedIdentityCredential,
    RateLimit,
    Secret,
)
from exporter.config.sharding import shard_of
from exporter.graph.answers import RequestTally, graph_error_details, parse_retry_after
from exporter.graph.failures import (
    AUTH_ERROR,
    NETWORK_ERROR,
    PollFailure,
    bounded,
    classify_oauth_error,
    describe_error,
    is_retryable_status,
)
from exporter.graph.pacing import GraphRateLimiter, RateLimitedError
from exporter.graph.transport import HttpResponse
from exporter.logs import SecretRedactor
from exporter.metrics.snapshots import PollResult
from exporter.metrics.store import MetricsStore
from exporter.reports.registration import RegistrationReport
from tests.conftest import exposition_samples, record_poll, tenant_config, track_tenants

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"  # pinned values below were computed for it
CLIENT = "00000000-0000-0000-0000-000000000001"
SLOW = RateLimit(1, 30.0)  # one request per 30 s: a second one must wait
FAST = RateLimit(1000, 1.0)


# ----------------------------------------------------------------- sharding


def test_shard_assignment_is_pinned() -> None:
    # A change of hash, of its byte order or of the ID's normalisation would move tenants
    # to other replicas at upgrade: these values (computed once, 2026-11-25) never change.
    assert [shard_of(TENANT, n) for n in (2, 3, 5, 7)] == [1, 2, 2, 3]
    assert [shard_of(f" {TENANT.upper()} ", n) for n in (2, 3, 5, 7)] == [1, 2, 2, 3]
    assert [shard_of("contoso.onmicrosoft.com", n) for n in (2, 3, 5, 7)] == [1, 0, 0, 5]


# ----------------------------------------------------------------- rate limiter


async def test_a_cancelled_waiter_at_the_head_of_the_queue_does_not_block_the_next() -> None:
    limiter = GraphRateLimiter(RateLimit(1, 0.05), FAST)
    async with limiter.slot("app", "t"):
        head = asyncio.create_task(_enter(limiter, "t"))
        second = asyncio.create_task(_enter(limiter, "t"))
        await asyncio.sleep(0.01)
        head.cancel()
    assert await asyncio.wait_for(second, 5) == "entered"
    with contextlib.suppress(asyncio.CancelledError):
        await head


async def _enter(limiter: GraphRateLimiter, tenant: str, deadline: float | None = None) -> str:
    async with limiter.slot("app", tenant, deadline):
        return "entered"


async def test_a_timeout_waiting_for_the_app_window_gives_the_tenant_slot_back() -> None:
    loop = asyncio.get_running_loop()
    limiter = GraphRateLimiter(RateLimit(1, 0.05), RateLimit(1, 0.05))
    async with limiter.slot("app", "other"):  # the app's only slot is taken
        with pytest.raises(RateLimitedError):
            await _enter(limiter, "t", deadline=loop.time() + 0.05)
    # The tenant's window was entered and must have been left: "t" gets in once the app's
    # window has room again.
    assert await asyncio.wait_for(_enter(limiter, "t"), 5) == "entered"


async def test_leaving_a_slot_wakes_the_waiter() -> None:
    limiter = GraphRateLimiter(RateLimit(1, 0.05), FAST)
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with limiter.slot("app", "t"):
            held.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await held.wait()
    waiter = asyncio.create_task(_enter(limiter, "t"))
    await asyncio.sleep(0.01)
    assert not waiter.done()  # the limit holds while the slot is taken
    release.set()
    assert await asyncio.wait_for(waiter, 5) == "entered"
    await task


async def test_forget_keeps_configured_and_busy_windows() -> None:
    loop = asyncio.get_running_loop()
    limiter = GraphRateLimiter(SLOW, FAST)
    await _enter(limiter, "kept")
    limiter.forget({("app", "kept")})
    with pytest.raises(RateLimitedError):  # its window still remembers the request
        await _enter(limiter, "kept", deadline=loop.time() + 0.05)
    async with limiter.slot("app", "busy"):
        limiter.forget(set())  # not configured any more, but busy: kept until idle
        with pytest.raises(RateLimitedError):
            await _enter(limiter, "busy", deadline=loop.time() + 0.05)
    limiter.forget(set())  # idle now: dropped, a new window starts empty
    assert await _enter(limiter, "gone") == "entered"


# ----------------------------------------------------------------- Graph and failure helpers


def response(status: int, body: bytes, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, httpx.Headers(headers or {}), body)


@pytest.mark.parametrize("body", [b"<html>busy</html>", b"{}", b'{"error": "text"}', b"[1]"])
def test_error_bodies_without_a_graph_error_still_give_a_message(body: bytes) -> None:
    code, request_id, message = graph_error_details(response(502, body, {"request-id": "r1"}))
    assert (code, request_id, message) == (None, "r1", "HTTP 502")


def test_error_details_take_the_inner_request_id_when_the_header_lacks() -> None:
    body = b'{"error": {"code": "X", "message": "m\\nsecond", "innerError": {"request-id": "r2"}}}'
    assert graph_error_details(response(503, body)) == ("X", "r2", "HTTP 503: m")


def test_retry_after_as_a_date_without_a_zone_is_utc() -> None:
    assert parse_retry_after("Wed, 25 Nov 2026 12:00:10", now=1795608000.0) == 10.0
    assert parse_retry_after("Wed, 25 Nov 2026 11:59:00 GMT", now=1795608000.0) == 0.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(428, False), (429, True), (430, False), (499, False), (500, True), (599, True), (600, False)],
)
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


@pytest.mark.parametrize(
    ("error", "result"),
    [
        ("server_error", NETWORK_ERROR),
        ("temporarily_unavailable", NETWORK_ERROR),
        ("invalid_client", AUTH_ERROR),
        (None, AUTH_ERROR),
    ],
)
def test_oauth_errors_that_are_the_identity_providers_trouble(
    error: str | None, result: str
) -> None:
    assert classify_oauth_error(error) == result


def test_failure_log_fields_name_only_what_is_known() -> None:
    assert PollFailure("timeout", "m").log_fields() == {"result": "timeout"}
    assert PollFailure("http_error", "m", 500, "Code", "rid").log_fields() == {
        "result": "http_error",
        "http_status": 500,
        "error_code": "Code",
        "request_id": "rid",
    }


# ----------------------------------------------------------------- metrics


def poll(result: str = "success", users: int = 10, graph: int = 1, tokens: int = 0) -> PollResult:
    succeeded = result == "success"
    report = RegistrationReport(users, (("registered", users // 2),)) if succeeded else None
    return PollResult(
        result,
        report,
        None if succeeded else PollFailure(result, "x"),
        0.1,
        time.time(),
        tally=RequestTally(graph_requests=graph),
        token_requests=tokens,
    )


def test_counters_start_at_zero_and_add_up_across_polls() -> None:
    store = MetricsStore()
    tenant = tenant_config()
    track_tenants(store, (tenant,))
    values = exposition_samples(store.render().decode())
    t = (("tenant", "contoso"),)
    assert values[("entra_exporter_graph_requests_total", t)] == 0
    assert values[("entra_exporter_token_requests_total", t)] == 0
    assert values[("entra_exporter_polls_total", (("result", "success"), *t))] == 0
    record_poll(store, tenant, poll(graph=2, tokens=1))
    record_poll(store, tenant, poll("throttled", graph=3))
    values = exposition_samples(store.render().decode())
    assert values[("entra_exporter_graph_requests_total", t)] == 5
    assert values[("entra_exporter_token_requests_total", t)] == 1
    assert values[("entra_exporter_polls_total", (("result", "success"), *t))] == 1
    assert values[("entra_exporter_polls_total", (("result", "throttled"), *t))] == 1


def test_the_cached_exposition_follows_polls_removals_events_and_reloads() -> None:
    store = MetricsStore()
    a, b = tenant_config("a"), tenant_config("b")
    track_tenants(store, (a, b))
    first = store.render()
    record_poll(store, a, poll(users=10))
    assert store.render() != first and b'entra_tenant_users{tenant="a"} 10' in store.render()
    record_poll(store, a, poll(users=12))
    assert b'entra_tenant_users{tenant="a"} 12' in store.render()
    store.record_scheduler_event("missed")
    assert b'entra_exporter_scheduler_events_total{event="missed"} 1' in store.render()
    moved = tenant_config("a")
    moved = type(moved)(**{**_fields(moved), "tenant_id": "fabrikam.example", "cloud": "usgov"})
    track_tenants(store, (moved,))  # a reload: b removed, a changed
    text = store.render().decode()
    assert 'tenant="b"' not in text
    assert 'entra_tenant_info{tenant="a",tenant_id="fabrikam.example",cloud="usgov"' in text
    assert 'entra_tenant_users{tenant="a"} 12' in text  # history kept across the reload


def _fields(tenant: object) -> dict[str, object]:
    return {name: getattr(tenant, name) for name in tenant.__dataclass_fields__}  # type: ignore[attr-defined]


def test_label_values_escape_newlines_quotes_and_backslashes() -> None:
    store = MetricsStore()
    tenant = tenant_config('a\nb"c\\d')
    track_tenants(store, (tenant,))
    assert b'entra_exporter_tenant_up{tenant="a\\nb\\"c\\\\d"} 0' in store.render()


def test_counter_headers_keep_total_in_text_and_drop_it_in_openmetrics() -> None:
    store = MetricsStore()
    track_tenants(store, (tenant_config(),))
    text = store.render().decode()
    assert "# TYPE entra_exporter_polls_total counter" in text
    openmetrics = store.render(openmetrics=True).decode()
    assert "# TYPE entra_exporter_polls counter" in openmetrics
    assert "# TYPE entra_exporter_polls_total" not in openmetrics


# ----------------------------------------------------------------- config


def minimal(**tenant: object) -> dict[str, object]:
    return {"tenants": [{"tenant_id": TENANT, "client_id": CLIENT, **tenant}]}


def test_a_certificate_passphrase_is_among_the_redacted_secrets() -> None:
    credential = CertificateCredential(
        Secret("-----BEGIN KEY-----"), "cert", "k", "c", passphrase=Secret("open sesame")
    )
    tenant = tenant_config()
    config = Config(tenants=(type(tenant)(**{**_fields(tenant), "credential": credential}),))
    assert set(config.secrets()) == {"-----BEGIN KEY-----", "open sesame"}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (minimal(client_secret="${1BAD}"), "${1BAD} is not a valid environment variable reference"),
        (minimal(client_secret="s3cret", stale_after="0.5x"), "use Nx with N >= 1"),
        (minimal(client_secret="s3cret", stale_after="1m"), "must not be shorter than interval"),
        (minimal(client_secret="s3cret", stale_after="xx"), "'xx': use Nx"),
    ],
)
def test_config_value_boundaries(document: dict[str, object], problem: str) -> None:
    from exporter.config.problems import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config(document, environ={})
    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_stale_after_of_exactly_the_interval_and_nx_multiply() -> None:
    config = parse_config(minimal(client_secret="s3cret", stale_after="10m"), environ={})
    assert config.tenants[0].stale_after == 600
    config = parse_config(minimal(client_secret="s3cret", stale_after="1.5x"), environ={})
    assert config.tenants[0].stale_after == 900


def test_user_assigned_managed_identity_and_the_send_x5c_default() -> None:
    identity = "11111111-2222-3333-4444-555555555555"
    config = parse_config(
        {"tenants": [{"tenant_id": TENANT, "managed_identity": {"client_id": identity}}]},
        environ={},
    )
    assert config.tenants[0].credential == ManagedIdentityCredential(identity)
    assert config.tenants[0].client_id == identity  # the rate-limit key
    assert CertificateCredential(Secret("k"), "c", "kf", "cf").send_x5c is True


@pytest.mark.parametrize(
    ("error", "described"),
    [
        (ValueError(""), "ValueError"),
        (OSError(), "OSError"),
        (ValueError("first\nsecond"), "ValueError: first"),
        (ValueError("x" * 200), "ValueError: " + "x" * 160),
    ],
)
def test_describe_error_names_the_type_and_the_first_line_cut_short(
    error: BaseException, described: str
) -> None:
    assert describe_error(error) == described


# ----------------------------------------------------------------- what a failure may hold


def test_bounded_keeps_short_text_cuts_long_text_and_flattens_control_characters() -> None:
    assert bounded("abcde", 5) == "abcde"  # exactly the limit: kept whole
    assert bounded("abcdef", 5) == "abcd…"  # one more: cut, with the ellipsis in the limit
    assert bounded("a\r\nb\tc", 10) == "a  b c"  # one line, printable
    assert bounded("", 3) == ""
    assert len(bounded("x" * 10_000, 100)) == 100


def test_a_failure_bounds_what_graph_or_the_identity_provider_sent() -> None:
    failure = PollFailure("http_error", "m" * 5000, 500, "c" * 500, "r" * 500)
    assert len(failure.message) == 300 and failure.message.endswith("…")
    assert failure.error_code == "c" * 99 + "…" and failure.request_id == "r" * 99 + "…"
    short = PollFailure("http_error", "no", 500, None, "id-1")
    assert (short.message, short.error_code, short.request_id) == ("no", None, "id-1")


def test_held_secrets_are_shared_between_holders_and_leave_with_the_last() -> None:
    redactor = SecretRedactor()

    class Holder:
        pass

    first, second = Holder(), Holder()
    secret = "rotated-app-secret-value"
    redactor.hold(first, (secret,), ("token-of-first-1234",))
    redactor.hold(second, (secret,), ("token-of-second-5678",))
    encoded = base64.b64encode(f"client_secret={secret}".encode()).decode()
    line = f"{secret} {encoded} token-of-first-1234 token-of-second-5678"
    words = redactor.redact(line).split()
    assert words[0] == words[2] == words[3] == "[REDACTED]"
    assert "[REDACTED]" in words[1] and encoded not in words[1]  # the secret's base64 bits
    # A token is redacted as sent (URL-encoded and JSON-escaped too), not in base64.
    assert redactor.redact("a%2Bb%2F-token") == "a%2Bb%2F-token"
    redactor.hold(first, (), ("a+b/-token",))
    assert redactor.redact("x=a%2Bb%2F-token") == "x=[REDACTED]"
    del first
    gc.collect()
    assert redactor.redact(secret) == "[REDACTED]"  # the second still holds it
    del second
    gc.collect()
    assert redactor.redact(f"{secret} token-of-second-5678") == (f"{secret} token-of-second-5678")
