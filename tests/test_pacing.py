"""The pacing rules against a simulator that enforces Graph's limits as Graph does (429 past
them): one app serving many tenants, and sharded replicas sharing that app, are never refused.
Limits are scaled down (per second instead of per 10 s) so a round takes seconds, not minutes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from entra_simulator.limits import GraphLimits, Limit
from entra_simulator.simulator import Simulator
from exporter.config.loader import load_config
from exporter.config.model import Config
from exporter.config.sharding import Shard
from tests.conftest import Runtime

TENANTS = 12
PER_TENANT, PER_APP = "2/1s", "5/1s"


@pytest.fixture
def one_app(tmp_path: Path) -> tuple[Simulator, Config]:
    """TENANTS tenants of one multi-tenant app, and a simulator enforcing the limits."""
    sim = Simulator(
        tenants=TENANTS, seed=9, limits=GraphLimits(Limit.parse(PER_TENANT), Limit.parse(PER_APP))
    )
    app = next(iter(sim.tenants.values())).client_id
    for tenant in sim.tenants.values():
        tenant.client_id = app
    sim.start()
    sim.write_ca(tmp_path / "ca.pem")
    config_file = tmp_path / "config.yaml"
    sim.write_config(config_file, str(tmp_path / "ca.pem"), interval=60.0, jitter=0.0)
    document = yaml.safe_load(config_file.read_text())
    document["rate_limits"] = {"per_app_per_tenant": PER_TENANT, "per_app": PER_APP}
    config_file.write_text(yaml.safe_dump(document))
    config_file.chmod(0o600)
    yield sim, load_config(config_file)
    sim.stop()


@pytest.mark.slow
async def test_one_app_with_many_tenants_is_never_refused(
    one_app: tuple[Simulator, Config], make_runtime: Callable[[Config], Runtime]
) -> None:
    sim, config = one_app
    runtime = make_runtime(config)
    for _ in range(2):
        results = await runtime.poll_all()
        assert [r.result for r in results if r] == ["success"] * TENANTS
    assert sim.stats()["refused_by_limits"] == 0
    assert sim.stats()["graph_requests"] == 2 * TENANTS


async def replicas_round(
    config: Config, make_runtime: Callable[[Config], Runtime], split: bool
) -> list[str]:
    runtimes = [
        make_runtime(Shard(index, 3, split_app_limit=split).select(config)) for index in range(3)
    ]
    rounds = await asyncio.gather(*(p.poll_all() for p in runtimes))
    return [r.result for results in rounds for r in results if r]


@pytest.mark.slow
async def test_sharded_replicas_sharing_the_app_are_never_refused(
    one_app: tuple[Simulator, Config], make_runtime: Callable[[Config], Runtime]
) -> None:
    sim, config = one_app
    assert set(await replicas_round(config, make_runtime, split=True)) == {"success"}
    assert sim.stats()["refused_by_limits"] == 0


async def test_replicas_that_each_take_the_whole_app_limit_are_refused(
    one_app: tuple[Simulator, Config], make_runtime: Callable[[Config], Runtime]
) -> None:
    # The control: without the split, three replicas send up to three times what the app may.
    sim, config = one_app
    await replicas_round(config, make_runtime, split=False)
    assert sim.stats()["refused_by_limits"] > 0
