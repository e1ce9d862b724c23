"""A short soak: faults at random, 20 scrapers, nothing lost, nothing leaking."""

from __future__ import annotations

from bench.soak import print_report, run_soak
from exporter.config.loader import DEFAULT_CONCURRENCY


def test_short_soak_holds_steady(capsys) -> None:
    report = run_soak(tenants=20, duration=20.0, interval="1s", fault_rate=0.3, scrapers=20)
    print_report(report)
    assert report.scrapes > 100
    assert report.failed_scrapes == 0
    assert report.unhandled_exceptions == 0
    assert report.threads_at_end <= report.threads_after_warmup + 1
    assert report.fds_at_end <= report.fds_after_warmup + 1  # pooled Graph connections apart
    assert 0 < report.graph_connections_most <= DEFAULT_CONCURRENCY  # the transport's cap
    assert report.rss_growth_percent < 5
    assert report.oldest_healthy_success_seconds < 2 * report.interval_seconds
    assert report.reloads >= 4 and report.failed_reloads == 0
    assert report.attacks >= 5  # slow headers, smuggling, cross-site reloads, SIGHUP bursts
    assert report.poisoned_tenant_up == 0  # down, while the healthy ones stayed fresh
    assert report.repeating_tenant_users == 1000  # its pages repeat users: each counted once
    assert report.rotated_tenant_up == 1  # its secret file rotated half-way: no restart
    # Graph refuses its policy: that collector down, its report fresh (among the healthy).
    assert (report.policy_refused_report_up, report.policy_refused_policy_up) == (1, 0)
