"""Polls through real MSAL and httpx over TLS against the in-process simulator."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from entra_simulator.directory import SimTenant
from exporter.config.loader import load_config
from exporter.config.model import Config
from exporter.graph.auth import msal_client_credential
from exporter.polling.tenant import LOG_TAIL_LINES
from tests.conftest import (
    Runtime,
    SimEnv,
    exposition_samples,
    max_in_window,
    run_cli,
    write_app_certificate,
)

# fault → (result, HTTP status, Graph's or the identity provider's error code)
FAULT_RESULTS = [
    ("throttle", "throttled", 429, "TooManyRequests"),
    ("throttle_date", "throttled", 429, "TooManyRequests"),
    ("error500", "http_error", 500, "InternalServerError"),
    ("error503", "http_error", 503, "ServiceUnavailable"),
    ("hang", "timeout", None, None),
    ("reset", "network_error", None, None),
    ("malformed", "parse_error", 200, None),
    ("html", "parse_error", 200, None),
    ("missing_fields", "parse_error", 200, None),
    ("oversized", "parse_error", None, None),
    ("forbidden", "auth_error", 403, "Authentication_ApplicationHasNoReadAuditLogDataAccess"),
    ("invalid_client", "auth_error", None, "invalid_client"),
    ("token_down", "network_error", None, None),
]


@pytest.mark.parametrize(("fault", "expected", "status", "code"), FAULT_RESULTS)
async def test_each_fault_lands_in_its_result_class_and_the_tenant_recovers(
    sim_env: SimEnv,
    make_runtime: Callable[[Config], Runtime],
    caplog: pytest.LogCaptureFixture,
    fault: str,
    expected: str,
    status: int | None,
    code: str | None,
) -> None:
    runtime = make_runtime(load_config(sim_env.config_file))
    assert (await runtime.poll("tenant-0001")).result == "success"
    sim_env.sim.set_fault("tenant-0001", fault, count=0)
    if fault in ("invalid_client", "token_down"):
        runtime.tenant("tenant-0001").forget_tokens()  # make the next poll ask for a token
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="exporter"):
        result = await runtime.poll("tenant-0001")
    assert result.result == expected, result.failure
    # One clear log line: tenant, result, HTTP status, error code, request or correlation id.
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    line = lines[0]
    assert line.getMessage().startswith("poll failed: ")
    assert (line.tenant, line.result) == ("tenant-0001", expected)  # type: ignore[attr-defined]
    assert getattr(line, "http_status", None) == status
    assert getattr(line, "error_code", None) == code
    if fault != "token_down":  # nobody answered, so no correlation id exists
        assert getattr(line, "request_id", "")
    assert line.exc_info is None
    other = await runtime.poll("tenant-0000")
    assert other.result == "success"
    snapshot = runtime.store.snapshot("tenant-0001")
    assert (
        snapshot is not None and not snapshot.up and snapshot.report is not None
    )  # last values kept
    sim_env.sim.set_fault("tenant-0001", None)
    assert (await runtime.poll("tenant-0001")).result == "success"


async def test_retry_after_is_honoured_within_the_poll(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    document = sim_env.config()
    document["defaults"]["interval"] = "30s"
    sim_env.write_config(document)
    runtime = make_runtime(load_config(sim_env.config_file))
    sim_env.sim.set_fault("tenant-0000", "throttle", count=1)
    started = time.monotonic()
    result = await runtime.poll("tenant-0000")
    assert result.result == "success"
    assert time.monotonic() - started >= 1.0  # Retry-After: 1
    assert sim_env.sim.stats()["tenants"]["tenant-0000"]["graph_requests"] == 2


async def test_a_retry_after_longer_than_the_poll_is_remembered_for_the_retry(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    document = sim_env.config()
    document["defaults"]["interval"] = "10m"
    sim_env.write_config(document)
    runtime = make_runtime(load_config(sim_env.config_file))
    runtime.scheduler.start()  # every tenant's first regular poll, now; the next in 10 min
    deadline = time.monotonic() + 20
    while not runtime.store.all_polled() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    sim_env.sim.set_fault("tenant-0000", "throttle_long", count=1)  # Retry-After: 120
    sim_env.sim.set_fault("tenant-0001", "error500", count=0)
    asked = time.time()
    result = await runtime.scheduled_poll("tenant-0000")
    assert result is not None and result.result == "throttled"
    assert result.failure is not None and result.failure.retry_after == 120
    # A tenant that failed otherwise (a 500) is retried within the backoff, jittered.
    await runtime.scheduled_poll("tenant-0001")
    # Without the Retry-After kept, the first retry would come 15 to 30 s later.
    retry = runtime.scheduler.next_extra_poll("tenant-0000")
    assert retry is not None and retry >= asked + 120
    retry = runtime.scheduler.next_extra_poll("tenant-0001")
    assert retry is not None and asked + 15 <= retry <= time.time() + 30


async def test_token_is_cached_across_polls(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    runtime = make_runtime(load_config(sim_env.config_file))
    for _ in range(3):
        assert (await runtime.poll("tenant-0002")).result == "success"
    stats = sim_env.sim.stats()["tenants"]["tenant-0002"]
    assert (stats["token_requests"], stats["graph_requests"]) == (1, 3)
    snapshot = runtime.store.snapshot("tenant-0002")
    assert snapshot is not None and snapshot.token_requests == 1


async def test_a_graph_401_drops_the_token_and_retries_once(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    runtime = make_runtime(load_config(sim_env.config_file))
    assert (await runtime.poll("tenant-0000")).result == "success"
    sim_env.sim.tokens.clear()  # the simulator forgets every token it issued
    # Graph refuses the reused token: the poll drops it and succeeds with a new one.
    assert (await runtime.poll("tenant-0000")).result == "success"
    stats = sim_env.sim.stats()["tenants"]["tenant-0000"]
    assert (stats["token_requests"], stats["graph_requests"]) == (2, 2)  # a 401 is not counted
    # A token refused twice is an auth_error, not a loop.
    sim_env.sim.set_fault("tenant-0000", "invalid_client", count=0)
    sim_env.sim.tokens.clear()
    assert (await runtime.poll("tenant-0000")).result == "auth_error"


async def test_certificate_credential_signs_with_the_sha256_thumbprint(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], tmp_path: Path
) -> None:
    key_file, cert_file, cert_pem = write_app_certificate(tmp_path)
    sim_env.sim.add_tenant(
        SimTenant(
            name="northwind",
            tenant_id="3c0f1b2e-0000-4000-8000-000000000003",
            client_id="00000000-0000-0000-0000-000000000003",
            certificate_pem=cert_pem,
        )
    )
    document = sim_env.config()
    document["tenants"] = [
        {
            "name": "northwind",
            "tenant_id": "3c0f1b2e-0000-4000-8000-000000000003",
            "client_id": "00000000-0000-0000-0000-000000000003",
            "certificate": {"private_key_file": str(key_file), "certificate_file": str(cert_file)},
        }
    ]
    sim_env.write_config(document)
    runtime = make_runtime(load_config(sim_env.config_file))
    result = await runtime.poll("northwind")
    assert result.result == "success", result.failure

    # A certificate the app registration does not know is refused.
    write_app_certificate(tmp_path)  # from another CA, over the same files
    runtime2 = make_runtime(load_config(sim_env.config_file))
    refused = await runtime2.poll("northwind")
    assert refused.result == "auth_error"


async def test_workload_identity_reads_the_token_file_for_every_request(
    sim_env: SimEnv,
    make_runtime: Callable[[Config], Runtime],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("federated-token-1")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    tenant = SimTenant(
        name="tailspin",
        tenant_id="3c0f1b2e-0000-4000-8000-000000000004",
        client_id="00000000-0000-0000-0000-000000000004",
        federated_token="federated-token-1",
    )
    sim_env.sim.add_tenant(tenant)
    document = sim_env.config()
    document["tenants"] = [
        {
            "name": "tailspin",
            "tenant_id": tenant.tenant_id,
            "client_id": tenant.client_id,
            "workload_identity": True,
        }
    ]
    sim_env.write_config(document)
    config = load_config(sim_env.config_file)
    runtime = make_runtime(config)
    assert (await runtime.poll("tailspin")).result == "success"
    # Kubernetes rotates the projected token: the next token request must send the new one.
    token_file.write_text("federated-token-2")
    tenant.federated_token = "federated-token-2"
    credential = msal_client_credential(config.tenants[0])
    assert isinstance(credential, dict) and credential["client_assertion"]() == "federated-token-2"
    runtime.tenant("tailspin").forget_tokens()
    assert (await runtime.poll("tailspin")).result == "success"


def test_requests_ca_bundle_in_the_environment_does_not_override_tls_ca_file(
    sim_env: SimEnv, tmp_path: Path
) -> None:
    unrelated = tmp_path / "unrelated-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(unrelated))
    result = run_cli(
        f"--config.file={sim_env.config_file}",
        "--once",
        env={
            "REQUESTS_CA_BUNDLE": str(unrelated),
            "CURL_CA_BUNDLE": str(unrelated),
            "SSL_CERT_FILE": str(unrelated),
        },
    )
    assert result.returncode == 0, result.stderr


def test_an_untrusted_simulator_is_a_network_error_not_a_crash(sim_env: SimEnv) -> None:
    document = sim_env.config()
    del document["tls_ca_file"]
    sim_env.write_config(document)
    result = run_cli(f"--config.file={sim_env.config_file}", "--once")
    assert result.returncode == 1
    assert "result=network_error" in result.stderr
    assert "Traceback" not in result.stderr
    assert (
        yaml.safe_load(sim_env.config_file.read_text())["tenants"][0]["client_secret"]
        not in result.stderr
    )


async def test_one_app_shared_by_many_tenants_paces_itself(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    shared_client = "00000000-0000-0000-0000-0000000000aa"
    tenants = []
    for index in range(30):
        tenant = SimTenant(
            name=f"customer-{index}",
            tenant_id=f"3c0f1b2e-0000-4000-8000-{index:012d}",
            client_id=shared_client,
            secret="shared-app-secret",
        )
        sim_env.sim.add_tenant(tenant)
        tenants.append(
            {
                "name": tenant.name,
                "tenant_id": tenant.tenant_id,
                "client_id": shared_client,
                "client_secret": "shared-app-secret",
            }
        )
    document = sim_env.config()
    document["defaults"]["interval"] = "1m"
    document["rate_limits"] = {"per_app_per_tenant": "5/10s", "per_app": "10/1s"}
    document["tenants"] = tenants
    sim_env.write_config(document)
    runtime = make_runtime(load_config(sim_env.config_file))
    results = await runtime.poll_all()
    assert [r.result for r in results if r] == ["success"] * 30
    sent = [
        start
        for kind, client, _, start, _ in sim_env.sim.events
        if kind == "report" and client == shared_client
    ]
    assert len(sent) == 30
    assert max_in_window(sent, 1.0) <= 10
    assert max(sent) - min(sent) >= 1.9  # 30 requests at 10 per second: paced, not bunched


async def test_retries_per_poll_are_bounded(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    document = sim_env.config()
    document["defaults"]["interval"] = "1m"
    document["defaults"]["timeout"] = "5s"
    sim_env.write_config(document)
    runtime = make_runtime(load_config(sim_env.config_file))
    sim_env.sim.set_fault("tenant-0000", "error500", count=0)
    assert (await runtime.poll("tenant-0000")).result == "http_error"
    assert sim_env.sim.stats()["tenants"]["tenant-0000"]["graph_requests"] == 3
    snapshot = runtime.store.snapshot("tenant-0000")
    assert snapshot is not None
    assert (snapshot.graph_requests, snapshot.throttled_responses) == (3, 0)


async def test_changed_credentials_take_effect_at_reload(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    tenant = sim_env.sim.find("tenant-0000")
    assert tenant is not None and tenant.secret
    secret_file.write_text(tenant.secret + "\n")
    document = sim_env.config()
    entry = document["tenants"][0]
    del entry["client_secret"]
    entry["client_secret_file"] = str(secret_file)
    sim_env.write_config(document)
    runtime = make_runtime(load_config(sim_env.config_file))
    assert (await runtime.poll("tenant-0000")).result == "success"
    old_tokens = runtime.tenant("tenant-0000").tokens

    tenant.secret = "rotated-secret-value"  # the app registration's secret is rotated...
    sim_env.sim.tokens.clear()  # ...and (to prove the new secret is used) old tokens revoked
    secret_file.write_text("rotated-secret-value\n")
    runtime.apply(load_config(sim_env.config_file))  # what a reload does
    assert runtime.tenant("tenant-0000").tokens is not old_tokens  # old MSAL app dropped
    assert (await runtime.poll("tenant-0000")).result == "success"
    assert sim_env.sim.stats()["tenants"]["tenant-0000"]["token_requests"] == 2


async def test_token_requests_counter_never_goes_backwards_when_a_credential_changes(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], tmp_path: Path
) -> None:
    def counted() -> float:
        text = runtime.store.render().decode()
        return exposition_samples(text)[
            ("entra_exporter_token_requests_total", (("tenant", "tenant-0000"),))
        ]

    secret_file = tmp_path / "secret"
    tenant = sim_env.sim.find("tenant-0000")
    assert tenant is not None and tenant.secret
    secret_file.write_text(tenant.secret)
    document = sim_env.config()
    del document["tenants"][0]["client_secret"]
    document["tenants"][0]["client_secret_file"] = str(secret_file)
    sim_env.write_config(document)
    runtime = make_runtime(load_config(sim_env.config_file))
    for _ in range(3):  # three token requests with the first credential
        runtime.tenant("tenant-0000").forget_tokens()
        assert (await runtime.poll("tenant-0000")).result == "success"
    assert counted() == 3

    tenant.secret = "rotated-secret-value"
    secret_file.write_text("rotated-secret-value")
    runtime.apply(load_config(sim_env.config_file))  # a new MSAL app, its own count from 0
    result = await runtime.poll("tenant-0000")
    assert (result.result, result.token_requests) == ("success", 1)
    assert counted() == 4  # 3 + 1, not the new app's 1
    assert sim_env.sim.stats()["tenants"]["tenant-0000"]["token_requests"] == 4


async def test_short_lived_tokens_are_reused_for_most_of_their_lifetime(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    # MSAL alone treats tokens with under 5 minutes left as expired: a 120 s token would be
    # fetched again for every poll.
    sim_env.sim.token_lifetime = 120
    runtime = make_runtime(load_config(sim_env.config_file))
    for _ in range(4):
        assert (await runtime.poll("tenant-0000")).result == "success"
    assert sim_env.sim.stats()["tenants"]["tenant-0000"]["token_requests"] == 1


def test_reuse_margin() -> None:
    from exporter.graph.auth import reuse_margin

    assert reuse_margin(7200) == 300
    assert reuse_margin(120) == 6


async def test_a_refused_report_names_the_permission_to_grant(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    runtime = make_runtime(load_config(sim_env.config_file))
    denied = {
        "error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges."}
    }
    sim_env.sim.set_body("tenant-0000", 403, json.dumps(denied).encode(), "application/json")
    result = await runtime.poll("tenant-0000")
    assert result.failure is not None and result.failure.message.endswith(
        "grant the application permission Reports.Read.All, with admin consent"
    )
    # Graph's own code asks for AuditLog.Read.All (seen on the seed's report too): that one.
    sim_env.sim.set_fault("tenant-0000", "forbidden", count=1)
    result = await runtime.poll("tenant-0000")
    assert result.failure is not None and result.failure.message.endswith(
        "grant the application permission AuditLog.Read.All, with admin consent"
    )


def scheduled_runtime(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime], jitter: str
) -> tuple[Runtime, dict[str, Any]]:
    """A runtime on the simulator's tenants, polled every 10 min with ``jitter``, scheduled;
    and the config document it was loaded from (for a reload to change)."""
    document = sim_env.config()
    document["defaults"].update({"interval": "10m", "jitter": jitter})
    sim_env.write_config(document)
    runtime = make_runtime(load_config(sim_env.config_file))
    runtime.scheduler.start()
    return runtime, document


async def test_a_reload_that_changes_the_defaults_spreads_the_re_polls_over_the_jitter(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    # The first regular polls within 1 s; the next in 10 min.
    runtime, document = scheduled_runtime(sim_env, make_runtime, jitter="1s")
    deadline = time.monotonic() + 20
    while not runtime.store.all_polled() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    document["defaults"]["timeout"] = "5s"  # every tenant changes
    sim_env.write_config(document)
    asked = time.time()
    runtime.apply(load_config(sim_env.config_file))
    when = [runtime.scheduler.next_extra_poll(name) for name in runtime.tenants]
    assert all(w is not None and asked <= w <= time.time() + 1 for w in when), when
    spread = [w for w in when if w is not None]
    assert max(spread) - min(spread) > 0.01  # drawn each, not all at once


async def test_a_failed_poll_keeps_the_lines_its_tenant_logged_and_no_other_tenants(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    runtime = make_runtime(load_config(sim_env.config_file))
    sim_env.sim.set_fault("tenant-0000", "error500", count=99)
    sim_env.sim.set_fault("tenant-0001", "forbidden", count=99)
    results = await asyncio.gather(runtime.poll("tenant-0000"), runtime.poll("tenant-0001"))
    assert [r.result for r in results] == ["http_error", "auth_error"]
    for name, other in (("tenant-0000", "tenant-0001"), ("tenant-0001", "tenant-0000")):
        snapshot = runtime.store.snapshot(name)
        assert snapshot is not None
        lines = snapshot.last_failure_log
        assert any("poll failed:" in line for line in lines), lines
        assert all(f"tenant={name}" in line for line in lines), lines
        assert not any(other in line for line in lines), lines
    secret = sim_env.config()["tenants"][0]["client_secret"]
    assert not any(
        secret in line for line in runtime.store.snapshot("tenant-0000").last_failure_log
    )


async def test_a_tenants_log_tail_keeps_its_last_lines_only(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    runtime = make_runtime(load_config(sim_env.config_file))
    tenant = runtime.tenants["tenant-0000"]
    for n in range(LOG_TAIL_LINES + 7):
        tenant.log.warning(f"line {n}")
    kept = tenant.lines_since(0.0)
    assert len(kept) == LOG_TAIL_LINES
    assert "line 7" in kept[0] and f"line {LOG_TAIL_LINES + 6}" in kept[-1]
    assert runtime.tenants["tenant-0001"].lines_since(0.0) == ()


async def test_a_reload_stops_a_removed_tenant_and_a_changed_one_keeps_or_moves_its_job(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    runtime, document = scheduled_runtime(sim_env, make_runtime, jitter="1m")
    names = sorted(runtime.tenants)
    before = {name: runtime.scheduler.next_poll(name) for name in names}
    assert all(when is not None for when in before.values())
    removed, retimed, edited = names[0], names[1], names[2]
    document["tenants"] = [t for t in document["tenants"] if t["name"] != removed]
    for entry in document["tenants"]:
        if entry["name"] == retimed:
            entry["interval"] = "20m"
        if entry["name"] == edited:
            entry["timeout"] = "5s"
    sim_env.write_config(document)
    runtime.apply(load_config(sim_env.config_file))
    assert runtime.scheduler.next_poll(removed) is None
    assert runtime.store.snapshot(removed) is None
    assert runtime.scheduler.next_poll(edited) == before[edited]  # the same job, kept
    assert runtime.tenant(edited).job is not None
    assert runtime.scheduler.next_poll(retimed) is not None
    assert runtime.tenant(retimed).job is not None


async def test_a_new_token_does_not_ask_the_tenants_openid_discovery_again(
    sim_env: SimEnv, make_runtime: Callable[[Config], Runtime]
) -> None:
    # The MSAL app is let go once its token is held and built again for the next one; the
    # tenant's OpenID discovery stays in MSAL's http_cache, kept by the token source.
    runtime = make_runtime(load_config(sim_env.config_file))
    for _ in range(3):
        runtime.tenant("tenant-0000").forget_tokens()
        assert (await runtime.poll("tenant-0000")).result == "success"
    counts = sim_env.sim.stats()["tenants"]["tenant-0000"]
    assert counts["token_requests"] == 3
    tenant_id = sim_env.sim.find("tenant-0000").tenant_id
    asked = [e for e in list(sim_env.sim.events) if e[0] == "discovery" and e[2] == tenant_id]
    assert len(asked) == 1, asked
