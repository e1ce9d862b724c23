"""The benchmark runs and reports every figure (a smoke run: figures are never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

EXPECTED = {
    ("fanout", "cold_round_seconds@20"),
    ("fanout", "warm_round_seconds@20"),
    ("footprint", "rss_mb@1"),
    ("footprint", "rss_mb@20"),
    ("footprint", "kb_per_tenant@20"),
    ("footprint", "cpu_ms_per_cold_poll@20"),
    ("footprint", "cpu_ms_per_warm_poll@20"),
    ("scrape", "generate_latest_median_ms"),
    ("economy", "token_requests_per_tenant"),
    ("economy", "graph_requests_per_tenant"),
    ("segments", "series@20"),
    ("segments", "rss_mb@20"),
    ("segments", "scrape_median_ms@20"),
    ("segments", "users_per_cpu_second_plain@4000"),
    ("segments", "users_per_cpu_second_segments@4000"),
    ("segments", "peak_rss_growth_mb_segments@4000"),
    ("segments", "segments_cpu_cost@4000"),
    ("segments", "poll_cpu_seconds_plain@4000"),
    ("counting", "decode_us_per_user_stdlib"),
    ("counting", "decode_msgspec_typed_vs_stdlib"),
    ("pacing", "round_seconds_one_app@20"),
    ("pacing", "refused_one_app@20"),
    ("pacing", "round_seconds_3_replicas@20"),
    ("pacing", "refused_3_replicas@20"),
    ("pacing", "round_seconds_paged@3000x999"),
    ("pacing", "round_seconds_paged@3000x400"),
    ("pacing", "refused_paged@3000x400"),
    ("pacing", "round_seconds_directory@4000"),
    ("pacing", "refused_directory@4000"),
    ("pacing", "reports_budget_alone@4000"),
    ("pacing", "round_seconds_policy@20"),
    ("pacing", "refused_policy@20"),
    ("scale", "seconds_to_ready_plain@60"),
    ("scale", "warm_round_seconds@60"),
    ("scale", "rss_mb_plain@60"),
    ("scale", "scrape_median_ms_plain@60"),
    ("scale", "rss_mb_segments@60"),
    ("scale", "scrape_median_ms_segments@60"),
    ("scrape", "p99_20_scrapers_plain_vs_floor"),
    ("scrape", "p99_20_scrapers_gzip_vs_floor"),
    ("scrape", "p99_20_scrapers_plain_stdlib_server_vs_floor"),
    ("scrape", "p99_20_scrapers_gzip_vs_stdlib_server"),
}
SCRAPE = {
    f"{stat}_ms_{scrapers}_{encoding}"
    for stat in ("median", "p99")
    for scrapers in ("1_scraper", "20_scrapers")
    for encoding in ("plain", "gzip")
}


def test_benchmark_smoke_run_reports_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    reported = {(f["benchmark"], f["figure"]) for f in figures}
    assert reported >= EXPECTED
    assert {("scrape", name) for name in SCRAPE} <= reported
    assert "Figures with a target" in result.stdout  # the summary table closes the run
    for figure in figures:
        assert figure["value"] >= 0
        if figure["figure"].startswith(("cold", "warm", "median", "token", "graph")):
            assert figure["ratio"] is not None and figure["ratio"] > 0
