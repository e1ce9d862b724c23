"""Report sources: the seed's report, its successor userRegistrationDetails, and auto."""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import Callable

import pytest

from entra_simulator.directory import SimTenant, details_page, details_truth, parse_filter
from exporter.config.loader import load_config
from exporter.config.model import Config
from exporter.reports.details import DETAIL_FLAGS, RegistrationDetailsCounter
from exporter.reports.registration import ReportParseError
from tests.conftest import Runtime, SimEnv

STATUS_OF_FLAG = dict(DETAIL_FLAGS)


def set_source(sim_env: SimEnv, source: str, **defaults: str) -> None:
    document = sim_env.config()
    document["defaults"]["source"] = source
    document["defaults"].update(defaults)
    sim_env.write_config(document)


def assert_matches_truth(report: object, tenant: SimTenant) -> None:
    truth = details_truth(tenant)
    assert report.total_users == truth["users"]  # type: ignore[attr-defined]
    by_status = dict(report.users_by_status)  # type: ignore[attr-defined]
    assert by_status == {STATUS_OF_FLAG[flag]: count for flag, count in truth["flags"].items()}
    assert dict(report.users_by_method) == truth["methods"]  # type: ignore[attr-defined]


async def test_user_registration_details_are_counted_exactly(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    tenant = sim_env.sim.find("tenant-0000")
    assert tenant is not None
    tenant.users = 2500  # three pages of 999
    set_source(sim_env, "userRegistrationDetails")
    runtime = make_runtime(load_config(sim_env.config_file))
    result = await runtime.poll("tenant-0000")
    assert result.result == "success", result.failure
    assert result.source == "userRegistrationDetails"
    assert_matches_truth(result.report, tenant)
    assert tenant.details_pages == 3
    text = runtime.store.render().decode()
    assert (
        'entra_authentication_method_users{tenant="tenant-0000",method="microsoftAuthenticatorPush"}'
        in text
    )
    assert 'registrationStatus="passwordlessCapable"' in text
    assert 'source="userRegistrationDetails"' in text


async def test_a_failed_page_fails_the_poll_without_partial_numbers(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    tenant = sim_env.sim.find("tenant-0001")
    assert tenant is not None
    tenant.users = 3000
    tenant.fail_page = 2
    set_source(sim_env, "userRegistrationDetails", interval="1m", timeout="2s")
    runtime = make_runtime(load_config(sim_env.config_file))
    result = await runtime.poll("tenant-0001")
    assert result.result == "http_error"
    assert result.report is None
    assert "entra_tenant_users{" not in runtime.store.render().decode()


async def test_auto_switches_once_when_the_seed_report_is_gone(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    gone = sim_env.sim.find("tenant-0000")
    assert gone is not None
    gone.seed_gone = True
    gone.users = 120
    set_source(sim_env, "auto")
    runtime = make_runtime(load_config(sim_env.config_file))
    with caplog.at_level(logging.WARNING, logger="exporter"):
        first = await runtime.poll("tenant-0000")
        second = await runtime.poll("tenant-0000")
    assert (first.result, first.source) == ("success", "userRegistrationDetails")
    assert (second.result, second.source) == ("success", "userRegistrationDetails")
    assert_matches_truth(second.report, gone)
    switches = [
        r for r in caplog.records if "switching to userRegistrationDetails" in r.getMessage()
    ]
    assert len(switches) == 1 and switches[0].tenant == "tenant-0000"  # type: ignore[attr-defined]
    # The first poll asked the seed's report (gone) once; the second went straight to the successor.
    assert gone.graph_requests == 1 + 1 + 1
    # A tenant whose seed report still answers stays with it.
    other = await runtime.poll("tenant-0001")
    assert (other.result, other.source) == ("success", "credentialUserRegistrationCount")
    text = runtime.store.render().decode()
    assert 'tenant="tenant-0000",tenant_id=' in text and 'source="userRegistrationDetails"' in text
    assert 'source="credentialUserRegistrationCount"' in text


async def test_a_gone_seed_report_without_auto_is_an_http_error(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    gone = sim_env.sim.find("tenant-0000")
    assert gone is not None
    gone.seed_gone = True
    runtime = make_runtime(load_config(sim_env.config_file))
    result = await runtime.poll("tenant-0000")
    assert result.result == "http_error"
    assert result.failure is not None and result.failure.error_code == "BadRequest"


@pytest.mark.slow
async def test_paging_a_100000_user_tenant_keeps_memory_flat(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    big = sim_env.sim.find("tenant-0002")
    assert big is not None
    big.users = 100_000
    set_source(sim_env, "userRegistrationDetails", interval="5m", timeout="30s")
    runtime = make_runtime(load_config(sim_env.config_file))
    tracemalloc.start()
    try:
        result = await runtime.poll("tenant-0002")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.result == "success", result.failure
    assert result.report is not None and result.report.total_users == 100_000
    assert big.details_pages == 101  # ceil(100000 / 999)
    # One page (999 users, a few hundred KB of JSON) at a time, not 100,000 users.
    assert peak < 24 * 2**20, peak


def test_the_counter_refuses_malformed_pages() -> None:
    counter = RegistrationDetailsCounter()
    for page in (
        {"value": {}},
        {"value": [1]},
        {"value": [{"isMfaRegistered": "yes"}]},
        {"value": [{"methodsRegistered": "email"}]},
    ):
        with pytest.raises(ReportParseError):
            counter.add_page(page)
    page = counter.add_page({"value": [], "@odata.nextLink": "https://graph/next"})
    assert page[:2] == ("https://graph/next", 0)


def test_simulator_select_filter_count_and_paging() -> None:
    tenant = SimTenant(
        name="t", tenant_id="3c0f1b2e-0000-4000-8000-000000000001", client_id="c", users=50
    )
    page = details_page(tenant, {"$select": "id,isMfaRegistered", "$top": "20"}, None)
    assert len(page.users) == 20 and set(page.users[0]) == {"id", "isMfaRegistered"}
    assert page.next_offset == 20
    filtered = details_page(
        tenant, {"$filter": "isMfaRegistered eq true", "$count": "true", "$top": "999"}, "eventual"
    )
    assert (
        filtered.count == len(filtered.users) == details_truth(tenant)["flags"]["isMfaRegistered"]
    )
    with pytest.raises(ValueError, match="ConsistencyLevel"):
        details_page(tenant, {"$count": "true"}, None)
    with pytest.raises(ValueError, match="Invalid filter"):
        parse_filter("userPrincipalName eq 'x'")


def test_paging_sources_get_the_whole_interval_as_their_budget(sim_env: SimEnv) -> None:
    from exporter.polling.tenant import poll_budget

    set_source(sim_env, "credentialUserRegistrationCount", interval="10m", timeout="30s")
    tenant = load_config(sim_env.config_file).tenants[0]
    assert poll_budget(tenant) == 120  # 4 request timeouts for one report call
    assert poll_budget(tenant, "userRegistrationDetails") == 540  # 0.9 x interval for paging
    set_source(sim_env, "auto", interval="10m", timeout="30s")
    assert poll_budget(load_config(sim_env.config_file).tenants[0]) == 540
