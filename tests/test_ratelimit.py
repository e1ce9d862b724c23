"""Client-side pacing: no window ever sees more request arrivals than the limit."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from exporter.config import RateLimit
from exporter.ratelimit import GraphRateLimiter, RateLimitedError
from tests.conftest import max_in_window


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
