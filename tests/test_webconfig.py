"""``--web.config.file``: TLS, client certificates and basic auth, with real TLS clients."""

from __future__ import annotations

import base64
import http.client
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme
import yaml

from exporter.config.problems import ConfigError
from exporter.metrics.store import MetricsStore
from exporter.web import config as webconfig
from exporter.web.config import load_web_config, parse_web_config
from exporter.web.router import ServerHooks
from exporter.web.server import make_server, serve_in_thread
from tests.conftest import SimEnv, run_cli, track_tenants, wait_until
from tests.conftest import tenant_config as tenant

PASSWORD = "correct horse battery staple"
HASH = (
    bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)
)


class Pki:
    def __init__(self, tmp_path: Path) -> None:
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.cert_file = tmp_path / "web-server.crt"
        self.key_file = tmp_path / "web-server.key"
        server.cert_chain_pems[0].write_to_path(str(self.cert_file))
        server.private_key_pem.write_to_path(str(self.key_file))
        self.ca_file = tmp_path / "web-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.client = self.ca.issue_cert("prometheus@example")
        self.stranger = trustme.CA().issue_cert("stranger@example")

    def client_context(self, cert: Any = None, **versions: ssl.TLSVersion) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if cert is not None:
            cert.configure_cert(context)
        if versions:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            context.minimum_version = versions.get("minimum", ssl.TLSVersion.MINIMUM_SUPPORTED)
            context.maximum_version = versions.get("maximum", ssl.TLSVersion.MAXIMUM_SUPPORTED)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


class TlsServer:
    def __init__(self, document: dict[str, Any]) -> None:
        self.store = MetricsStore()
        track_tenants(self.store, (tenant(),))
        hooks = ServerHooks(
            self.store, lambda: True, lambda: (True, "ok"), "/metrics", parse_web_config(document)
        )
        self.server = make_server("127.0.0.1:0", hooks)
        serve_in_thread(self.server)
        self.port = self.server.server_address[1]

    def request(
        self, path: str, context: ssl.SSLContext, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=5)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def start_tls_server() -> Iterator[Any]:
    servers: list[TlsServer] = []

    def start(document: dict[str, Any]) -> TlsServer:
        server = TlsServer(document)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth(pki: Pki, start_tls_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_tls_server(
        {
            "tls_server_config": {"cert_file": str(pki.cert_file), "key_file": str(pki.key_file)},
            "basic_auth_users": {"prometheus": HASH},
            "http_server_config": {"headers": {"X-Frame-Options": "deny"}},
        }
    )
    context = pki.client_context()
    status, headers, body = server.request("/metrics", context, basic("prometheus", PASSWORD))
    assert status == 200 and b"entra_exporter_tenant_up" in body
    assert headers["X-Frame-Options"] == "deny"
    status, headers, _ = server.request("/metrics", context, basic("prometheus", "wrong"))
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert server.request("/metrics", context)[0] == 401
    assert server.request("/metrics", context, {"Authorization": "Basic !!!"})[0] == 401
    # Over bcrypt's 72-byte limit: a wrong password, not a server error.
    assert server.request("/metrics", context, basic("prometheus", "x" * 100))[0] == 401
    assert server.request("/", context, basic("prometheus", "wrong"))[0] == 401
    # Probes need no password.
    assert server.request("/healthz", context)[0] == 200
    assert server.request("/readyz", context)[0] == 503  # not polled yet, but not 401
    # An unknown user costs a bcrypt check too (no user enumeration by timing).
    calls: list[bytes] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(webconfig.bcrypt, "checkpw", lambda p, h: calls.append(h) or real(p, h))
    assert server.request("/metrics", context, basic("nobody", PASSWORD))[0] == 401
    assert len(calls) == 1


def test_client_certificate_required(pki: Pki, start_tls_server: Any) -> None:
    server = start_tls_server(
        {
            "tls_server_config": {
                "cert_file": str(pki.cert_file),
                "key_file": str(pki.key_file),
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": str(pki.ca_file),
            }
        }
    )
    assert server.request("/metrics", pki.client_context(pki.client))[0] == 200
    status, _, body = server.request("/metrics", pki.client_context())
    assert status == 403 and b"client certificate" in body
    assert server.request("/", pki.client_context())[0] == 403
    # Kubelet probes cannot present certificates.
    assert server.request("/healthz", pki.client_context())[0] == 200
    assert server.request("/readyz", pki.client_context())[0] in (200, 503)
    # A certificate from another CA fails the handshake.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        server.request("/metrics", pki.client_context(pki.stranger))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_minimum_tls_version(pki: Pki, start_tls_server: Any) -> None:
    server = start_tls_server(
        {
            "tls_server_config": {
                "cert_file": str(pki.cert_file),
                "key_file": str(pki.key_file),
                "min_version": "TLS12",
            }
        }
    )
    old = pki.client_context(minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        server.request("/metrics", old)
    tls12 = pki.client_context(minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2)
    assert server.request("/metrics", tls12)[0] == 200
    # The control: a server that allows TLS 1.0 does take the same TLS 1.1 client.
    lenient = start_tls_server(
        {
            "tls_server_config": {
                "cert_file": str(pki.cert_file),
                "key_file": str(pki.key_file),
                "min_version": "TLS10",
            }
        }
    )
    assert lenient.request("/metrics", old)[0] == 200


def test_plain_http_client_gets_nothing_from_a_tls_port(pki: Pki, start_tls_server: Any) -> None:
    server = start_tls_server(
        {"tls_server_config": {"cert_file": str(pki.cert_file), "key_file": str(pki.key_file)}}
    )

    def plain_get() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            conn.getresponse()
        finally:
            conn.close()

    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain_get()
    assert server.request("/metrics", pki.client_context())[0] == 200  # still serving


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"tls_server_config": {"cert_file": "x"}, "oops": 1}, "oops: unknown key"),
        (
            {"tls_server_config": {"key_file": "KEY"}},
            "tls_server_config.cert_file: missing cert_file or cert",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "CERT",
                    "key_file": "KEY",
                    "client_auth_type": "Maybe",
                }
            },
            "tls_server_config.client_auth_type: 'Maybe' is not one of",
        ),
        (
            {"tls_server_config": {"cert_file": "CERT", "key_file": "KEY", "client_ca_file": "CA"}},
            "tls_server_config.client_ca_file: is set but client_auth_type is NoClientCert",
        ),
        (
            {"tls_server_config": {"cert_file": "CERT", "key_file": "KEY", "min_version": "TLS14"}},
            "tls_server_config.min_version: unknown TLS version 'TLS14'",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "CERT",
                    "key_file": "KEY",
                    "min_version": "TLS13",
                    "max_version": "TLS12",
                }
            },
            "tls_server_config.min_version: TLS13 is above max_version TLS12",
        ),
        (
            {"tls_server_config": {"cert_file": "CERT", "key_file": "KEY", "ciphers": "x"}},
            "tls_server_config.ciphers: unknown key",
        ),
        (
            {"basic_auth_users": {"prometheus": "plaintext"}},
            "basic_auth_users.prometheus: is not a bcrypt hash",
        ),
        (
            {"http_server_config": {"headers": {"Server": "x"}}},
            "http_server_config.headers.Server: HTTP header 'Server' can not be configured",
        ),
    ],
)
def test_invalid_web_configs_name_the_key(pki: Pki, document: dict[str, Any], problem: str) -> None:
    text = (
        yaml.safe_dump(document)
        .replace("CERT", str(pki.cert_file))
        .replace("KEY", str(pki.key_file))
        .replace(": CA", f": {pki.ca_file}")
    )
    with pytest.raises(ConfigError) as caught:
        parse_web_config(yaml.safe_load(text))
    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_a_key_given_twice_is_refused_with_file_line_and_column(tmp_path: Path) -> None:
    # yaml.safe_load would keep the second user silently; the web config reads YAML strictly.
    web_file = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    web_file.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n  alice: '{hashed}'\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(web_file))
    assert caught.value.problems == [
        f"{web_file}:3:3: YAML syntax error: key 'alice' appears twice in one mapping"
    ]


def test_cli_refuses_a_web_config_with_a_duplicate_key(sim_env: SimEnv, tmp_path: Path) -> None:
    web_file = tmp_path / "web.yml"
    web_file.write_text("http_server_config:\n  headers: {}\nhttp_server_config: {}\n")
    result = run_cli(
        f"--config.file={sim_env.config_file}", f"--web.config.file={web_file}", "--check-config"
    )
    assert result.returncode == 2
    assert "appears twice" in result.stderr and "Traceback" not in result.stderr


def test_cli_serves_https_with_basic_auth(
    sim_env: SimEnv, pki: Pki, tmp_path: Path, start_exporter: Any
) -> None:
    web_file = tmp_path / "web.yaml"
    web_file.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": str(pki.cert_file),
                    "key_file": str(pki.key_file),
                    "min_version": "TLS12",
                },
                "basic_auth_users": {"prometheus": HASH},
            }
        )
    )
    check = run_cli(
        f"--config.file={sim_env.config_file}", f"--web.config.file={web_file}", "--check-config"
    )
    assert check.returncode == 0, check.stderr
    assert (
        "web config ok: TLS TLS12-TLS13, client auth NoClientCert; basic auth for 1 user(s)"
        in check.stdout
    )
    assert HASH not in check.stdout
    exporter = start_exporter(
        f"--config.file={sim_env.config_file}", f"--web.config.file={web_file}"
    )
    context = pki.client_context()

    def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", exporter.port, context=context, timeout=5)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    wait_until(lambda: get("/readyz")[0] == 200)
    assert get("/metrics")[0] == 401
    status, body = get("/metrics", basic("prometheus", PASSWORD))
    assert status == 200 and b"entra_tenant_users{" in body
    assert exporter.stop() == 0


def test_cli_refuses_a_bad_web_config(sim_env: SimEnv, tmp_path: Path) -> None:
    web_file = tmp_path / "web.yaml"
    web_file.write_text("basic_auth_users:\n  prometheus: hunter2\n")
    result = run_cli(
        f"--config.file={sim_env.config_file}", f"--web.config.file={web_file}", "--check-config"
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "basic_auth_users.prometheus: is not a bcrypt hash ($2a$, $2b$ or $2y$)"
    )


def test_http2_loads_as_in_exporter_toolkit_and_says_it_has_no_effect() -> None:
    web = parse_web_config({"http_server_config": {"http2": True}})
    assert web.warnings == (
        "http_server_config.http2: this exporter serves HTTP/1.1 only; http2 has no effect",
    )
    assert parse_web_config({"http_server_config": {"http2": False}}).warnings == ()
    with pytest.raises(ConfigError) as caught:
        parse_web_config({"http_server_config": {"http2": "yes"}})
    assert caught.value.problems == ["http_server_config.http2: must be true or false"]


def served_certificate(port: int, pki: Pki) -> bytes:
    """The certificate a new TLS connection is served (DER)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_a_rotated_certificate_is_served_without_a_restart_and_a_bad_one_is_not(
    sim_env: SimEnv, pki: Pki, tmp_path: Path, start_exporter: Any
) -> None:
    folder = tmp_path / "web"
    folder.mkdir()
    shutil.copy(pki.cert_file, folder / "tls.crt")
    shutil.copy(pki.key_file, folder / "tls.key")
    web_file = folder / "web.yml"  # relative names: resolved against this folder
    web_file.write_text("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n")
    exporter = start_exporter(
        f"--config.file={sim_env.config_file}", f"--web.config.file={web_file}"
    )
    wait_until(lambda: served_certificate(exporter.port, pki))
    first = served_certificate(exporter.port, pki)

    rotated = pki.ca.issue_cert("127.0.0.1", "localhost")  # what cert-manager does
    rotated.private_key_pem.write_to_path(str(folder / "tls.key"))
    rotated.cert_chain_pems[0].write_to_path(str(folder / "tls.crt"))
    second = wait_until(lambda: (der := served_certificate(exporter.port, pki)) != first and der)
    assert second != first

    (folder / "tls.crt").write_text("not a certificate\n")  # a broken rotation
    # Files are looked at when a connection arrives (at most once a second).
    wait_until(
        lambda: (
            served_certificate(exporter.port, pki)
            and "web config reload refused" in exporter.log_text()
        )
    )
    assert served_certificate(exporter.port, pki) == second  # the last good one stays
    status, _, body = http_get_tls(exporter.port, pki)
    assert status == 200
    assert b"entra_exporter_web_config_last_reload_successful 0" in body


def http_get_tls(port: int, pki: Pki) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=pki.client_context())
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()
