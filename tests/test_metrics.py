"""Metrics: exact exposition, staleness, removal, OpenMetrics and gzip."""

from __future__ import annotations

import dataclasses
import gzip
import logging
import re
import time
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from exporter.graph.answers import RequestTally
from exporter.graph.failures import PollFailure
from exporter.logs import SecretRedactor, TenantLogger
from exporter.metrics import store as store_module
from exporter.metrics.families import (
    DATA_TIMESTAMP,
    LAST_SUCCESS,
    METHOD_USERS,
    REGISTRATION_USERS,
    SEGMENT_USERS,
    TENANT_UP,
    TENANT_USERS,
)
from exporter.metrics.rendering import render_tenant_block
from exporter.metrics.snapshots import (
    RECENT_POLLS,
    CollectorResult,
    PollRecord,
    PollResult,
    TenantSnapshot,
)
from exporter.metrics.store import MetricsStore
from exporter.reports.enforcement import CaPolicy, EnforcementPolicies
from exporter.reports.policy import MethodsPolicy
from exporter.reports.registration import CoverageCounts, RegistrationReport, SegmentReport
from tests.conftest import record_poll, track_tenants
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
    assert lines[REGISTRATION_USERS] == (
        'entra_credential_registration_users{tenant="a\\"b\\\\c",registrationStatus="registered"} 40\n'
        'entra_credential_registration_users{tenant="a\\"b\\\\c",registrationStatus="mfaRegistered"} 30\n'
    )
    assert lines[TENANT_USERS] == 'entra_tenant_users{tenant="a\\"b\\\\c"} 100\n'
    assert lines[TENANT_UP] == 'entra_exporter_tenant_up{tenant="a\\"b\\\\c"} 1\n'
    assert (
        lines[LAST_SUCCESS]
        == 'entra_exporter_last_success_timestamp_seconds{tenant="a\\"b\\\\c"} 1.7000000005e+09\n'
    )


def test_every_contract_metric_is_present_and_parses() -> None:
    store = MetricsStore()
    config = tenant()
    track_tenants(store, (config,))
    record_poll(store, config, success())
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
        ("tenant_id", "5f1c3d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f"),
        ("cloud", "global"),
        ("source", "credentialUserRegistrationCount"),
    }
    assert values[("entra_tenant_info", frozenset(info))] == 1
    assert any(name == "entra_exporter_build_info" for name, _ in values)
    assert any(name == "process_resident_memory_bytes" for name, _ in values)


def test_a_failed_poll_keeps_the_last_values_until_stale_after() -> None:
    store = MetricsStore()
    config = tenant(stale_after=60)
    track_tenants(store, (config,))
    record_poll(store, config, success())
    record_poll(store, config, failure())
    values = samples(store)
    t = ("tenant", "contoso")
    assert values[("entra_tenant_users", frozenset({t}))] == 100
    assert values[("entra_exporter_tenant_up", frozenset({t}))] == 0
    assert values[("entra_exporter_polls_total", frozenset({t, ("result", "throttled")}))] == 1


def test_report_series_go_when_the_last_success_is_older_than_stale_after() -> None:
    store = MetricsStore()
    config = tenant(stale_after=60)
    track_tenants(store, (config,))
    record_poll(store, config, success(finished_at=time.time() - 61))
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
    track_tenants(store, (config,))
    record_poll(store, config, success(finished_at=time.time() - 59.8))
    assert b"entra_tenant_users{" in store.render()
    deadline = time.monotonic() + 5
    while b"entra_tenant_users{" in store.render():
        assert time.monotonic() < deadline, "stale report was still served from the cache"
        time.sleep(0.02)


def test_removed_tenants_lose_every_series_and_late_results_are_dropped() -> None:
    store = MetricsStore()
    a, b = tenant("a"), tenant("b")
    track_tenants(store, (a, b))
    record_poll(store, a, success())
    record_poll(store, b, success())
    track_tenants(store, (a,))
    assert record_poll(store, b, success()) is None  # a removed tenant publishes nothing
    text = store.render().decode()
    assert 'tenant="b"' not in text
    assert 'tenant="a"' in text


def test_kept_tenants_keep_their_counters_across_a_reload() -> None:
    store = MetricsStore()
    a = tenant("a")
    track_tenants(store, (a,))
    record_poll(store, a, success())
    track_tenants(store, (a, tenant("b")))
    assert (
        samples(store)[
            ("entra_exporter_polls_total", frozenset({("tenant", "a"), ("result", "success")}))
        ]
        == 1
    )


def test_tenants_are_reported_before_their_first_poll_as_down() -> None:
    store = MetricsStore()
    track_tenants(store, (tenant(),))
    assert not store.all_polled()
    values = samples(store)
    assert values[("entra_exporter_tenant_up", frozenset({("tenant", "contoso")}))] == 0
    assert ("entra_tenant_users", frozenset({("tenant", "contoso")})) not in values


def test_openmetrics_exposition_parses_and_ends_with_eof() -> None:
    store = MetricsStore()
    config = tenant()
    track_tenants(store, (config,))
    record_poll(store, config, success())
    text = store.render(openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    assert "# TYPE entra_exporter_polls counter" in text
    families = {f.name: f for f in parse_openmetrics(text)}
    assert families["entra_exporter_polls"].type == "counter"
    assert families["entra_tenant_users"].samples[0].value == 100


def test_gzip_exposition_is_the_same_text() -> None:
    store = MetricsStore()
    config = tenant()
    track_tenants(store, (config,))
    record_poll(store, config, success())
    plain = store.render().decode()
    unzipped = gzip.decompress(store.render(gzipped=True)).decode()
    # Process metrics differ between two renders; the tenant part must be identical.
    assert plain.split("# HELP process_")[0] == unzipped.split("# HELP process_")[0]


@pytest.mark.parametrize("openmetrics", [False, True])
def test_a_family_of_many_lines_reads_the_same_in_gzip_and_in_text(openmetrics: bool) -> None:
    # The enforcement classes (24 lines here) are held compressed between scrapes: the gzip
    # answer carries them as they are held, the text answer unpacks them.
    store = golden_store()
    text = b"".join(store.render_parts(openmetrics=openmetrics)[:-1])
    zipped = b"".join(store.render_parts(openmetrics=openmetrics, gzipped=True)[:-1])
    assert text.count(b"\nentra_mfa_enforcement_users{") == 24
    assert gzip.decompress(zipped) == text


@pytest.mark.parametrize("gzipped", [False, True])
def test_an_answer_is_kept_until_the_next_change_and_no_longer(gzipped: bool) -> None:
    store = golden_store()
    first = store.render_parts(gzipped=gzipped)[0]
    assert store.render_parts(gzipped=gzipped)[0] is first  # kept: not built again
    assert store.render_parts(openmetrics=True, gzipped=gzipped)[0] is not first
    store.record_reload(ok=True)
    again = store.render_parts(gzipped=gzipped)[0]
    assert again is not first
    assert b"entra_exporter_config_last_reload_successful 1" in (
        gzip.decompress(again) if gzipped else again
    )


def test_a_large_text_answer_comes_in_pieces_never_joined_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_module, "PIECE_CHARS", 1 << 16)  # 64 K, not 4 M characters
    store = MetricsStore()
    configs = tuple(tenant(f"tenant-{n:04}") for n in range(3000))
    track_tenants(store, configs)
    for config in configs:
        record_poll(store, config, success())
    parts = store.render_parts()
    assert len(parts) > 3
    assert all(len(part) < 2**17 for part in parts)
    text = b"".join(parts).decode()
    assert text.count("\nentra_tenant_users{") == 3000
    assert text_string_to_metric_families(text)  # one well-formed exposition
    assert gzip.decompress(store.render(gzipped=True)) == b"".join(parts[:-1]) + gzip.decompress(
        store.render_parts(gzipped=True)[-1]
    )


def test_reload_failure_sets_the_gauge() -> None:
    store = MetricsStore()
    store.record_reload(False)
    assert samples(store)[("entra_exporter_config_last_reload_successful", frozenset())] == 0
    store.record_reload(True)
    assert samples(store)[("entra_exporter_config_last_reload_successful", frozenset())] == 1


# ------------------------------------------------------------------ the whole exposition, exactly

GOLDEN = Path(__file__).parent / "golden"
CONTOSO = dataclasses.replace(tenant("contoso", stale_after=1e10), source="userRegistrationDetails")
FABRIKAM = dataclasses.replace(
    tenant('fab"ri\\kam', stale_after=1e10), tenant_id="11111111-2222-3333-4444-555555555555"
)
SEGMENTED = RegistrationReport(
    total_users=10,
    users_by_status=(("registered", 4), ("mfaRegistered", 3)),
    users_by_method=(("email", 2), ("fido2SecurityKey", 1)),
    segments=SegmentReport(
        segments=(
            ("guest", "user", CoverageCounts(0, (0,) * 6, (0,) * 6)),
            (
                "member",
                "privileged_admin",
                CoverageCounts(2, (1, 2, 0, 1, 0, 0), (1, 0, 0, 0, 0, 1)),
            ),
            ('odd"type', "admin", CoverageCounts(8, (3, 1, 4, 2, 5, 0), (0, 1, 2, 3, 1, 1))),
        ),
        groups=(
            ('Pilot "A"', CoverageCounts(3, (1, 0, 0, 1, 1, 0), (1, 0, 1, 0, 0, 1))),
            ("empty", CoverageCounts(0, (0,) * 6, (0,) * 6)),
        ),
        system_preferred=(("none", 5), ("push", 5)),
        data_timestamp=1_750_000_000.5,
        phone_only=(("2027-02-01", 2), ("2027-07-01", 1)),
        # Each segment with users: (class, not registered), (class, registered) x 6 classes.
        enforcement=(
            ("member", "privileged_admin", (0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0)),
            ('odd"type', "admin", (1, 1, 0, 0, 2, 0, 0, 1, 1, 0, 1, 1)),
        ),
    ),
    dropped_labels=(("method", 3), ("user_type", 2)),  # Graph sent more than the caps
)


POLICY = MethodsPolicy(
    methods=(("Fido2", True), ("Sms", False), ("Voice", True), ("QrCodePin", False)),
    campaign_state="enabled",
    campaign_targets=("microsoftAuthenticator",),
    snooze_days=3,
    passkey_migration_opted_out=False,
    migration_state="somethingNew",
    dropped_labels=(("campaign_target", 1),),
)
ENFORCEMENT = EnforcementPolicies(
    security_defaults=False,
    policies=(
        CaPolicy("p1", "enabled", "mfa_all"),
        CaPolicy("p2", "enabledForReportingButNotEnforced", "mfa_partial"),
        CaPolicy("p3", "enabled", "block"),
        CaPolicy("p4", "somethingNew", "other"),
    ),
).summary()
POLICY_403 = PollFailure("auth_error", "grant Policy.Read.AuthenticationMethod", 403, "Denied")

THROTTLED_POLL = PollResult(
    "throttled",
    None,
    PollFailure("throttled", "slow down", 429, "TooMany", "req-1"),
    0.5,
    1_750_000_200.0,
    RequestTally(2, 2, 0.0),
    "credentialUserRegistrationCount",
)


def golden_store() -> MetricsStore:
    """Two tenants: one with segments that then fails (its report kept), one that failed."""
    store = MetricsStore()
    track_tenants(store, (CONTOSO, FABRIKAM))
    record_poll(
        store,
        CONTOSO,
        PollResult(
            "success",
            SEGMENTED,
            None,
            1.25,
            1_750_000_100.0,
            RequestTally(3, 1, 0.5),
            "userRegistrationDetails",
            token_requests=1,
            collectors=(
                CollectorResult("report", "success", SEGMENTED),
                CollectorResult("policy", "success", POLICY),
                CollectorResult("enforcement", "success", ENFORCEMENT),
            ),
        ),
    )
    record_poll(store, FABRIKAM, THROTTLED_POLL)
    record_poll(
        store,
        CONTOSO,
        PollResult(
            "timeout",
            None,
            PollFailure("timeout", "too slow"),
            2.0,
            1_750_000_300.0,
            RequestTally(1, 0, 0.0),
            "userRegistrationDetails",
            token_requests=2,
            collectors=(
                CollectorResult("report", "timeout", None, PollFailure("timeout", "too slow")),
                CollectorResult("policy", "auth_error", None, POLICY_403),
                CollectorResult("enforcement", "success", ENFORCEMENT),
            ),
        ),
    )
    for kind in ("missed", "missed", "error"):
        store.record_scheduler_event(kind)
    store.record_reload(ok=False)
    store.record_web_reload(ok=False)
    return store


def golden_text(store: MetricsStore, openmetrics: bool) -> str:
    """The tenant part of the exposition, with the reload time (set at start) and the versions
    (the installed package's, Python's) blanked out."""
    tenants = b"".join(store.render_parts(openmetrics=openmetrics)[:-1])
    text = re.sub(
        r"^(entra_exporter_config_last_reload_success_timestamp_seconds) .*$",
        r"\1 <start>",
        tenants.decode(),
        flags=re.MULTILINE,
    )
    return re.sub(
        r'version="[^"]*",python_version="[^"]*"',
        'version="<version>",python_version="<python>"',
        text,
    )


@pytest.mark.parametrize(
    ("openmetrics", "golden"), [(False, "exposition.txt"), (True, "exposition.openmetrics.txt")]
)
def test_the_whole_exposition_is_exactly_the_reviewed_one(openmetrics: bool, golden: str) -> None:
    # The files in tests/golden were read line by line against the contract when written;
    # regenerate them only on purpose (python -m tests.golden.regenerate) and review the diff.
    assert golden_text(golden_store(), openmetrics) == (GOLDEN / golden).read_text()


def test_a_poll_record_keeps_what_the_tenant_page_shows_and_nothing_more() -> None:
    assert PollRecord.of(THROTTLED_POLL) == PollRecord(
        finished_at=1_750_000_200.0,
        result="throttled",
        duration=0.5,
        source="credentialUserRegistrationCount",
        graph_requests=2,
        reason="slow down",
        http_status=429,
        error_code="TooMany",
        request_id="req-1",
    )
    succeeded = PollResult("success", REPORT, None, 1.5, 1_750_000_000.0, RequestTally(3, 0, 0.0))
    assert PollRecord.of(succeeded) == PollRecord(
        1_750_000_000.0, "success", 1.5, succeeded.source, 3, "", None, None, None
    )


def test_the_tenant_page_keeps_the_last_polls_and_the_last_failures_log_lines() -> None:
    snapshot = TenantSnapshot.for_tenant(tenant())
    for n in range(RECENT_POLLS + 5):
        snapshot = snapshot.after_poll(success(1_750_000_000.0 + n), 1800)
    assert len(snapshot.recent) == RECENT_POLLS
    assert snapshot.recent[-1].finished_at == 1_750_000_000.0 + RECENT_POLLS + 4
    snapshot = snapshot.after_poll(failure(), 1800, ("line 1", "line 2"))
    assert snapshot.last_failure_log == ("line 1", "line 2")
    snapshot = snapshot.after_poll(success(), 1800, ("ignored",))
    assert snapshot.last_failure_log == ("line 1", "line 2")  # a success keeps the last failure's
    assert snapshot.recent[-2].result == "throttled"


def test_an_unencodable_tenant_name_cannot_break_the_scrape_for_the_others() -> None:
    store = MetricsStore()
    track_tenants(store, (tenant("bad\ud800name"), tenant("good")))
    text = store.render().decode()
    assert 'entra_exporter_tenant_up{tenant="bad?name"} 0' in text
    assert 'entra_exporter_tenant_up{tenant="good"} 0' in text


def test_process_metrics_are_read_once_per_second_and_end_openmetrics_with_eof() -> None:
    store = MetricsStore()
    first = store.render_parts()[-1]
    again = store.render_parts()[-1]
    assert again is first  # served from the one reading
    openmetrics = store.render_parts(openmetrics=True)[-1]
    assert openmetrics.endswith(b"# EOF\n") and b"process_" in openmetrics
    assert not first.endswith(b"# EOF\n") and b"process_resident_memory_bytes" in first
    zipped = store.render_parts(gzipped=True)[-1]
    assert gzip.decompress(zipped) == first


def test_every_change_shows_in_the_next_scrape_whatever_came_between() -> None:
    # The cached exposition is keyed by a change counter: each kind of change must move it
    # forward, so no sequence of changes can bring back a counter value already rendered.
    store = MetricsStore()
    track_tenants(store, (tenant("a"),))
    store.render()
    changes = [
        lambda: store.record_scheduler_event("missed"),
        lambda: record_poll(store, tenant("a"), success()),
        lambda: store.record_reload(ok=False),
        lambda: store.record_web_reload(ok=False),
        lambda: track_tenants(store, (tenant("a"), tenant("b"))),
        lambda: track_tenants(store, (tenant("a"),)),
        lambda: store.record_scheduler_event("error"),
    ]
    before = store.render()
    for number, change in enumerate(changes):
        change()
        after = store.render()
        assert after != before, f"change {number} did not reach the exposition"
        before = after


def test_reload_gauges_start_at_one_and_follow_each_reload() -> None:
    store = MetricsStore()
    text = store.render().decode()
    assert "\nentra_exporter_config_last_reload_successful 1\n" in text
    assert "\nentra_exporter_web_config_last_reload_successful 1\n" in text
    store.record_web_reload(ok=False)
    assert b"\nentra_exporter_web_config_last_reload_successful 0\n" in store.render()
    store.record_web_reload(ok=True)
    assert b"\nentra_exporter_web_config_last_reload_successful 1\n" in store.render()


def test_a_tenant_block_has_report_families_only_with_a_report() -> None:
    fresh = TenantSnapshot.for_tenant(tenant())
    lines = render_tenant_block(fresh)
    assert not {REGISTRATION_USERS, TENANT_USERS, METHOD_USERS} & lines.keys()  # no report yet
    assert TENANT_UP in lines
    no_stamp = dataclasses.replace(
        SEGMENTED,
        segments=dataclasses.replace(SEGMENTED.segments, data_timestamp=None),  # type: ignore[arg-type]
    )
    polled = fresh.after_poll(success(report=no_stamp), 1800)
    block = render_tenant_block(polled)
    assert SEGMENT_USERS in block
    assert DATA_TIMESTAMP not in block  # no lastUpdatedDateTime, no data age line


def test_a_poll_updates_the_snapshot_a_failure_keeps_the_report_and_its_expiry() -> None:
    config = dataclasses.replace(tenant(), source="auto")
    snapshot = TenantSnapshot.for_tenant(config)
    ok = PollResult(
        "success", REPORT, None, 0.25, 1_750_000_000.0, source="userRegistrationDetails"
    )
    snapshot = snapshot.after_poll(ok, 1800)
    assert (snapshot.polled, snapshot.up, snapshot.last_result) == (True, True, "success")
    assert snapshot.source == "userRegistrationDetails"  # what auto settled on
    assert snapshot.report_expires_at == 1_750_001_800.0
    odd = PollResult("parse_error", REPORT, PollFailure("parse_error", "x"), 1.0, 1_750_000_600.0)
    snapshot = snapshot.after_poll(odd, 1800)  # a failure that carries a report is no success
    assert (snapshot.up, snapshot.last_result) == (False, "parse_error")
    assert snapshot.report_expires_at == 1_750_001_800.0
    assert snapshot.source == "credentialUserRegistrationCount"  # the failed poll's
    moved = snapshot.with_config(dataclasses.replace(config, source="userRegistrationDetails"))
    assert moved.source == "userRegistrationDetails"


def test_a_failed_poll_keeps_the_log_lines_logged_about_its_tenant() -> None:
    store = MetricsStore()
    config = tenant("logged")
    track_tenants(store, (config,))
    started = time.time()
    kept: list[str] = []

    class Tail:
        def log_line(self, created: float, line: str) -> None:
            assert created >= started - 0.001
            kept.append(line)

    redactor = SecretRedactor()
    redactor.set_secrets(["hunter2-secret"])
    logger = logging.getLogger("exporter.test.tail")
    # As a tenant builds its own: lines through it are the tenant's, others are not.
    tenant_log = TenantLogger(logger, "logged", Tail().log_line, redactor)
    tenant_log.warning("Graph said no to hunter2-secret", extra={"status": 403})
    logger.warning("about someone else", extra={"tenant": "other"})
    try:
        int("hunter2-secret")
    except ValueError:
        tenant_log.error("an error with its stack", exc_info=True)
    assert len(kept) == 2 and "Graph said no to [REDACTED]" in kept[0]
    assert "tenant=logged" in kept[0] and "status=403" in kept[0]
    assert "stack=" in kept[1] and "hunter2-secret" not in kept[1]
    failed = PollResult("http_error", None, PollFailure("http_error", "no"), 0.0, started)
    snapshot = record_poll(store, config, failed, tuple(kept))
    assert snapshot is not None
    assert any("Graph said no" in line for line in snapshot.last_failure_log)
    snapshot = record_poll(store, config, success())
    assert snapshot is not None and any(
        "Graph said no" in line for line in snapshot.last_failure_log
    )


def test_a_change_after_any_other_change_still_refreshes_the_cached_exposition() -> None:
    # Each change moves the cache key forward: after it, a poll's new numbers must show too.
    changes = {
        "reload": lambda store: store.record_reload(ok=False),
        "web reload": lambda store: store.record_web_reload(ok=False),
        "scheduler event": lambda store: store.record_scheduler_event("missed"),
    }
    for name, change in changes.items():
        store = MetricsStore()
        track_tenants(store, (tenant("a"),))
        record_poll(store, tenant("a"), success(report=RegistrationReport(5, ())))
        store.render()
        change(store)
        record_poll(store, tenant("a"), success(report=RegistrationReport(7, ())))
        assert b'entra_tenant_users{tenant="a"} 7' in store.render(), name
    store = MetricsStore()
    track_tenants(store, (tenant("a"),))
    store.render()
    track_tenants(store, ())
    assert b'tenant="a"' not in store.render()


def test_a_report_and_a_policy_past_stale_after_are_gone_from_the_pages_too() -> None:
    from exporter.web.pages import render_landing_page, render_tenant_page

    store = MetricsStore()
    config = tenant(stale_after=60)
    track_tenants(store, (config,))
    policy = CollectorResult("policy", "success", POLICY)
    fresh = dataclasses.replace(
        success(report=SEGMENTED),
        collectors=(CollectorResult("report", "success", SEGMENTED), policy),
    )
    record_poll(store, config, fresh)
    snapshot = store.snapshot("contoso")
    assert snapshot is not None
    landing = render_landing_page([snapshot], "/metrics", lambda _: None).decode()
    page = render_tenant_page(snapshot, lambda _: None).decode()
    assert "30.0 % MFA-registered" in landing and "Sms off" in page and "Segments" in page
    # The same poll, 61 s ago: /metrics drops its values, and so do the pages.
    store = MetricsStore()
    track_tenants(store, (config,))
    record_poll(store, config, dataclasses.replace(fresh, finished_at=time.time() - 61))
    snapshot = store.snapshot("contoso")
    assert snapshot is not None
    assert b"entra_tenant_users{" not in store.render()
    assert b"entra_authentication_method_enabled{" not in store.render()
    landing = render_landing_page([snapshot], "/metrics", lambda _: None).decode()
    page = render_tenant_page(snapshot, lambda _: None).decode()
    for text in (landing, page):
        assert "MFA-registered" not in text and "Sms off" not in text
        assert "older than stale_after" in text
    assert "<h2>Segments</h2>" not in page and "phone-only" not in page
