"""Client-side pacing: no window ever holds more requests than the limit."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from exporter.config import RateLimit
from exporter.ratelimit import GraphRateLimiter, RateLimitedError


class VirtualTime:
    """A clock and a sleep for asyncio tasks, advancing only when every task sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._order), future))
        await future

    async def run(self, *coroutines: object) -> list[object]:
        tasks = [asyncio.ensure_future(c) for c in coroutines]  # type: ignore[arg-type]
        while not all(t.done() for t in tasks):
            for _ in range(5):
                await asyncio.sleep(0)
            if all(t.done() for t in tasks):
                break
            assert self._sleepers, "tasks blocked on something other than the virtual clock"
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            future.set_result(None)
        return [t.result() for t in tasks]


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


async def send(
    limiter: GraphRateLimiter,
    vt: VirtualTime,
    app: str,
    tenant: str,
    log: list[tuple[str, float]],
    n: int = 1,
) -> None:
    for _ in range(n):
        await limiter.acquire(app, tenant)
        log.append((tenant, vt.now))


async def test_per_tenant_limit_spaces_a_tenants_requests() -> None:
    vt = VirtualTime()
    limiter = GraphRateLimiter(
        RateLimit(5, 10.0), RateLimit(122, 10.0), clock=vt.clock, sleep=vt.sleep
    )
    log: list[tuple[str, float]] = []
    await vt.run(send(limiter, vt, "app", "t", log, n=12))
    times = [t for _, t in log]
    assert times[:5] == [1000.0] * 5
    assert times[5:10] == [1010.0] * 5
    assert times[10:] == [1020.0] * 2


async def test_a_tenant_held_back_by_its_own_limit_does_not_hold_back_others() -> None:
    vt = VirtualTime()
    limiter = GraphRateLimiter(
        RateLimit(5, 10.0), RateLimit(122, 10.0), clock=vt.clock, sleep=vt.sleep
    )
    log: list[tuple[str, float]] = []
    await vt.run(
        send(limiter, vt, "app", "busy", log, n=12), send(limiter, vt, "app", "other", log, n=1)
    )
    assert ("other", 1000.0) in log


async def test_one_app_shared_by_many_tenants_stays_under_both_limits() -> None:
    vt = VirtualTime()
    limiter = GraphRateLimiter(
        RateLimit(5, 10.0), RateLimit(122, 10.0), clock=vt.clock, sleep=vt.sleep
    )
    log: list[tuple[str, float]] = []
    await vt.run(*(send(limiter, vt, "shared-app", f"tenant-{i}", log, n=3) for i in range(300)))
    assert len(log) == 900
    assert max_in_window([t for _, t in log], 10.0) <= 122
    for i in range(300):
        assert max_in_window([t for name, t in log if name == f"tenant-{i}"], 10.0) <= 5
    # The app's budget is used, not wasted: 900 requests at 122 per 10 s take about 74 s.
    assert max(t for _, t in log) - 1000.0 < 80


async def test_tight_limits_hold_together() -> None:
    vt = VirtualTime()
    limiter = GraphRateLimiter(RateLimit(2, 1.0), RateLimit(3, 1.0), clock=vt.clock, sleep=vt.sleep)
    log: list[tuple[str, float]] = []
    await vt.run(*(send(limiter, vt, "app", name, log, n=10) for name in ("a", "b", "c")))
    assert max_in_window([t for _, t in log], 1.0) <= 3
    for name in ("a", "b", "c"):
        assert max_in_window([t for n, t in log if n == name], 1.0) <= 2


async def test_a_slot_after_the_deadline_is_refused() -> None:
    vt = VirtualTime()
    limiter = GraphRateLimiter(
        RateLimit(1, 10.0), RateLimit(100, 10.0), clock=vt.clock, sleep=vt.sleep
    )
    await limiter.acquire("app", "t")
    with pytest.raises(RateLimitedError):
        await limiter.acquire("app", "t", deadline=vt.now + 5)


async def test_forget_drops_unconfigured_pairs() -> None:
    vt = VirtualTime()
    limiter = GraphRateLimiter(
        RateLimit(1, 10.0), RateLimit(1, 10.0), clock=vt.clock, sleep=vt.sleep
    )
    await limiter.acquire("app", "t")
    limiter.forget(set())
    assert await limiter.acquire("app", "t") == 0.0
