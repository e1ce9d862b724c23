"""Issue 26: who must use MFA, through real MSAL, httpx and TLS against the simulator's truth
for every Conditional Access shape it has (entra_simulator.conditional_access)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

from entra_simulator.conditional_access import (
    ADMINS_REPORT_ONLY,
    CLASSES,
    EXCLUSIONS,
    FORBIDDEN,
    NONE,
    PARTIAL,
    SECURITY_DEFAULTS,
    enforcement_truth,
    policy_counts_truth,
)
from exporter.config.loader import load_config
from exporter.config.model import DEFAULT_PRIVILEGED_ROLES, Config
from exporter.config.problems import ConfigError
from tests.conftest import Runtime, SimEnv, exposition_samples

TENANT = "tenant-0001"
SHAPES = [NONE, EXCLUSIONS, ADMINS_REPORT_ONLY, PARTIAL, SECURITY_DEFAULTS]
# make test-fast runs the two richest shapes; make test runs every one.
FAST = (EXCLUSIONS, PARTIAL)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def configure(sim_env: SimEnv, variant: int, users: int = 300, **tenant: Any) -> Config:
    sim = sim_env.sim.find(TENANT)
    assert sim is not None
    sim.users, sim.directory, sim.ca_variant = users, None, variant
    document = sim_env.config()
    # Conditional Access pages come at 1 a second: a poll of several needs seconds.
    document["defaults"]["interval"] = "30s"
    document["tenants"][1].update(
        {"source": "userRegistrationDetails", "enforcement": True,
         "segments": {"privileged_roles": True}, **tenant}
    )  # fmt: skip
    sim_env.write_config(document)
    return load_config(sim_env.config_file)


def family(values: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    found = {}
    for (metric, labels), value in values.items():
        labelled = dict(labels)
        if metric == name and labelled.get("tenant") == TENANT:
            found[tuple(labelled[k] for k in keys)] = value
    return found


async def poll(runtime: Runtime) -> Samples:
    result = await runtime.poll(TENANT)
    assert result.result == "success", result.failure
    return exposition_samples(runtime.store.render().decode())


@pytest.mark.parametrize(
    "variant", [v if v in FAST else pytest.param(v, marks=pytest.mark.slow) for v in SHAPES]
)
async def test_every_class_and_policy_count_equals_the_simulators_truth(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], variant: int
) -> None:
    values = await poll(make_runtime(configure(sim_env, variant)))
    sim = sim_env.sim.find(TENANT)
    assert sim is not None
    truth = enforcement_truth(sim, DEFAULT_PRIVILEGED_ROLES)
    shown = family(
        values, "entra_mfa_enforcement_users", "user_type", "role", "enforcement", "mfa_registered"
    )
    segments = {(t, r) for t, r, _, _ in shown}
    expected = {
        (t, r, c, m): truth.get((t, r, c, m), 0)
        for t, r in segments
        for c in CLASSES
        for m in ("false", "true")
    }
    assert shown == expected  # every class and both values, zeros included, per segment
    assert {(t, r) for t, r, _, _ in truth} == segments
    users = family(values, "entra_segment_users", "user_type", "role")
    for segment, count in users.items():
        assert sum(v for k, v in shown.items() if k[:2] == segment) == count
    policies = family(values, "entra_conditional_access_policies", "state", "kind")
    counted = {k: v for k, v in policies.items() if v}
    assert counted == {k: float(v) for k, v in policy_counts_truth(sim).items()}
    assert len(policies) >= 12  # 3 known states x 4 kinds, zeros included
    defaults = values[("entra_security_defaults_enabled", (("tenant", TENANT),))]
    assert defaults == (1 if variant == SECURITY_DEFAULTS else 0)


def test_the_shapes_cover_every_class_and_both_registration_values(sim_env: SimEnv) -> None:
    sim = sim_env.sim.find(TENANT)
    assert sim is not None
    seen = set()
    for variant in SHAPES:
        sim.users, sim.directory, sim.ca_variant = 600, None, variant
        seen |= {(c, m) for (_, _, c, m), n in enforcement_truth(sim, ()).items() if n}
    assert seen == {(c, m) for c in CLASSES for m in ("false", "true")}


async def test_a_403_fails_the_enforcement_collector_alone_naming_policy_read_all(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    runtime = make_runtime(configure(sim_env, FORBIDDEN))
    result = await runtime.poll(TENANT)
    assert result.result == "auth_error" and result.failure is not None
    assert "grant the application permission Policy.Read.All" in result.failure.message
    values = exposition_samples(runtime.store.render().decode())
    up = family(values, "entra_exporter_collector_up", "collector")
    assert up == {("report",): 1, ("enforcement",): 0}
    assert values[("entra_tenant_users", (("tenant", TENANT),))] == 300  # the report goes on
    assert not family(values, "entra_mfa_enforcement_users", "enforcement")
    assert family(values, "entra_segment_users", "role")  # and its segments


async def test_a_group_a_policy_names_that_graph_no_longer_has_is_empty_and_logged_once(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime(configure(sim_env, EXCLUSIONS))
    with caplog.at_level(logging.WARNING):
        await poll(runtime)
    missing = [r for r in caplog.records if "Graph has no such group (404)" in r.getMessage()]
    assert len(missing) == 1 and "stale group" not in missing[0].getMessage()


async def test_a_429_without_retry_after_is_backed_off_and_the_poll_succeeds(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    runtime = make_runtime(configure(sim_env, PARTIAL))
    sim_env.sim.set_fault(TENANT, "throttle_bare", count=1)
    result = await runtime.poll(TENANT)
    assert result.result == "success", result.failure
    assert result.tally.throttled_responses == 1


def test_enforcement_on_the_seeds_source_is_a_config_error_saying_why(sim_env: SimEnv) -> None:
    with pytest.raises(ConfigError) as refused:
        configure(sim_env, NONE, source="credentialUserRegistrationCount")
    assert refused.value.problems == [
        "tenants[1].enforcement: needs source userRegistrationDetails or auto: who must use MFA "
        "is decided user by user, and the seed's report (credentialUserRegistrationCount) has "
        "only totals"
    ]


async def test_the_pages_show_the_mfa_required_share_and_the_class_table(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    from exporter.web.pages import render_landing_page, render_tenant_page

    runtime = make_runtime(configure(sim_env, EXCLUSIONS))
    values = await poll(runtime)
    snapshot = runtime.store.snapshot(TENANT)
    assert snapshot is not None
    shown = family(
        values, "entra_mfa_enforcement_users", "user_type", "role", "enforcement", "mfa_registered"
    )
    total = sum(shown.values())
    required = sum(
        v for k, v in shown.items() if k[2] in ("conditional_access", "security_defaults")
    )
    share = f"MFA required: {100 * required / total:.1f} %"
    landing = render_landing_page([snapshot], "/metrics", lambda _: None).decode()
    page = render_tenant_page(snapshot, lambda _: None).decode()
    assert share in landing, re.findall("MFA required[^<]*", landing)
    assert share in page, re.findall("MFA required[^<]*", page)
    assert "<h2>Who must use MFA</h2>" in page and "<th>excluded</th>" in page
