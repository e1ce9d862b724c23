"""Metrics: exact exposition, staleness, removal, OpenMetrics and gzip."""

from __future__ import annotations

import gzip
import time

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from exporter.failures import PollFailure
from exporter.metrics import MetricsStore, TenantSnapshot, render_tenant_block
from exporter.poller import PollResult
from exporter.report import RegistrationReport
from tests.conftest import tenant_config as tenant

REPORT = RegistrationReport(100, (("registered", 40), ("mfaRegistered", 30)))


def success(finished_at: float | None = None, report: RegistrationReport = REPORT) -> PollResult:
    finished = finished_at if finished_at is not None else time.time()
    return PollResult("success", report, None, 0.25, finished, token_requests=1)


def failure(result: str = "throttled") -> PollResult:
    return PollResult(result, None, PollFailure(result, "x", 429), 0.5, time.time())


def samples(store: MetricsStore) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = store.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_tenant_block_exact_lines() -> None:
    snapshot = TenantSnapshot.for_tenant(tenant('a"b\\c')).after_poll(success(1700000000.5), 1800)
    lines = render_tenant_block(snapshot)
    assert lines[0] == (
        'entra_credential_registration_users{tenant="a\\"b\\\\c",registrationStatus="registered"} 40\n'
        'entra_credential_registration_users{tenant="a\\"b\\\\c",registrationStatus="mfaRegistered"} 30\n'
    )
    assert lines[1] == 'entra_tenant_users{tenant="a\\"b\\\\c"} 100\n'
    assert lines[4] == 'entra_exporter_tenant_up{tenant="a\\"b\\\\c"} 1\n'
    assert (
        lines[5]
        == 'entra_exporter_last_success_timestamp_seconds{tenant="a\\"b\\\\c"} 1.7000000005e+09\n'
    )


def test_every_contract_metric_is_present_and_parses() -> None:
    store = MetricsStore()
    config = tenant()
    store.set_tenants((config,))
    store.record_poll(config, success())
    values = samples(store)
    t = ("tenant", "contoso")
    assert (
        values[
            (
                "entra_credential_registration_users",
                frozenset({t, ("registrationStatus", "registered")}),
            )
        ]
        == 40
    )
    assert values[("entra_tenant_users", frozenset({t}))] == 100
    assert values[("entra_exporter_tenant_up", frozenset({t}))] == 1
    assert values[("entra_exporter_last_poll_duration_seconds", frozenset({t}))] == 0.25
    assert values[("entra_exporter_polls_total", frozenset({t, ("result", "success")}))] == 1
    assert values[("entra_exporter_polls_total", frozenset({t, ("result", "parse_error")}))] == 0
    assert values[("entra_exporter_token_requests_total", frozenset({t}))] == 1
    assert values[("entra_exporter_config_last_reload_successful", frozenset())] == 1
    info = {
        t,
        ("tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("cloud", "global"),
        ("source", "credentialUserRegistrationCount"),
    }
    assert values[("entra_tenant_info", frozenset(info))] == 1
    assert any(name == "entra_exporter_build_info" for name, _ in values)
    assert any(name == "process_resident_memory_bytes" for name, _ in values)


def test_a_failed_poll_keeps_the_last_values_until_stale_after() -> None:
    store = MetricsStore()
    config = tenant(stale_after=60)
    store.set_tenants((config,))
    store.record_poll(config, success())
    store.record_poll(config, failure())
    values = samples(store)
    t = ("tenant", "contoso")
    assert values[("entra_tenant_users", frozenset({t}))] == 100
    assert values[("entra_exporter_tenant_up", frozenset({t}))] == 0
    assert values[("entra_exporter_polls_total", frozenset({t, ("result", "throttled")}))] == 1


def test_report_series_go_when_the_last_success_is_older_than_stale_after() -> None:
    store = MetricsStore()
    config = tenant(stale_after=60)
    store.set_tenants((config,))
    store.record_poll(config, success(finished_at=time.time() - 61))
    values = samples(store)
    assert not any(
        name in ("entra_tenant_users", "entra_credential_registration_users") for name, _ in values
    )
    # Health series stay: the tenant is still configured.
    assert ("entra_exporter_tenant_up", frozenset({("tenant", "contoso")})) in values
    assert (
        "entra_exporter_last_success_timestamp_seconds",
        frozenset({("tenant", "contoso")}),
    ) in values


def test_cached_exposition_expires_exactly_when_a_report_turns_stale() -> None:
    store = MetricsStore()
    config = tenant(stale_after=60)
    store.set_tenants((config,))
    store.record_poll(config, success(finished_at=time.time() - 59.8))
    assert b"entra_tenant_users{" in store.render()
    deadline = time.monotonic() + 5
    while b"entra_tenant_users{" in store.render():
        assert time.monotonic() < deadline, "stale report was still served from the cache"
        time.sleep(0.02)


def test_removed_tenants_lose_every_series_and_late_results_are_dropped() -> None:
    store = MetricsStore()
    a, b = tenant("a"), tenant("b")
    store.set_tenants((a, b))
    store.record_poll(a, success())
    store.record_poll(b, success())
    store.set_tenants((a,))
    assert store.record_poll(b, success()) is None
    text = store.render().decode()
    assert 'tenant="b"' not in text
    assert 'tenant="a"' in text


def test_kept_tenants_keep_their_counters_across_a_reload() -> None:
    store = MetricsStore()
    a = tenant("a")
    store.set_tenants((a,))
    store.record_poll(a, success())
    store.set_tenants((a, tenant("b")))
    assert (
        samples(store)[
            ("entra_exporter_polls_total", frozenset({("tenant", "a"), ("result", "success")}))
        ]
        == 1
    )


def test_tenants_are_reported_before_their_first_poll_as_down() -> None:
    store = MetricsStore()
    store.set_tenants((tenant(),))
    assert not store.all_polled()
    values = samples(store)
    assert values[("entra_exporter_tenant_up", frozenset({("tenant", "contoso")}))] == 0
    assert ("entra_tenant_users", frozenset({("tenant", "contoso")})) not in values


def test_openmetrics_exposition_parses_and_ends_with_eof() -> None:
    store = MetricsStore()
    config = tenant()
    store.set_tenants((config,))
    store.record_poll(config, success())
    text = store.render(openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    assert "# TYPE entra_exporter_polls counter" in text
    families = {f.name: f for f in parse_openmetrics(text)}
    assert families["entra_exporter_polls"].type == "counter"
    assert families["entra_tenant_users"].samples[0].value == 100


def test_gzip_exposition_is_the_same_text() -> None:
    store = MetricsStore()
    config = tenant()
    store.set_tenants((config,))
    store.record_poll(config, success())
    plain = store.render().decode()
    unzipped = gzip.decompress(store.render(gzipped=True)).decode()
    # Process metrics differ between two renders; the tenant part must be identical.
    assert plain.split("# HELP process_")[0] == unzipped.split("# HELP process_")[0]


def test_reload_failure_sets_the_gauge() -> None:
    store = MetricsStore()
    store.record_reload(False)
    assert samples(store)[("entra_exporter_config_last_reload_successful", frozenset())] == 0
    store.record_reload(True)
    assert samples(store)[("entra_exporter_config_last_reload_successful", frozenset())] == 1
