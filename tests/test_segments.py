"""Segments: who is covered where it matters, counted from userRegistrationDetails and compared
with the simulator's truth exactly, through the real MSAL, httpx and TLS."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest

from entra_simulator.directory import SimTenant, detail_user
from entra_simulator.segments import (
    CONDITIONAL_ACCESS_ADMIN,
    GLOBAL_ADMIN,
    HELPDESK_ADMIN,
    directory_of,
    segments_truth,
)
from exporter.config.loader import load_config
from exporter.config.model import DEFAULT_PRIVILEGED_ROLES, Config
from tests.conftest import (
    CAMEL_CASE_NOTE,
    Runtime,
    SimEnv,
    exposition_samples,
    promtool_notes,
    run_cli,
)

TENANT = "tenant-0001"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def configure(sim_env: SimEnv, users: int = 1200, **segments: Any) -> tuple[SimTenant, Config]:
    """Tenant-0001 on userRegistrationDetails with ``segments``; groups given by name."""
    tenant = sim_env.sim.find(TENANT)
    assert tenant is not None
    tenant.users = users
    tenant.directory = None  # rebuilt for this size
    directory = directory_of(tenant)
    if "groups" in segments:
        segments["groups"] = {name: directory.group_named(name).id for name in segments["groups"]}
    document = sim_env.config()
    document["tenants"][1]["source"] = "userRegistrationDetails"
    document["tenants"][1]["segments"] = segments
    sim_env.write_config(document)
    return tenant, load_config(sim_env.config_file)


def label(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"tenant": TENANT, **labels}.items()))


def assert_coverage(values: Samples, prefix: str, labels: dict[str, str], truth: dict) -> None:
    """Users, every status and every strength of one segment or group equal the truth."""
    assert values[(f"entra_{prefix}_users", label(**labels))] == truth["users"]
    if not truth["users"]:  # status and strength lines only for segments that have users
        assert not any(
            name.startswith(f"entra_{prefix}_") and set(label(**labels)) <= set(k)
            for name, k in values
            if name != f"entra_{prefix}_users"
        )
        return
    for status, count in truth["statuses"].items():
        key = (f"entra_{prefix}_registration_users", label(**labels, registrationStatus=status))
        assert values[key] == count, (labels, status)
    for strength, count in truth["strengths"].items():
        key = (f"entra_{prefix}_strength_users", label(**labels, strength=strength))
        assert values[key] == count, (labels, strength)


def assert_matches_truth(values: Samples, truth: dict[str, Any]) -> None:
    segments = {
        (dict(k)["user_type"], dict(k)["role"])
        for name, k in values
        if name == "entra_segment_users" and dict(k)["tenant"] == TENANT
    }
    assert segments == set(truth["segments"])
    for (user_type, role), counts in truth["segments"].items():
        assert_coverage(values, "segment", {"user_type": user_type, "role": role}, counts)
    for name, counts in truth["groups"].items():
        assert_coverage(values, "group", {"group": name}, counts)
    preferred = {
        dict(k)["method"]: v
        for (name, k), v in values.items()
        if name == "entra_system_preferred_method_users" and dict(k)["tenant"] == TENANT
    }
    assert preferred == truth["system_preferred"]
    newest = dt.datetime.fromisoformat(truth["data_timestamp"]).timestamp()
    assert values[("entra_registration_data_timestamp_seconds", label())] == pytest.approx(newest)


async def poll_and_read(runtime: Runtime) -> Samples:
    result = await runtime.poll(TENANT)
    assert result.result == "success", result.failure
    return exposition_samples(runtime.store.render().decode())


async def test_every_segment_group_strength_and_freshness_number_equals_the_truth(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    tenant, config = configure(
        sim_env, privileged_roles=True, groups=["finance", "rollout-wave-1", "devices-only"]
    )
    values = await poll_and_read(make_runtime(config))
    truth = segments_truth(
        tenant,
        DEFAULT_PRIVILEGED_ROLES,
        groups={n: g for n, g in config.tenants[1].segments.groups},
    )
    assert_matches_truth(values, truth)
    # Every label value the contract names shows up in this tenant.
    roles = {role for _, role in truth["segments"]}
    user_types = {user_type for user_type, _ in truth["segments"]}
    assert roles == {"privileged_admin", "admin", "user"}
    assert {"member", "guest", "unknownFutureValue"} <= user_types
    # A method Graph added after this release counts as unclassified, not as nothing.
    unclassified = sum(s["strengths"]["unclassified"] for s in truth["segments"].values())
    assert unclassified > 0
    # Devices only: the group exists, none of its members is a user the report lists.
    assert values[("entra_group_users", label(group="devices-only"))] == 0
    assert (
        "entra_group_registration_users",
        label(group="devices-only", registrationStatus="registered"),
    ) not in values
    # The segments add up to the tenant.
    assert sum(s["users"] for s in truth["segments"].values()) == 1200
    assert values[("entra_tenant_users", label())] == 1200


async def test_privileged_admins_directly_and_through_a_role_assignable_group(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    # The default directory: users 0-2 hold roles directly (user 2 only as PIM-eligible
    # Helpdesk, user 1 also as PIM-eligible Global Administrator), users 3-5 through the
    # role-assignable group tier0-admins, users 3-4 also through global-admins; a service
    # principal and a disabled user (not in the report) hold Global and Exchange admin.
    def privileged(values: Samples) -> float:
        return sum(
            v
            for (name, k), v in values.items()
            if name == "entra_segment_users" and dict(k)["role"] == "privileged_admin"
        )

    tenant, config = configure(sim_env, privileged_roles=[GLOBAL_ADMIN])
    assert tenant.users == 1200
    values = await poll_and_read(make_runtime(config))
    assert privileged(values) == 3  # user 0, and 3-4 by group; the service principal is no user

    _, config = configure(sim_env, privileged_roles=[GLOBAL_ADMIN], include_eligible=True)
    values = await poll_and_read(make_runtime(config))
    assert privileged(values) == 4  # and user 1, eligible

    _, config = configure(sim_env, privileged_roles=[CONDITIONAL_ACCESS_ADMIN])
    values = await poll_and_read(make_runtime(config))
    assert privileged(values) == 3  # the group's three members

    _, config = configure(sim_env, privileged_roles=[HELPDESK_ADMIN])
    values = await poll_and_read(make_runtime(config))
    assert privileged(values) == 0  # only eligible: not counted without include_eligible

    _, config = configure(sim_env, privileged_roles=[HELPDESK_ADMIN], include_eligible=True)
    values = await poll_and_read(make_runtime(config))
    assert privileged(values) == 1

    _, config = configure(sim_env, privileged_roles=True)
    runtime = make_runtime(config)
    values = await poll_and_read(runtime)
    assert privileged(values) == 5  # not 7: the service principal and the disabled user


async def test_nested_group_members_count_once_and_devices_never(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    _, config = configure(sim_env, groups=["finance"])
    values = await poll_and_read(make_runtime(config))
    # finance: users 7, 17, 27, ... and through finance-emea users 8, 18, 28, ...
    assert values[("entra_group_users", label(group="finance"))] == 240


async def test_users_graph_repeats_across_pages_count_once(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    tenant, config = configure(sim_env, privileged_roles=True, groups=["finance"])
    tenant.page_size, tenant.page_overlap = 100, 7  # each page repeats 7 users of the one before
    runtime = make_runtime(config)
    values = await poll_and_read(runtime)
    truth = segments_truth(
        tenant, DEFAULT_PRIVILEGED_ROLES, groups=dict(config.tenants[1].segments.groups)
    )
    assert_matches_truth(values, truth)
    assert values[("entra_tenant_users", label())] == 1200
    pages = sim_env.sim.find(TENANT).details_pages  # the simulator's own count
    repeated = [r for r in caplog.records if getattr(r, "repeated_rows", 0)]
    assert len(repeated) == 1 and repeated[0].repeated_rows == 7 * (pages - 1)
    assert repeated[0].tenant == TENANT


async def test_null_booleans_count_as_false(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    tenant, config = configure(sim_env)
    values = await poll_and_read(make_runtime(config))
    users = [detail_user(tenant, i) for i in range(1200)]
    assert any(u["isMfaCapable"] is None for u in users)  # the simulator sends nulls
    capable = sum(u["isMfaCapable"] is True for u in users)
    counted = sum(
        v
        for (name, k), v in values.items()
        if name == "entra_segment_registration_users"
        and dict(k).get("registrationStatus") == "mfaCapable"
    )
    assert counted == capable


async def test_a_tenant_with_no_users(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    _, config = configure(sim_env, users=0, privileged_roles=True, groups=["finance"])
    values = await poll_and_read(make_runtime(config))
    assert values[("entra_tenant_users", label())] == 0
    assert values[("entra_group_users", label(group="finance"))] == 0
    assert not any(
        name == "entra_segment_users" and dict(k)["tenant"] == TENANT for name, k in values
    )
    assert ("entra_registration_data_timestamp_seconds", label()) not in values


async def test_a_failed_group_page_fails_the_poll_and_publishes_nothing_partial(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    tenant, config = configure(sim_env, groups=["finance"])
    runtime = make_runtime(config)
    before = await poll_and_read(runtime)
    tenant.users = 12_000  # finance spans three pages of 999 members now...
    tenant.directory = None
    directory_of(tenant)
    tenant.fail_group_page = 1  # ...and the second one answers 500, every time
    result = await runtime.poll(TENANT)
    assert result.result == "http_error"
    assert result.failure is not None and result.failure.message.startswith("group finance: ")
    after = exposition_samples(runtime.store.render().decode())
    # The last good report stays, untouched by the failed poll.
    assert (
        after[("entra_group_users", label(group="finance"))]
        == before[("entra_group_users", label(group="finance"))]
    )
    assert after[("entra_exporter_tenant_up", label())] == 0


async def test_a_group_that_does_not_exist_fails_the_poll_naming_the_group(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    configure(sim_env)
    document = sim_env.config()
    document["tenants"][1]["segments"] = {
        "groups": {"gone": "3f1c2b9e-0000-4000-8000-000000000001"}
    }
    sim_env.write_config(document)
    runtime = make_runtime(load_config(sim_env.config_file))
    result = await runtime.poll(TENANT)
    assert (result.result, result.failure and result.failure.http_status) == ("http_error", 404)
    assert result.failure is not None
    assert result.failure.message.startswith("group gone: HTTP 404")
    assert (await runtime.poll("tenant-0000")).result == "success"  # other tenants untouched


async def test_role_pages_of_nothing_new_under_ever_new_links_are_refused_within_seconds(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    # Each page lists the same one principal and links on to a page never seen before: no
    # link repeats, no page is empty; the walk sees nothing new and refuses it.
    _, config = configure(sim_env, privileged_roles=True)
    runtime = make_runtime(config)
    sim_env.sim.set_fault(TENANT, "repeat_page", count=0)
    started = time.monotonic()
    result = await runtime.poll(TENANT)
    assert result.result == "parse_error" and result.failure is not None
    assert "20 pages in a row with nothing new, and still a link" in result.failure.message
    assert "role assignments of" in result.failure.message
    assert time.monotonic() - started < 10  # the budget is 0.9 x the interval
    assert result.tally.graph_requests <= 21
    snapshot = runtime.store.snapshot(TENANT)
    assert snapshot is not None and snapshot.polled  # /readyz is not held by the walk


async def test_auto_settles_on_the_successor_with_segments(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    tenant, config = configure(sim_env, privileged_roles=True, groups=["finance"])
    tenant.seed_gone = True
    document = sim_env.config()
    document["tenants"][1]["source"] = "auto"
    sim_env.write_config(document)
    config = load_config(sim_env.config_file)
    runtime = make_runtime(config)
    for _ in range(2):  # the switch, then straight to the successor
        values = await poll_and_read(runtime)
        truth = segments_truth(
            tenant, DEFAULT_PRIVILEGED_ROLES, groups=dict(config.tenants[1].segments.groups)
        )
        assert_matches_truth(values, truth)


async def test_every_role_and_group_page_is_a_counted_graph_request(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    _, config = configure(sim_env, privileged_roles=True, groups=["finance"])
    before = sim_env.sim.stats()["tenants"][TENANT]["graph_requests"]
    runtime = make_runtime(config)
    result = await runtime.poll(TENANT)
    served = sim_env.sim.stats()["tenants"][TENANT]["graph_requests"] - before
    # 9 roles, the role group's members, the group's members, 2 report pages of 999.
    assert result.tally.graph_requests == served
    assert served >= 9 + 1 + 1 + 2
    snapshot = runtime.store.snapshot(TENANT)
    assert snapshot is not None and snapshot.graph_requests == served


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_notes_only_the_deliberate_camel_case_label_with_segments(
    sim_env: SimEnv,
) -> None:
    configure(sim_env, privileged_roles=True, groups=["finance", "devices-only"])
    result = run_cli(f"--config.file={sim_env.config_file}", "--once")
    assert result.returncode == 0, result.stderr
    assert "entra_group_strength_users{" in result.stdout
    assert promtool_notes(result.stdout) == {
        f"{family} {CAMEL_CASE_NOTE}"
        for family in (
            "entra_credential_registration_users",
            "entra_segment_registration_users",
            "entra_group_registration_users",
        )
    }
