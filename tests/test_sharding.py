"""Sharding: disjoint, complete, and stable when the tenant list changes."""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from pathlib import Path

import pytest

from exporter.config.model import Config, RateLimit
from exporter.config.sharding import Shard, parse_shard_index, shard_from, shard_of
from exporter.graph.pacing import RateLimitedError
from exporter.graph.service_budget import ServiceBudget
from tests.conftest import SimEnv, run_cli, tenant_config

IDS = [str(uuid.UUID(int=random.Random(7).getrandbits(128) ^ i, version=4)) for i in range(1000)]


def assignment(ids: list[str], count: int) -> dict[str, int]:
    return {tenant_id: shard_of(tenant_id, count) for tenant_id in ids}


def test_shards_are_disjoint_and_cover_every_tenant() -> None:
    shards = [{t for t in IDS if shard_of(t, 4) == index} for index in range(4)]
    assert set().union(*shards) == set(IDS)
    assert sum(len(s) for s in shards) == len(IDS)
    # Spread evenly enough: each of 4 shards holds 20-30 % of 1,000 tenants.
    assert all(200 <= len(s) <= 300 for s in shards)


def test_assignments_do_not_move_when_the_list_is_reordered_or_grows() -> None:
    before = assignment(IDS, 3)
    shuffled = IDS[:]
    random.Random(1).shuffle(shuffled)
    grown = shuffled + [str(uuid.uuid4()) for _ in range(200)]
    after = assignment(grown, 3)
    assert {t: after[t] for t in IDS} == before


def test_tenant_ids_are_compared_case_insensitively() -> None:
    assert shard_of("Contoso.OnMicrosoft.com", 5) == shard_of("contoso.onmicrosoft.com", 5)


@pytest.mark.parametrize(
    ("text", "index"), [("0", 0), ("2", 2), ("entra-exporter-3", 3), ("exporter-12", 12)]
)
def test_shard_index_from_a_number_or_a_pod_name(text: str, index: int) -> None:
    assert parse_shard_index(text) == index


def test_bad_shards_are_refused() -> None:
    with pytest.raises(ValueError, match="neither a number"):
        parse_shard_index("exporter")
    with pytest.raises(ValueError, match="between 0 and 1"):
        Shard(2, 2)
    with pytest.raises(ValueError, match="at least 1"):
        Shard(0, 0)
    assert shard_from(3, None, {"EXPORTER_SHARD_INDEX": "entra-exporter-2"}) == Shard(2, 3)


@pytest.mark.system  # starts the CLI as a process
def test_cli_polls_only_its_shard(sim_env: SimEnv) -> None:
    document = sim_env.config()
    ids = [t["tenant_id"] for t in document["tenants"]]
    owned = [[tid for tid in ids if shard_of(tid, 2) == index] for index in (0, 1)]
    for index in (0, 1):
        result = run_cli(
            f"--config.file={sim_env.config_file}",
            "--check-config",
            "--shard.count=2",
            f"--shard.index={index}",
        )
        assert result.returncode == 0, result.stderr
        assert f"shard {index} of 2: {len(owned[index])} of {len(ids)} tenants" in result.stdout
        for tid in ids:
            assert (tid in result.stdout) == (tid in owned[index])
    via_env = run_cli(
        f"--config.file={sim_env.config_file}",
        "--once",
        "--shard.count=2",
        env={"EXPORTER_SHARD_INDEX": "exporter-1"},
    )
    assert via_env.returncode == 0
    for tid in ids:
        assert (f'tenant_id="{tid}"' in via_env.stdout) == (tid in owned[1])
    bad = run_cli(
        f"--config.file={sim_env.config_file}",
        "--check-config",
        "--shard.count=2",
        "--shard.index=5",
    )
    assert bad.returncode == 2
    assert "--shard" in bad.stderr


def test_replicas_share_the_apps_limit_by_default() -> None:
    config = Config(
        tenants=tuple(tenant_config(f"t{i}") for i in range(3)), per_app=RateLimit(122, 10.0)
    )
    assert Shard(0, 3).select(config).per_app == RateLimit(40, 10.0)  # 3 x 40 <= 122
    assert Shard(0, 1).select(config).per_app == RateLimit(122, 10.0)
    assert Shard(0, 3, split_app_limit=False).select(config).per_app == RateLimit(122, 10.0)
    assert Shard(0, 500).select(config).per_app == RateLimit(1, 10.0)  # never zero
    # The identity and access service's per-app units are split alike.
    assert Shard(0, 3).select(config).app_share == pytest.approx(1 / 3)
    assert Shard(0, 3, split_app_limit=False).select(config).app_share == 1.0


async def test_service_budget_windows_leave_with_their_tenant_and_replicas_split_the_app() -> None:
    budget = ServiceBudget()
    for index in range(200):  # tenants that came and went
        async with budget.slot("app", f"tenant-{index}", 1):
            pass
        budget.note_size("app", f"tenant-{index}", 10)
    assert budget.tracked() == (200, 1)
    budget.use({("APP", "tenant-7")}, share=1 / 3)
    assert budget.tracked() == (1, 1)
    assert budget.share == pytest.approx(1 / 3)
    # A request waiting when its tenant leaves keeps the window until it is done.
    async with budget.slot("app", "tenant-7", 1):
        budget.use(set(), share=1 / 3)
        assert budget.tracked() == (1, 1)
    with pytest.raises(RateLimitedError):  # more than the tenant's whole window: waits
        async with budget.slot("app", "tenant-7", 10**6, deadline=time.monotonic() + 0.1):
            pass
    budget.use(set(), share=1 / 3)
    assert budget.tracked() == (0, 0)


@pytest.mark.system  # starts the CLI as a process
def test_check_config_says_the_share(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "tenants:\n"
        "  - {tenant_id: 5f1c3d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f, "
        "client_id: 00000000-0000-0000-0000-000000000001, client_secret: s3cret-value}\n"
    )
    config.chmod(0o600)
    split = run_cli(
        f"--config.file={config}", "--check-config", "--shard.count=2", "--shard.index=0"
    )
    assert "pacing to 61/10s of the app's 122/10s" in split.stdout, split.stderr
    whole = run_cli(
        f"--config.file={config}",
        "--check-config",
        "--shard.count=2",
        "--shard.index=0",
        "--no-shard.split-app-limit",
    )
    assert "pacing to 122/10s of the app's 122/10s" in whole.stdout


def test_the_index_comes_from_the_flag_then_the_environment_then_zero() -> None:
    assert shard_from(3, None, {}) == Shard(0, 3)
    assert shard_from(3, "1", {"EXPORTER_SHARD_INDEX": "entra-exporter-2"}) == Shard(1, 3)
    assert shard_from(3, "1", {}, split_app_limit=False) == Shard(1, 3, split_app_limit=False)


def test_a_shard_count_below_one_is_refused_with_the_flags_name() -> None:
    with pytest.raises(ValueError, match=r"^--shard\.count must be at least 1$"):
        Shard(0, 0)


@pytest.mark.parametrize("count", [2, 3])
def test_each_replica_selects_exactly_its_own_tenants(count: int) -> None:
    tenants = tuple(
        dataclasses.replace(tenant_config(f"t{i}"), tenant_id=IDS[i]) for i in range(40)
    )
    config = Config(tenants=tenants, per_app=RateLimit(122, 10.0))
    for index in range(count):
        selected = Shard(index, count).select(config)
        assert selected.tenants == tuple(
            t for t in tenants if shard_of(t.tenant_id, count) == index
        )
        assert selected.per_app == RateLimit(122 // count, 10.0)
