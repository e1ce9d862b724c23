"""SMS and voice retirement readiness and the authentication methods policy: who is stopped on
which date, what the policy allows and nudges, compared with the simulator's truth exactly."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from entra_simulator.policy import FORBIDDEN, VARIANTS, policy_truth
from entra_simulator.segments import GLOBAL_ADMIN, HELPDESK_ADMIN, directory_of, segments_truth
from exporter.config.loader import load_config
from exporter.config.model import DEFAULT_PRIVILEGED_ROLES, Config
from exporter.reports.details import RegistrationDetailsCounter, SegmentContext
from tests.conftest import Runtime, SimEnv, exposition_samples, run_cli

TENANT = "tenant-0001"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def key(n: int) -> str:
    return str(uuid.UUID(int=n))


# ----------------------------------------------------------------- the counting rule, row by row


def row(n: int, methods: list[str], user_type: str = "member", upn: str | None = None) -> dict:
    return {
        "id": key(n),
        "userPrincipalName": upn or f"user{n}@contoso.example",
        "methodsRegistered": methods,
        "userType": user_type,
        "isAdmin": False,
    }


def test_each_cohort_lands_on_its_date_and_a_stronger_method_is_never_counted() -> None:
    external = "someone_partner.example#EXT#@contoso.onmicrosoft.com"
    rows = [
        row(1, ["mobilePhone"]),  # Global Administrator, directly: 07-01
        row(2, ["officePhone"]),  # Global Administrator through a group: 07-01
        row(3, ["alternateMobilePhone"]),  # eligible Global Administrator: 07-01
        row(4, ["mobilePhone"], "member", external),  # external member: 07-01
        row(5, ["mobilePhone"], "guest", external),  # external guest: 07-01
        row(6, ["mobilePhone"], "guest"),  # internal guest: 02-01
        row(7, ["mobilePhone", "email"]),  # member: 02-01
        row(8, ["mobilePhone", "fido2SecurityKey"]),  # a stronger method: not stopped
        row(9, ["mobilePhone", "microsoftAuthenticatorPush"], "guest", external),  # likewise
        row(10, ["email"]),  # no phone at all
        row(11, ["mobilePhone"], "unknownFutureValue"),  # a user type Microsoft adds: 02-01
    ]
    # The look-ups hand over who is a Global Administrator (directly, by group, eligible).
    context = SegmentContext(global_admins=frozenset({1, 2, 3}))
    counter = RegistrationDetailsCounter(context)
    counter.add_page(json.dumps({"value": rows}).encode())
    segments = counter.report().segments
    assert segments is not None
    assert segments.phone_only == (("2027-02-01", 3), ("2027-07-01", 5))


def test_an_external_user_is_dated_july_even_when_the_tenant_has_no_global_administrator() -> None:
    # No ID set is needed then: the external mark must still be read.
    external = "someone_partner.example#EXT#@contoso.onmicrosoft.com"
    counter = RegistrationDetailsCounter(SegmentContext(global_admins=frozenset()))
    rows = [row(1, ["mobilePhone"], "guest", external), row(2, ["mobilePhone"], "member")]
    counter.add_page(json.dumps({"value": rows}).encode())
    segments = counter.report().segments
    assert segments is not None and segments.phone_only == (("2027-02-01", 1), ("2027-07-01", 1))


def test_without_readiness_there_is_no_phone_only_count() -> None:
    counter = RegistrationDetailsCounter(SegmentContext())
    counter.add_page(json.dumps({"value": [row(1, ["mobilePhone"])]}).encode())
    segments = counter.report().segments
    assert segments is not None and segments.phone_only is None


def test_a_missing_user_principal_name_is_an_internal_account() -> None:
    counter = RegistrationDetailsCounter(SegmentContext(global_admins=frozenset()))
    page = {"value": [{**row(1, ["mobilePhone"]), "userPrincipalName": None}]}
    counter.add_page(json.dumps(page).encode())
    segments = counter.report().segments
    assert segments is not None and segments.phone_only == (("2027-02-01", 1), ("2027-07-01", 0))


# ----------------------------------------------------------------- against the simulator


def configure(sim_env: SimEnv, users: int = 1500, **tenant: Any) -> Config:
    document = sim_env.config()
    target = document["tenants"][1]
    target.update({"source": "userRegistrationDetails", **tenant})
    sim = sim_env.sim.find(TENANT)
    assert sim is not None
    sim.users = users
    sim.directory = None
    sim_env.write_config(document)
    return load_config(sim_env.config_file)


def phone_only(values: Samples, tenant: str = TENANT) -> dict[str, float]:
    return {
        dict(labels)["retirement"]: value
        for (name, labels), value in values.items()
        if name == "entra_phone_only_users" and dict(labels)["tenant"] == tenant
    }


async def poll(runtime: Runtime, tenant: str = TENANT) -> Samples:
    result = await runtime.poll(tenant)
    assert result.result == "success", result.failure
    return exposition_samples(runtime.store.render().decode())


@pytest.mark.parametrize("include_eligible", [False, True])
async def test_phone_only_users_per_date_equal_the_truth(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], include_eligible: bool
) -> None:
    config = configure(
        sim_env, segments={"privileged_roles": True, "include_eligible": include_eligible}
    )
    values = await poll(make_runtime(config))
    tenant = sim_env.sim.find(TENANT)
    assert tenant is not None
    truth = segments_truth(tenant, DEFAULT_PRIVILEGED_ROLES, include_eligible)
    assert phone_only(values) == truth["phone_only"]
    assert truth["phone_only"]["2027-02-01"] > 0 and truth["phone_only"]["2027-07-01"] > 0
    dates = {
        dict(labels)["retirement"]: value
        for (name, labels), value in values.items()
        if name == "entra_sms_voice_retirement_timestamp_seconds"
    }
    assert dates == {"2027-02-01": 1_801_440_000, "2027-07-01": 1_814_400_000}


async def test_global_administrators_are_looked_up_when_custom_roles_leave_them_out(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    config = configure(sim_env, segments={"privileged_roles": [HELPDESK_ADMIN]})
    runtime = make_runtime(config)
    values = await poll(runtime)
    tenant = sim_env.sim.find(TENANT)
    assert tenant is not None
    truth = segments_truth(tenant, (HELPDESK_ADMIN,))
    assert phone_only(values) == truth["phone_only"]
    # Global Administrators are not privileged_admin here: only the listed role is.
    directory = directory_of(tenant)
    assert any(a.role_id == GLOBAL_ADMIN for a in directory.assignments)
    privileged = sum(
        v
        for (name, labels), v in values.items()
        if name == "entra_segment_users" and dict(labels).get("role") == "privileged_admin"
    )
    assert privileged == sum(
        s["users"] for (_, role), s in truth["segments"].items() if role == "privileged_admin"
    )


async def test_without_privileged_roles_the_metric_is_absent(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    config = configure(sim_env, segments={"privileged_roles": False})
    values = await poll(make_runtime(config))
    assert phone_only(values) == {}
    assert not any(name == "entra_sms_voice_retirement_timestamp_seconds" for name, _ in values)
    assert (
        "entra_segment_users",
        (("role", "user"), ("tenant", TENANT), ("user_type", "member")),
    ) in values


def test_check_config_says_per_tenant_whether_readiness_is_on_and_why_not(
    sim_env: SimEnv,
) -> None:
    document = sim_env.config()
    document["tenants"][0]["source"] = "userRegistrationDetails"
    document["tenants"][0]["segments"] = {"privileged_roles": True}
    document["tenants"][0]["policy"] = True
    document["tenants"][1]["source"] = "userRegistrationDetails"  # no privileged_roles
    document["tenants"][2].update({"cloud": "usgov", "segments": {"privileged_roles": True}})
    document["tenants"][2]["source"] = "userRegistrationDetails"
    sim_env.write_config(document)
    result = run_cli("--check-config", "--config.file", str(sim_env.config_file))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    readiness = [line.strip() for line in lines if "retirement readiness" in line]
    assert readiness == [
        "sms/voice retirement readiness: on",
        "sms/voice retirement readiness: off: segments.privileged_roles is not set "
        "(Global Administrators need it)",
        "sms/voice retirement readiness: off: cloud usgov has no retirement date yet",
    ]
    permissions = [line.strip() for line in lines if line.strip().startswith("permissions:")]
    assert permissions[0] == (
        "permissions: AuditLog.Read.All, RoleManagement.Read.Directory, GroupMember.Read.All, "
        "Policy.Read.AuthenticationMethod"
    )
    assert permissions[1] == "permissions: AuditLog.Read.All"


# ----------------------------------------------------------------- the methods policy


def policy_values(values: Samples, tenant: str) -> dict[str, Any]:
    def labelled(metric: str, label: str) -> dict[str, float]:
        return {
            dict(k)[label]: v
            for (name, k), v in values.items()
            if name == metric and dict(k)["tenant"] == tenant
        }

    def single(metric: str) -> float | None:
        return values.get((metric, (("tenant", tenant),)))

    campaign = labelled("entra_registration_campaign_state", "state")
    migration = labelled("entra_authentication_methods_policy_migration_state", "state")
    opted = single("entra_passkey_migration_opted_out")
    return {
        "methods": {
            m: v == 1 for m, v in labelled("entra_authentication_method_enabled", "method").items()
        },
        "campaign_state": next(s for s, v in campaign.items() if v == 1),
        "targets": sorted(labelled("entra_registration_campaign_target_info", "method")),
        "snooze_days": seconds / 86_400
        if (seconds := single("entra_registration_campaign_snooze_seconds")) is not None
        else None,
        "opted_out": None if opted is None else opted == 1,
        "migration_state": next(s for s, v in migration.items() if v == 1),
        "known_states": set(campaign) >= {"default", "enabled", "disabled"},
    }


@pytest.mark.parametrize("variant", [v for v in range(VARIANTS) if v != FORBIDDEN])
async def test_every_policy_variant_equals_its_truth(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], variant: int
) -> None:
    tenant = sim_env.sim.find(TENANT)
    assert tenant is not None
    tenant.policy_variant = variant
    config = configure(sim_env, policy=True)
    values = await poll(make_runtime(config))
    shown = policy_values(values, TENANT)
    assert shown.pop("known_states")
    assert shown == policy_truth(variant)
    assert (
        values[("entra_exporter_collector_up", (("collector", "policy"), ("tenant", TENANT)))] == 1
    )


async def test_a_refused_policy_fails_its_collector_alone_naming_the_permission(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    tenant = sim_env.sim.find(TENANT)
    assert tenant is not None
    tenant.policy_variant = FORBIDDEN
    runtime = make_runtime(configure(sim_env, policy=True))
    result = await runtime.poll(TENANT)
    assert result.result == "auth_error"
    assert result.failure is not None
    assert "Policy.Read.AuthenticationMethod" in result.failure.message
    values = exposition_samples(runtime.store.render().decode())
    up = {
        dict(k)["collector"]: v
        for (name, k), v in values.items()
        if name == "entra_exporter_collector_up" and dict(k)["tenant"] == TENANT
    }
    assert up == {"report": 1, "policy": 0}
    assert values[("entra_exporter_tenant_up", (("tenant", TENANT),))] == 0
    assert values[("entra_tenant_users", (("tenant", TENANT),))] == 1500  # the report is shown
    assert not any(name == "entra_authentication_method_enabled" for name, _ in values)
    page = runtime.store.snapshot(TENANT)
    assert page is not None and "Policy.Read.AuthenticationMethod" in page.recent[-1].reason


async def test_the_pages_show_phone_only_users_by_date_and_the_policy(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    from exporter.web.pages import render_landing_page, render_tenant_page

    tenant = sim_env.sim.find(TENANT)
    assert tenant is not None
    tenant.policy_variant = 1
    runtime = make_runtime(configure(sim_env, policy=True, segments={"privileged_roles": True}))
    await poll(runtime)
    truth = segments_truth(tenant, DEFAULT_PRIVILEGED_ROLES)["phone_only"]
    landing = render_landing_page(runtime.store.snapshots(), "/metrics", lambda _: None).decode()
    expected = (
        f"phone-only: {truth['2027-02-01']:,} by 2027-02-01, {truth['2027-07-01']:,} by 2027-07-01"
    )
    assert expected in landing
    assert (
        "policy: Sms on, Voice on, Fido2 on; campaign enabled (microsoftAuthenticator)" in landing
    )
    snapshot = runtime.store.snapshot(TENANT)
    assert snapshot is not None
    page = render_tenant_page(snapshot, lambda _: None).decode()
    assert expected in page and "passkey migration opted out" in page
    assert "Collectors: report" in page
