"""Client-side pacing: no window ever sees more request arrivals than the limit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time

import pytest

from exporter.config.model import Config, RateLimit, TenantConfig
from exporter.config.sharding import Shard
from exporter.graph.admission import Admission
from exporter.graph.pacing import GraphRateLimiter, RateLimitedError, SlidingWindow
from exporter.graph.service_budget import ServiceBudget
from exporter.polling.retries import RetryAfterMemory, retry_delay
from exporter.polling.scheduler import first_poll_delays
from tests.conftest import max_in_window, tenant_config


async def send(
    limiter: GraphRateLimiter, app: str, tenant: str, arrivals: list[tuple[str, float]], n: int = 1
) -> None:
    """Send ``n`` requests; each 'arrives' at a random moment while it is in flight."""
    for _ in range(n):
        async with limiter.slot(app, tenant):
            delay = random.uniform(0, 0.02)
            await asyncio.sleep(delay / 2)
            arrivals.append((tenant, time.monotonic()))
            await asyncio.sleep(delay / 2)


async def test_per_tenant_limit_spaces_a_tenants_requests() -> None:
    limiter = GraphRateLimiter(RateLimit(5, 0.5), RateLimit(1000, 1.0))
    arrivals: list[tuple[str, float]] = []
    started = time.monotonic()
    await send(limiter, "app", "t", arrivals, n=12)
    times = [t for _, t in arrivals]
    assert max_in_window(times, 0.5) <= 5
    assert time.monotonic() - started >= 1.0  # 12 requests at 5 per 0.5 s need two waits


async def test_a_tenant_held_back_by_its_own_limit_does_not_hold_back_others() -> None:
    limiter = GraphRateLimiter(RateLimit(2, 1.0), RateLimit(100, 1.0))
    arrivals: list[tuple[str, float]] = []
    busy = asyncio.create_task(send(limiter, "app", "busy", arrivals, n=6))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await send(limiter, "app", "other", arrivals, n=1)
    assert time.monotonic() - started < 0.2
    busy.cancel()
    with pytest.raises(asyncio.CancelledError):
        await busy


async def test_one_app_shared_by_many_tenants_stays_under_both_limits() -> None:
    limiter = GraphRateLimiter(RateLimit(2, 0.5), RateLimit(20, 0.5))
    arrivals: list[tuple[str, float]] = []
    await asyncio.gather(
        *(send(limiter, "shared", f"tenant-{i}", arrivals, n=3) for i in range(40))
    )
    assert len(arrivals) == 120
    assert max_in_window([t for _, t in arrivals], 0.5) <= 20
    for i in range(40):
        assert max_in_window([t for name, t in arrivals if name == f"tenant-{i}"], 0.5) <= 2
    # Another app has a budget of its own.
    started = time.monotonic()
    await send(limiter, "other-app", "tenant-0", arrivals)
    assert time.monotonic() - started < 0.2


async def test_no_slot_before_the_deadline_raises_and_frees_nothing_twice() -> None:
    limiter = GraphRateLimiter(RateLimit(1, 10.0), RateLimit(100, 10.0))
    async with limiter.slot("app", "t"):
        pass
    with pytest.raises(RateLimitedError):
        async with limiter.slot("app", "t", deadline=time.monotonic() + 0.1):
            pass
    # The app window was not charged for the refused request.
    async with limiter.slot("app", "other", deadline=time.monotonic() + 0.1):
        pass


async def test_forget_drops_idle_windows_of_unconfigured_pairs() -> None:
    limiter = GraphRateLimiter(RateLimit(1, 10.0), RateLimit(1, 10.0))
    async with limiter.slot("app", "t"):
        pass
    limiter.forget(set())
    async with limiter.slot("app", "t", deadline=time.monotonic() + 0.1) as waited:
        assert waited < 0.1


# ------------------------------------------------------- edges, on a clock the test moves by hand


class Clock:
    """A clock that moves only when told, and counts how often it was read."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


async def test_both_windows_use_the_limiters_clock() -> None:
    clock = Clock()
    limiter = GraphRateLimiter(RateLimit(1, 10.0), RateLimit(1, 10.0), clock=clock)
    async with limiter.slot("app", "t"):
        pass
    clock.now += 10.0  # one window later on the limiter's clock (no real time has passed)
    async with asyncio.timeout(5):
        async with limiter.slot("app", "t") as waited:
            assert waited == 0.0


async def test_a_request_completed_exactly_one_window_ago_no_longer_counts() -> None:
    clock = Clock()
    window = SlidingWindow(RateLimit(1, 10.0), clock)
    await window.enter()
    window.leave()
    assert not window.spent(clock.now)  # the request still counts
    clock.now += 10.0
    assert window.spent(clock.now)  # as a new window: the sweep may drop it
    await asyncio.wait_for(window.enter(), 5)  # at once: a waiter would never be woken here
    assert not window.idle and not window.spent(clock.now)


async def test_a_waiter_is_woken_when_the_oldest_request_leaves_the_window() -> None:
    # Woken when the window has room (0.05 s here), not a second or more later.
    limiter = GraphRateLimiter(RateLimit(1, 0.05), RateLimit(1000, 1.0))
    async with limiter.slot("app", "t"):
        pass
    loop = asyncio.get_running_loop()
    async with limiter.slot("app", "t", deadline=loop.time() + 0.8) as waited:
        assert 0.0 < waited < 0.8


async def test_a_waiter_sleeps_until_the_window_has_room_instead_of_spinning() -> None:
    clock = Clock()
    window = SlidingWindow(RateLimit(1, 10.0), clock)
    await window.enter()
    window.leave()
    waiter = asyncio.create_task(window.enter())
    await asyncio.sleep(0.05)  # real time passes, the window's clock does not
    assert not waiter.done()
    assert clock.reads < 20  # one timer for the oldest request's expiry, not a busy loop
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter


async def test_a_cancelled_waiter_does_not_free_a_slot_it_never_had() -> None:
    clock = Clock()
    window = SlidingWindow(RateLimit(1, 10.0), clock)
    await window.enter()  # held
    waiter = asyncio.create_task(window.enter())
    await asyncio.sleep(0)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    late = asyncio.create_task(window.enter())
    await asyncio.sleep(0.02)
    assert not late.done()  # the held slot still fills the window
    late.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await late


async def test_a_slot_granted_as_its_waiter_is_cancelled_is_handed_back_undated() -> None:
    clock = Clock()
    window = SlidingWindow(RateLimit(1, 10.0), clock)
    await window.enter()
    waiter = asyncio.create_task(window.enter())
    await asyncio.sleep(0)
    window.leave(sent=False)  # the holder never sent: its slot goes to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    # The slot came back and was not dated: the window is empty again at once.
    await asyncio.wait_for(window.enter(), 5)
    assert window.idle is False


async def test_forget_keeps_the_app_window_while_the_app_serves_a_configured_tenant() -> None:
    clock = Clock()
    limiter = GraphRateLimiter(RateLimit(5, 10.0), RateLimit(1, 10.0), clock=clock)
    async with limiter.slot("app", "gone"):
        pass
    limiter.forget({("app", "kept")})  # "gone" is dropped, the app's window is not
    with pytest.raises(RateLimitedError):
        async with limiter.slot("app", "kept", deadline=clock.now + 0.01):
            pass


def test_the_rate_limited_error_says_how_long_it_waited() -> None:
    error = RateLimitedError(2.25)
    assert str(error) == "client-side rate limit: no request slot within 2.2s"
    assert error.waited == 2.25


# ----------------------------------------------------------------- retries after a failed poll


def test_retry_delays_are_jittered_and_bounded_by_the_interval() -> None:
    rng = random.Random(7)
    delays = [retry_delay(1, 600, rng) for _ in range(200)]
    assert all(15 <= d <= 30 for d in delays)
    assert len({round(d, 3) for d in delays}) > 150  # not in lockstep
    assert all(300 <= retry_delay(20, 600, rng) <= 600 for _ in range(50))


def test_retry_after_is_kept_per_tenant_and_per_app_when_tenants_of_one_app_are_refused() -> None:
    now = [1000.0]
    memory = RetryAfterMemory(clock=lambda: now[0])
    memory.note("contoso", "APP-1", 60)
    assert memory.wait("contoso", "app-1") == 60
    assert memory.wait("fabrikam", "app-1") == 0  # one tenant refused: its own limit
    now[0] += 10
    memory.note("fabrikam", "app-1", 30)  # a second tenant of the app: the app's limit
    assert memory.wait("northwind", "app-1") == 30
    assert memory.wait("tailspin", "app-2") == 0
    assert memory.wait("contoso", "app-1") == 50
    now[0] += 31
    assert memory.wait("northwind", "app-1") == 0
    memory.forget("contoso")
    assert memory.wait("contoso", "app-1") == 0


def _app_tenants(count: int, client_id: str, jitter: float = 30.0) -> list[TenantConfig]:
    return [
        dataclasses.replace(
            tenant_config(f"{client_id[-1]}-{n:05}"),
            client_id=client_id,
            jitter=jitter,
            interval=3600.0,
        )
        for n in range(count)
    ]


def test_a_batch_of_one_apps_new_tenants_starts_no_faster_than_its_budget_allows() -> None:
    # 5,000 customers a listing brought, on one app at 122 reports per 10 s: their first polls
    # (and tokens) are spread over the time the budget needs, a little ahead of it.
    tenants = _app_tenants(5000, "00000000-0000-0000-0000-00000000000a", jitter=0.0)
    delays = first_poll_delays(tenants, RateLimit(122, 10.0))
    assert sorted(delays) == sorted(t.name for t in tenants)
    # The first window's worth at once, then no faster than 1.25 x the budget.
    assert sorted(delays.values())[121] == 0.0
    later = [d for d in delays.values() if d > 0]
    assert max_in_window(later, 10.0) <= 122 * 1.25 + 1
    assert (5000 - 122) / 12.2 / 1.25 - 1 <= max(delays.values()) <= 5000 / 12.2
    # A replica's share of the app's budget (as the shard sets per_app) spreads them further.
    shard = Shard(0, 2).select(Config(tenants=tuple(tenants)))
    assert shard.per_app == RateLimit(61, 10.0)
    halved = first_poll_delays(tenants, shard.per_app)
    assert max(halved.values()) == pytest.approx((5000 - 1 - 61) / (6.1 * 1.25))


def test_a_few_new_tenants_start_within_their_jitter_and_apps_spread_apart() -> None:
    few = _app_tenants(3, "00000000-0000-0000-0000-00000000000a")
    other = _app_tenants(3, "00000000-0000-0000-0000-00000000000b")
    delays = first_poll_delays(few + other, RateLimit(122, 10.0))
    assert all(0 <= d <= 30.0 + 2 / 12.2 for d in delays.values()), delays
    assert len(set(delays.values())) == 6  # drawn each, not all at once
    # More tenants than the budget can poll in an interval: spread over the interval, no more.
    crowd = _app_tenants(5000, "00000000-0000-0000-0000-00000000000c", jitter=0.0)
    crowd = [dataclasses.replace(t, interval=60.0) for t in crowd]
    assert max(first_poll_delays(crowd, RateLimit(122, 10.0)).values()) < 60.0


async def test_the_sweep_drops_windows_as_good_as_new_and_keeps_the_others() -> None:
    clock = Clock()
    limiter = GraphRateLimiter(RateLimit(5, 10.0), RateLimit(122, 10.0), clock)
    budget = ServiceBudget(clock=clock)
    async with limiter.slot("app", "old"):
        pass
    async with budget.slot("app", "old", 5):
        pass
    clock.now += 6.0
    async with limiter.slot("app", "recent"):
        pass
    clock.now += 5.0  # "old" completed 11 s ago, "recent" 5 s ago
    limiter.sweep()
    budget.sweep()
    assert limiter.tracked() == 2  # recent's window and the app's (recent still counts)
    assert budget.tracked() == (0, 1)  # its request left the tenant's 10 s, not the app's 20 s
    clock.now += 10.0
    limiter.sweep()
    budget.sweep()
    assert limiter.tracked() == 0
    assert budget.tracked() == (0, 0)


async def settle() -> None:
    """Let every woken waiter run (admission wakes the next one a step later)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_polls_past_the_room_wait_first_come_first_served_and_paced_ones_do_not_count() -> (
    None
):
    admission = Admission(2)
    started: list[int] = []
    pace = {n: asyncio.Event() for n in range(5)}  # the poll goes to wait on pacing
    paced = {n: asyncio.Event() for n in range(5)}  # its pacing slot came
    end = {n: asyncio.Event() for n in range(5)}

    async def poll(n: int) -> None:
        async with admission.ticket() as ticket:
            started.append(n)
            await pace[n].wait()
            with ticket.away():
                await paced[n].wait()
            await end[n].wait()

    polls = [asyncio.create_task(poll(n)) for n in range(5)]
    await settle()
    assert started == [0, 1]
    pace[1].set()  # waiting on pacing, poll 1 is not under way: the next may start
    await settle()
    assert started == [0, 1, 2]
    paced[1].set()  # back from pacing without waiting for room: three under way
    await settle()
    assert admission.admitted == 3
    for event in (pace[0], paced[0], end[0]):  # poll 0 ends; two still under way: full
        event.set()
    await settle()
    assert started == [0, 1, 2]
    end[1].set()
    await settle()
    assert started == [0, 1, 2, 3]
    for task in polls:
        task.cancel()
    await asyncio.gather(*polls, return_exceptions=True)
    assert admission.admitted == 0


async def test_a_poll_that_ends_or_gives_up_waiting_frees_its_place() -> None:
    admission = Admission(1)

    async def wait_for_room() -> None:
        async with admission.ticket():
            pass

    async with admission.ticket() as ticket:
        waiting = asyncio.create_task(wait_for_room())
        await settle()
        assert not waiting.done()
        with ticket.away():  # away for a pacing slot free at once: back in the same step
            pass
        await settle()
        assert not waiting.done()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    async with admission.ticket() as ticket:
        assert admission.admitted == 1
        with ticket.away():  # two collectors of the poll wait on pacing at once
            with ticket.away():
                assert admission.admitted == 0
            assert admission.admitted == 0
        assert admission.admitted == 1
        ticket.close()
        ticket.close()  # once only
        assert admission.admitted == 0
    assert admission.admitted == 0


async def test_a_poll_that_ends_while_one_of_its_collectors_waits_counts_once() -> None:
    admission = Admission(1)
    async with admission.ticket() as ticket:
        with ticket.away():
            ticket.close()
        assert admission.admitted == 0
    assert admission.admitted == 0
    assert admission.admitted == 0
