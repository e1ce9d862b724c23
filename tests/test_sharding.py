"""Sharding: disjoint, complete, and stable when the tenant list changes."""

from __future__ import annotations

import random
import uuid

import pytest

from exporter.sharding import Shard, parse_shard_index, shard_from, shard_of
from tests.conftest import SimEnv, run_cli

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
