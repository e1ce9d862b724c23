"""The web router without a socket: request in, response out (client_python's make_wsgi_app
is tested the same way)."""

from __future__ import annotations

import gzip
import time

import bcrypt

from exporter.graph.failures import PollFailure
from exporter.metrics.snapshots import PollResult
from exporter.metrics.store import MetricsStore
from exporter.reports.registration import RegistrationReport
from exporter.web.config import BasicAuth, WebConfig
from exporter.web.reload import LiveWebConfig
from exporter.web.router import Request, Router, ServerHooks
from tests.conftest import record_poll, track_tenants
from tests.conftest import tenant_config as tenant


def router(
    web: WebConfig | None = None, alive: bool = True
) -> tuple[Router, MetricsStore, list[str]]:
    store = MetricsStore()
    reloads: list[str] = []

    def reload() -> tuple[bool, str]:
        reloads.append("reload")
        return False, "config reload refused: tenants[0].client_id: not a GUID"

    hooks = ServerHooks(store=store, is_alive=lambda: alive, reload=reload, web=web or WebConfig())
    return Router(hooks, LiveWebConfig(hooks.web)), store, reloads


def test_metrics_answers_the_store_in_the_format_and_encoding_asked() -> None:
    route, store, _ = router()
    track_tenants(store, (tenant("a"),))
    record_poll(
        store, tenant("a"), PollResult("success", RegistrationReport(7, ()), None, 0.1, time.time())
    )
    plain = route.handle(Request("GET", "/metrics"))
    assert plain.status == 200 and plain.content_type.startswith("text/plain; version=0.0.4")
    assert b'entra_tenant_users{tenant="a"} 7\n' in b"".join(plain.body)
    zipped = route.handle(
        Request(
            "GET",
            "/metrics?x=1",
            {"accept": "application/openmetrics-text", "accept-encoding": "gzip"},
        )
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.content_type.startswith("application/openmetrics-text")
    assert gzip.decompress(b"".join(zipped.body)).endswith(b"# EOF\n")


def test_probes_answer_liveness_and_readiness_apart() -> None:
    route, store, _ = router(alive=False)
    track_tenants(store, (tenant("a"),))
    assert route.handle(Request("GET", "/healthz")).status == 503
    assert route.handle(Request("GET", "/readyz")).status == 503
    failed = PollResult("throttled", None, PollFailure("throttled", "x", 429), 0.1, time.time())
    record_poll(store, tenant("a"), failed)
    assert route.handle(Request("GET", "/readyz")).status == 200  # a failed poll counts
    alive, _, _ = router(alive=True)
    assert alive.handle(Request("HEAD", "/healthz")).status == 200


def test_methods_and_unknown_paths() -> None:
    route, _, reloads = router()
    assert route.handle(Request("GET", "/-/reload")).status == 405
    assert route.handle(Request("POST", "/metrics")).headers["Allow"] == "GET, HEAD"
    assert route.handle(Request("DELETE", "/metrics")).status == 405
    assert route.handle(Request("GET", "/nope")).status == 404
    assert route.handle(Request("GET", "/tenants/nobody")).status == 404
    refused = route.handle(Request("POST", "/-/reload"))
    assert refused.status == 500 and reloads == ["reload"]


def test_basic_auth_guards_everything_but_the_probes() -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    route, _, _ = router(WebConfig(basic_auth=BasicAuth({"prometheus": hashed})))
    refused = route.handle(Request("GET", "/metrics"))
    assert refused.status == 401 and "Basic" in refused.headers["WWW-Authenticate"]
    assert route.handle(Request("GET", "/healthz")).status == 200
    header = "Basic cHJvbWV0aGV1czpzM2NyZXQ="  # prometheus:s3cret
    assert route.handle(Request("GET", "/", {"authorization": header})).status == 200
