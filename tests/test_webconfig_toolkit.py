"""exporter-toolkit's own web config test data, file for file: each loads or is refused as
exporter-toolkit's tests expect, through the CLI, run from a folder other than the files'."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, ExporterProcess, SimEnv, run_cli, wait_until

TESTDATA = REPO / "tests" / "webconfig_testdata"
LOADS = {
    "tls_config_noAuth.requireandverifyclientcert.good.yml",
    "tls_config_noAuth.requireanyclientcert.good.yml",
    "tls_config_noAuth.requireanyclientcertkeyinline.good.yml",
    "web_config_auth_clientCAs_missing.bad.yml",  # loads; the handshake refuses clients
    "web_config_auth_client_san.bad.yaml",  # loads; the client's SAN is refused later
    "web_config_auth_client_san.good.yaml",
    "web_config_empty.yml",
    "web_config_headers.good.yml",
    "web_config_noAuth.good.blocking.yml",
    "web_config_noAuth.good.yml",
    "web_config_noAuth_allCiphers.good.yml",
    "web_config_noAuth_allCurves.good.yml",
    "web_config_noAuth_noHTTP2.good.yml",
    "web_config_noAuth_someCiphers.good.yml",
    "web_config_noAuth_someCiphers_noOrder.good.yml",
    "web_config_noAuth_someCurves.good.yml",
    "web_config_noAuth_tlsInline.good.yml",
    "web_config_rate_limiter_nonblocking.yaml",
    "web_config_rate_limiter_one_second.yaml",
    "web_config_users.good.yml",
    "web_config_users_noTLS.good.yml",
}
REFUSED = {
    "somefile": "cannot read web config file",  # the file does not exist
    "web_config_auth_clientCAs_invalid.bad.yml": "cannot read",
    "web_config_auth_user_list_invalid.bad.yml": "is not a bcrypt hash",
    "web_config_headers_content_type_options.bad.yml": "invalid value for",
    "web_config_headers_extra_header.bad.yml": "can not be configured",
    "web_config_headers_frame_options.bad.yml": "invalid value for",
    "web_config_junk.yml": "must be a mapping",
    "web_config_junk_key.yml": "unknown key",
    "web_config_noAuth.bad.yml": "tls_server_config.client_ca_file",
    "web_config_noAuth_certPath_empty.bad.yml": "missing cert_file or cert",
    "web_config_noAuth_certPath_invalid.bad.yml": "cannot read",
    "web_config_noAuth_certPath_keyPath_empty.bad.yml": "missing cert_file or cert",
    "web_config_noAuth_certPath_keyPath_invalid.bad.yml": "cannot read",
    "web_config_noAuth_cert_empty.bad.yml": "missing cert_file or cert",
    "web_config_noAuth_inventedCiphers.bad.yml": "unknown cipher",
    "web_config_noAuth_inventedCurves.bad.yml": "unknown curve",
    "web_config_noAuth_keyPath_empty.bad.yml": "missing key_file or key",
    "web_config_noAuth_keyPath_invalid.bad.yml": "cannot read",
    "web_config_noAuth_key_empty.bad.yml": "missing key_file or key",
    "web_config_noAuth_noHTTP2Cipher.bad.yml": "HTTP/2-required cipher",
    "web_config_noAuth_wrongTLSVersion.bad.yml": "unknown TLS version",
}


def test_every_web_config_of_the_test_data_has_an_expected_outcome() -> None:
    present = {p.name for p in TESTDATA.iterdir() if p.suffix in (".yml", ".yaml")}
    assert present == LOADS | (REFUSED.keys() - {"somefile"})
    assert len(LOADS) + len(REFUSED) >= 40


@pytest.mark.parametrize("name", sorted(LOADS))
def test_loads_as_exporter_toolkit_loads_it(sim_env: SimEnv, tmp_path: Path, name: str) -> None:
    result = run_cli(
        f"--config.file={sim_env.config_file}",
        f"--web.config.file={TESTDATA / name}",
        "--check-config",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "web config ok" in result.stdout


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_as_exporter_toolkit_refuses_it(sim_env: SimEnv, tmp_path: Path, name: str) -> None:
    result = run_cli(
        f"--config.file={sim_env.config_file}",
        f"--web.config.file={TESTDATA / name}",
        "--check-config",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stdout
    assert REFUSED[name] in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def https_get(port: int, path: str, client: str | None) -> int:
    """GET over TLS with one of exporter-toolkit's client certificates (the server's own
    certificate is not what is tested here, so it is not verified)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client:
        context.load_cert_chain(TESTDATA / f"{client}.pem", TESTDATA / f"{client}.key")
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("web_config_auth_client_san.good.yaml", 200), ("web_config_auth_client_san.bad.yaml", 403)],
)
def test_client_certificate_sans_are_checked_after_the_handshake(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess], name: str, expected: int
) -> None:
    exporter = start_exporter(
        f"--config.file={sim_env.config_file}", f"--web.config.file={TESTDATA / name}"
    )
    wait_until(lambda: https_get(exporter.port, "/healthz", None) == 200)
    assert https_get(exporter.port, "/metrics", "client2_selfsigned") == expected
    assert https_get(exporter.port, "/metrics", None) == 403  # no certificate at all


def test_the_rate_limit_answers_429_but_never_to_probes(
    sim_env: SimEnv, start_exporter: Callable[..., ExporterProcess]
) -> None:
    web = TESTDATA / "web_config_rate_limiter_one_second.yaml"  # burst 0: nothing passes
    exporter = start_exporter(f"--config.file={sim_env.config_file}", f"--web.config.file={web}")
    wait_until(lambda: exporter.get("/healthz")[0] == 200)
    status, _, body = exporter.get("/metrics")
    assert (status, body) == (429, b"Too Many Requests\n")
