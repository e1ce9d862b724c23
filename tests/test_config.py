"""Configuration: every broken file is refused with one line per problem naming its path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trustme

from exporter.cli import describe_config
from exporter.config.loader import load_config, parse_config
from exporter.config.model import (
    CLOUDS,
    DEFAULT_PRIVILEGED_ROLES,
    CertificateCredential,
    ClientSecretCredential,
    RateLimit,
    Secret,
    SegmentsConfig,
    WorkloadIdentityCredential,
    format_duration,
)
from exporter.config.network import parse_duration, parse_rate_limit
from exporter.config.problems import ConfigError
from tests.conftest import run_cli, write_app_certificate

CONFFILES = Path(__file__).parent / "conffiles"
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
TENANT = "5f1c3d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f"
CLIENT = "00000000-0000-0000-0000-000000000001"


def expected_lines(path: Path) -> list[str]:
    return [
        line.removeprefix("# expect: ").strip()
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]


BAD_CONFIGS = sorted(CONFFILES.glob("*.yaml"))


def test_the_corpus_is_large_enough() -> None:
    assert len(BAD_CONFIGS) >= 25


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=lambda p: p.stem)
def test_bad_config_is_refused_with_each_problem_and_its_path(path: Path) -> None:
    expected = expected_lines(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    problems = caught.value.problems
    for line in expected:
        assert any(line in problem for problem in problems), (line, problems)
    assert len(problems) == len(expected), problems


@pytest.mark.system  # starts the CLI as a process
@pytest.mark.parametrize(
    "path",
    [
        CONFFILES / "syntax_error.yaml",
        CONFFILES / "several_problems.yaml",
        CONFFILES / "missing_env_var.yaml",
    ],
)
def test_cli_exits_2_with_one_line_per_problem_and_no_traceback(path: Path) -> None:
    result = run_cli(f"--config.file={path}", "--check-config")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == len(expected_lines(path))
    assert "Traceback" not in result.stderr


@pytest.mark.system  # starts the CLI as a process
def test_missing_config_file_exits_2() -> None:
    result = run_cli("--config.file=/nonexistent/config.yaml", "--check-config")
    assert result.returncode == 2
    assert "cannot read config file" in result.stderr


def minimal(**tenant: object) -> dict[str, object]:
    return {
        "tenants": [
            {"tenant_id": TENANT, "client_id": CLIENT, "client_secret": "s3cret-value", **tenant}
        ]
    }


def test_defaults_and_overrides_apply() -> None:
    config = parse_config(
        {
            "defaults": {"interval": "5m", "jitter": "10s", "stale_after": "2x"},
            "tenants": [
                {
                    "name": "a",
                    "tenant_id": TENANT,
                    "client_id": CLIENT,
                    "client_secret": "s3cret-value",
                },
                {
                    "name": "b",
                    "tenant_id": "fabrikam.onmicrosoft.com",
                    "client_id": CLIENT,
                    "client_secret": "s3cret-value",
                    "interval": "1h30m",
                    "stale_after": "4h",
                    "cloud": "usgovdod",
                },
            ],
        },
        environ={},
    )
    a, b = config.tenants
    assert (a.interval, a.jitter, a.timeout, a.stale_after, a.cloud) == (300, 10, 30, 600, "global")
    assert (b.interval, b.stale_after, b.cloud) == (5400, 4 * 3600, "usgovdod")
    assert b.authority == "https://login.microsoftonline.us/fabrikam.onmicrosoft.com"
    assert b.graph_scope == "https://dod-graph.microsoft.us/.default"
    assert config.concurrency == 32
    assert str(config.per_app_per_tenant) == "5/10s" and str(config.per_app) == "122/10s"


def test_name_defaults_to_tenant_id() -> None:
    assert parse_config(minimal(), environ={}).tenants[0].name == TENANT


def test_env_references_are_resolved_and_dollar_dollar_is_literal() -> None:
    config = parse_config(
        minimal(client_secret="${MY_SECRET}$$x"), environ={"MY_SECRET": "from-env"}
    )
    credential = config.tenants[0].credential
    assert isinstance(credential, ClientSecretCredential)
    assert credential.secret.reveal() == "from-env$x"


def test_secrets_never_show_in_repr() -> None:
    config = parse_config(minimal(client_secret="very-secret-value"), environ={})
    assert "very-secret-value" not in repr(config)
    assert "very-secret-value" not in str(Secret("very-secret-value"))
    assert config.secrets() == ("very-secret-value",)
    assert "very-secret-value" not in "\n".join(describe_config(config))


def test_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret\n")
    config = parse_config(
        minimal(client_secret=None, client_secret_file=str(secret_file)), environ={}
    )
    credential = config.tenants[0].credential
    assert isinstance(credential, ClientSecretCredential)
    assert credential.secret.reveal() == "file-secret"
    assert credential.kind == "client_secret_file"


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("\n")
    with pytest.raises(ConfigError, match="problem") as caught:
        parse_config(minimal(client_secret=None, client_secret_file=str(secret_file)), environ={})
    assert caught.value.problems == [f"tenants[0].client_secret_file: {secret_file} is empty"]


def test_certificate_credential_is_checked(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("app.example")
    key_file, cert_file = tmp_path / "app.key", tmp_path / "app.crt"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    config = parse_config(
        minimal(
            client_secret=None,
            certificate={"private_key_file": str(key_file), "certificate_file": str(cert_file)},
        ),
        environ={},
    )
    assert isinstance(config.tenants[0].credential, CertificateCredential)
    assert "PRIVATE KEY" not in repr(config)

    other = ca.issue_cert("other.example")
    other_cert = tmp_path / "other.crt"
    other.cert_chain_pems[0].write_to_path(str(other_cert))
    with pytest.raises(ConfigError) as caught:
        parse_config(
            minimal(
                client_secret=None,
                certificate={
                    "private_key_file": str(key_file),
                    "certificate_file": str(other_cert),
                },
            ),
            environ={},
        )
    assert caught.value.problems == [
        f"tenants[0].certificate: {key_file} does not belong to the certificate in {other_cert}"
    ]

    not_a_key = tmp_path / "not.key"
    not_a_key.write_text("hello")
    with pytest.raises(ConfigError) as caught:
        parse_config(
            minimal(
                client_secret=None,
                certificate={
                    "private_key_file": str(not_a_key),
                    "certificate_file": str(cert_file),
                },
            ),
            environ={},
        )
    assert caught.value.problems == [
        f"tenants[0].certificate.private_key_file: {not_a_key} is not a PEM private key (or the passphrase is wrong)"
    ]


def test_workload_identity_needs_the_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("federated")
    config = parse_config(
        minimal(client_secret=None, workload_identity=True),
        environ={"AZURE_FEDERATED_TOKEN_FILE": str(token)},
    )
    assert config.tenants[0].credential == WorkloadIdentityCredential(str(token))
    with pytest.raises(ConfigError) as caught:
        parse_config(minimal(client_secret=None, workload_identity=True), environ={})
    assert caught.value.problems == [
        "tenants[0].workload_identity: environment variable AZURE_FEDERATED_TOKEN_FILE is not set"
    ]


def test_world_readable_config_warns(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"tenants: [{{tenant_id: {TENANT}, client_id: {CLIENT}, client_secret: s3cret-value}}]\n"
    )
    path.chmod(0o644)
    assert any("readable by every user" in w for w in load_config(path, environ={}).warnings)
    path.chmod(0o600)
    assert load_config(path, environ={}).warnings == ()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("1m30s", 90),
        ("2h0m5s", 7205),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "1d", "-5s", "1.5h", "5 m", "1s1h", "ms"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (0.25, 1, 59, 60, 90, 3600, 5400, 86400):
        assert parse_duration(format_duration(seconds)) == seconds


def test_rate_limits() -> None:
    limit = parse_rate_limit("5/10s")
    assert (limit.requests, limit.per_seconds) == (5, 10)
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate_limit("5 per 10s")
    with pytest.raises(ValueError, match="positive"):
        parse_rate_limit("0/10s")


def test_cloud_endpoints() -> None:
    assert CLOUDS["global"].authority_host == "https://login.microsoftonline.com"
    assert CLOUDS["global"].graph_host == "https://graph.microsoft.com"
    assert CLOUDS["usgov"].graph_host == "https://graph.microsoft.us"
    assert CLOUDS["usgovdod"].authority_host == "https://login.microsoftonline.us"
    assert CLOUDS["usgovdod"].graph_host == "https://dod-graph.microsoft.us"
    assert CLOUDS["china"].authority_host == "https://login.partner.microsoftonline.cn"
    assert CLOUDS["china"].graph_host == "https://microsoftgraph.chinacloudapi.cn"
    config = parse_config(
        {
            "endpoints": {
                "authority_host": "https://127.0.0.1:8443/",
                "graph_host": "https://127.0.0.1:9443",
            },
            **minimal(cloud="custom"),
        },
        environ={},
    )
    tenant = config.tenants[0]
    assert tenant.authority == f"https://127.0.0.1:8443/{TENANT}"
    assert tenant.graph_scope == "https://127.0.0.1:9443/.default"


def test_example_config_validates(tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "config.example.yaml"
    secret_file = tmp_path / "secret"
    secret_file.write_text("x" * 10)
    ca = trustme.CA()
    cert = ca.issue_cert("app.example")
    cert.private_key_pem.write_to_path(str(tmp_path / "app.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "app.crt"))
    text = (
        example.read_text()
        .replace("/var/run/secrets/fabrikam/client-secret", str(secret_file))
        .replace("/etc/exporter/northwind.key", str(tmp_path / "app.key"))
        .replace("/etc/exporter/northwind.crt", str(tmp_path / "app.crt"))
    )
    path = tmp_path / "config.yaml"
    path.write_text(text)
    token = tmp_path / "token"
    token.write_text("t")
    config = load_config(
        path, environ={"CONTOSO_SECRET": "s3cret-value", "AZURE_FEDERATED_TOKEN_FILE": str(token)}
    )
    assert [t.credential.kind for t in config.tenants] == [
        "client_secret",
        "client_secret_file",
        "certificate",
        "workload_identity",
        "managed_identity",
    ]
    assert os.environ.get("CONTOSO_SECRET") is None


def test_intervals_beyond_the_rate_limits_are_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    tenants = ", ".join(
        f"{{name: t{i}, tenant_id: {TENANT}, client_id: {CLIENT}, client_secret: s3cret-value}}"
        for i in range(3)
    )
    path.write_text(
        f"defaults: {{interval: 1s, jitter: 0s}}\nrate_limits: {{per_app: 20/10s}}\ntenants: [{tenants}]\n"
    )
    path.chmod(0o600)
    warnings = load_config(path, environ={}).warnings
    assert sum("rate_limits.per_app_per_tenant 5/10s" in w for w in warnings) == 3
    assert any(f"client_id {CLIENT}" in w and "rate_limits.per_app 20/10s" in w for w in warnings)


def test_national_clouds_default_to_the_successor_and_warn_about_the_seed_report() -> None:
    config = parse_config(
        {
            "tenants": [
                {**minimal()["tenants"][0], "name": "gov", "cloud": "usgov"},
                {**minimal()["tenants"][0], "name": "cn", "cloud": "china"},
                {
                    **minimal()["tenants"][0],
                    "name": "dod",
                    "cloud": "usgovdod",
                    "source": "credentialUserRegistrationCount",
                },
                {**minimal()["tenants"][0], "name": "global"},
            ]
        },
        environ={},
    )
    sources = {t.name: t.source for t in config.tenants}
    assert sources == {
        "gov": "userRegistrationDetails",
        "cn": "userRegistrationDetails",
        "dod": "credentialUserRegistrationCount",  # explicit: honoured...
        "global": "credentialUserRegistrationCount",
    }
    assert len(config.warnings) == 1  # ...with one warning
    assert config.warnings[0].startswith("tenants[2].source: Microsoft documents")


def test_segments_defaults_and_overrides() -> None:
    group = "3F1C2B9E-0000-4000-8000-000000000001"
    config = parse_config(
        {
            "defaults": {
                "source": "userRegistrationDetails",
                "segments": {"privileged_roles": True, "include_eligible": True},
            },
            "tenants": [
                {**minimal()["tenants"][0], "name": "a"},
                {
                    **minimal()["tenants"][0],
                    "name": "b",
                    "segments": {"privileged_roles": [GLOBAL_ADMIN], "groups": {"finance": group}},
                },
                {**minimal()["tenants"][0], "name": "c", "segments": {"privileged_roles": False}},
            ],
        },
        environ={},
    )
    a, b, c = (t.segments for t in config.tenants)
    assert a.privileged_roles == DEFAULT_PRIVILEGED_ROLES and a.include_eligible
    assert b.privileged_roles == (GLOBAL_ADMIN,) and b.include_eligible
    assert b.groups == (("finance", group.lower()),)
    assert c.privileged_roles == () and c.include_eligible
    assert parse_config(minimal(), environ={}).tenants[0].segments == SegmentsConfig()


def test_one_multi_tenant_app_in_defaults_serves_tenants_that_name_only_themselves(
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "app-secret"
    secret_file.write_text("shared-secret-value\n")
    own_key, own_cert, _ = write_app_certificate(tmp_path)
    config = parse_config(
        {
            "defaults": {"client_id": CLIENT, "client_secret_file": str(secret_file)},
            "tenants": [
                {"name": "a", "tenant_id": TENANT},
                {"name": "b", "tenant_id": "fabrikam.onmicrosoft.com"},
                {  # its own credential replaces the shared one whole
                    "name": "c",
                    "tenant_id": "3c0f1b2e-0000-4000-8000-000000000003",
                    "client_id": "00000000-0000-0000-0000-000000000003",
                    "certificate": {
                        "private_key_file": str(own_key),
                        "certificate_file": str(own_cert),
                    },
                },
            ],
        },
        environ={},
    )
    a, b, c = config.tenants
    assert a.client_id == b.client_id == CLIENT and a.shared_app and b.shared_app
    assert isinstance(a.credential, ClientSecretCredential)
    assert a.credential.secret.reveal() == "shared-secret-value"
    assert isinstance(c.credential, CertificateCredential) and not c.shared_app
    summary = "\n".join(describe_config(config))
    assert "shared app (defaults) used by 2 tenant(s): a, b" in summary
    assert "shared-secret-value" not in summary


def test_a_broken_shared_credential_is_reported_once_at_defaults() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "defaults": {"client_id": "not-a-guid", "client_secret_file": "/nonexistent"},
                "tenants": [{"tenant_id": TENANT}, {"tenant_id": "fabrikam.onmicrosoft.com"}],
            },
            environ={},
        )
    problems = caught.value.problems
    assert sum("defaults.client_secret_file: cannot read /nonexistent" in p for p in problems) == 1
    assert any(p.startswith("defaults.client_id: 'not-a-guid' is not a GUID") for p in problems)


# ------------------------------------------------------ every refusal with its path and words
# What an operator reads is the whole line: path and message. Each document here holds one kind
# of mistake (or several of one kind, all reported at once).

GUID = "11111111-2222-3333-4444-555555555555"
SUCC = {"source": "userRegistrationDetails"}
ROLE_UPPER = "62E90394-69F5-4237-9190-012177145E10"


def t(**fields: object) -> dict[str, object]:
    return {
        "tenant_id": "5f1c3d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f",
        "client_id": "00000000-0000-0000-0000-000000000001",
        "client_secret": "s",
        **fields,
    }


def doc(*tenants: dict[str, object], **top: object) -> dict[str, object]:
    return {"tenants": list(tenants) or [t()], **top}


@pytest.mark.parametrize(
    ("document", "problems"),
    [
        pytest.param(doc(defaults=5), ["defaults: must be a mapping"], id="defaults not a mapping"),
        pytest.param(
            doc(rate_limits=5), ["rate_limits: must be a mapping"], id="rate_limits not a mapping"
        ),
        pytest.param(
            doc(rate_limits={"per_app": "5/10s", "bogus": 1}),
            ["rate_limits.bogus: unknown key (expected one of: per_app, per_app_per_tenant)"],
            id="rate_limits unknown key",
        ),
        pytest.param(
            doc(rate_limits={"per_app": "0/10s"}),
            ["rate_limits.per_app: '0/10s': requests and period must be positive"],
            id="rate zero requests",
        ),
        pytest.param(
            doc(rate_limits={"per_app_per_tenant": "5/0s"}),
            ["rate_limits.per_app_per_tenant: '5/0s': requests and period must be positive"],
            id="rate zero seconds",
        ),
        pytest.param(
            doc(rate_limits={"per_app": 5}),
            ["rate_limits.per_app: 5 is not a rate (use e.g. 5/10s)"],
            id="rate not a string",
        ),
        pytest.param(
            doc(concurrency=0), ["concurrency: 0 is out of range (1 to 1000)"], id="concurrency 0"
        ),
        pytest.param(
            doc(concurrency=1001),
            ["concurrency: 1001 is out of range (1 to 1000)"],
            id="concurrency too big",
        ),
        pytest.param(
            doc(t(cloud="custom"), endpoints=5),
            ["endpoints: must be a mapping with authority_host and graph_host"],
            id="endpoints not a mapping",
        ),
        pytest.param(
            doc(
                t(cloud="custom"),
                endpoints={
                    "authority_host": "https://a.example",
                    "graph_host": "https://g.example",
                    "x": 1,
                },
            ),
            ["endpoints.x: unknown key (expected one of: authority_host, graph_host)"],
            id="endpoints unknown key",
        ),
        pytest.param(
            doc(
                t(cloud="custom"), endpoints={"authority_host": "http://a.example", "graph_host": 5}
            ),
            [
                "endpoints.authority_host: 'http://a.example' must be an https:// URL without a path",
                "endpoints.graph_host: must be a non-empty string",
            ],
            id="endpoints bad host",
        ),
        pytest.param(
            doc(t(interval="0s", timeout="zz", jitter="500h")),
            [
                "tenants[0].interval: 0s is out of range (1s to 24h)",
                "tenants[0].timeout: 'zz' is not a duration (use e.g. 30s, 5m, 1h30m, 250ms)",
                "tenants[0].jitter: 500h is out of range (0s to 24h)",
            ],
            id="three bad durations",
        ),
        pytest.param(
            doc(t(interval="1m", jitter="2m")),
            ["tenants[0].jitter: must not be longer than interval"],
            id="jitter longer than interval",
        ),
        pytest.param(
            doc(t(stale_after="0.5x")),
            ["tenants[0].stale_after: '0.5x': use Nx with N >= 1 or a duration"],
            id="stale 0.5x",
        ),
        pytest.param(
            doc(t(stale_after="xx")),
            ["tenants[0].stale_after: 'xx': use Nx with N >= 1 or a duration"],
            id="stale xx",
        ),
        pytest.param(
            doc(t(stale_after="5q")),
            ["tenants[0].stale_after: '5q' is not a duration (use e.g. 30s, 5m, 1h30m, 250ms)"],
            id="stale bad duration",
        ),
        pytest.param(
            doc(t(stale_after="1m")),
            ["tenants[0].stale_after: must not be shorter than interval"],
            id="stale short",
        ),
        pytest.param(
            doc(t(segments=5, **SUCC)),
            ["tenants[0].segments: must be a mapping"],
            id="segments not a mapping",
        ),
        pytest.param(
            doc(defaults={"segments": 5}),
            ["defaults.segments: must be a mapping"],
            id="defaults.segments not a mapping",
        ),
        pytest.param(
            doc(defaults={"segments": {"groups": {"a": GUID}, "bogus": 1}}),
            [
                "defaults.segments.groups: groups are set per tenant (group IDs differ per tenant)",
                "defaults.segments.bogus: unknown key (expected one of: groups, include_eligible, privileged_roles)",
            ],
            id="defaults.segments groups",
        ),
        pytest.param(
            doc(t(segments={"privileged_roles": "yes"})),
            [
                "tenants[0].segments.privileged_roles: must be true, false or a list of role template IDs"
            ],
            id="roles not a list",
        ),
        pytest.param(
            doc(t(segments={"privileged_roles": []})),
            [
                "tenants[0].segments.privileged_roles: must be true, false or a list of role template IDs"
            ],
            id="roles empty list",
        ),
        pytest.param(
            doc(defaults={"segments": {"privileged_roles": [5, "x"]}}),
            [
                "defaults.segments.privileged_roles[0]: 5 is not a role template ID (a GUID)",
                "defaults.segments.privileged_roles[1]: 'x' is not a role template ID (a GUID)",
            ],
            id="defaults roles bad",
        ),
        pytest.param(
            doc(t(segments={"include_eligible": "yes"})),
            ["tenants[0].segments.include_eligible: must be true or false"],
            id="eligible not bool",
        ),
        pytest.param(
            doc(defaults={"segments": {"include_eligible": 1}}),
            ["defaults.segments.include_eligible: must be true or false"],
            id="defaults eligible not bool",
        ),
        pytest.param(
            doc(t(segments={"groups": [GUID]}, **SUCC)),
            ["tenants[0].segments.groups: must be a mapping of group names to group object IDs"],
            id="groups not a mapping",
        ),
        pytest.param(
            doc(t(segments={"groups": {}}, **SUCC)),
            ["tenants[0].segments.groups: must be a mapping of group names to group object IDs"],
            id="groups empty",
        ),
        pytest.param(
            doc(t(segments={"groups": {f"g{i}": GUID for i in range(101)}}, **SUCC)),
            ["tenants[0].segments.groups: at most 100 groups per tenant"],
            id="too many groups",
        ),
        pytest.param(
            doc(
                t(
                    segments={
                        "groups": {"": GUID, "x" * 201: GUID, "a\tb": GUID, "ok": "nope", 5: GUID}
                    },
                    **SUCC,
                )
            ),
            [
                "tenants[0].segments.groups.: a group name must be 1 to 128 characters",
                "tenants[0].segments.groups.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx: a group name must be 1 to 128 characters",
                "tenants[0].segments.groups.a\tb: a group name must be printable (no control characters)",
                "tenants[0].segments.groups.ok: 'nope' is not a group object ID (a GUID)",
                "tenants[0].segments.groups.5: a group name must be 1 to 128 characters",
            ],
            id="group names",
        ),
        pytest.param(
            doc(t(segments={"groups": {"a": GUID}})),
            [
                "tenants[0].segments.groups: needs source userRegistrationDetails or auto: the seed's report (credentialUserRegistrationCount) has no per-user rows to count groups from"
            ],
            id="groups on seed source",
        ),
        pytest.param(
            doc(t(client_secret="${1BAD}")),
            ["tenants[0].client_secret: ${1BAD} is not a valid environment variable reference"],
            id="bad env ref",
        ),
        pytest.param(
            doc(t(name="a", interval="zz"), t(name="b", tenant_id="nope")),
            [
                "tenants[0].interval: 'zz' is not a duration (use e.g. 30s, 5m, 1h30m, 250ms)",
                "tenants[1].tenant_id: 'nope' is neither a GUID nor a domain name",
            ],
            id="two bad tenants",
        ),
        pytest.param(
            doc(
                {
                    "tenant_id": "5f1c3d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f",
                    "client_id": "00000000-0000-0000-0000-000000000001",
                }
            ),
            [
                "tenants[0]: no credential: set exactly one of client_secret, client_secret_file, certificate, workload_identity, managed_identity"
            ],
            id="only credential missing",
        ),
        pytest.param(
            doc(bogus=1),
            [
                "bogus: unknown key (expected one of: concurrency, defaults, discovery, endpoints, rate_limits, tenant_labels, tenants, tls_ca_file)"
            ],
            id="unknown top key",
        ),
    ],
)
def test_each_refusal_names_its_path_and_says_why(
    document: dict[str, object], problems: list[str]
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(document, environ={})
    assert refused.value.problems == problems


def test_values_at_the_edge_of_their_range_are_accepted() -> None:
    config = parse_config(
        doc(
            t(interval="1s", timeout="1s", jitter="1s", stale_after="1x"),
            t(name="b", tenant_id=GUID, interval="24h", jitter="24h"),
            concurrency=1,
            rate_limits={"per_app": "1/1s", "per_app_per_tenant": "1/10s"},
            endpoints={"authority_host": "https://a.example/", "graph_host": "https://g.example"},
        ),
        environ={},
    )
    assert config.concurrency == 1
    assert config.per_app == RateLimit(1, 1.0)
    assert config.per_app_per_tenant == RateLimit(1, 10.0)
    assert config.tenants[0].stale_after == config.tenants[0].interval == 1.0
    assert config.tenants[1].jitter == config.tenants[1].interval == 86400.0
    assert parse_config(doc(concurrency=1000), environ={}).concurrency == 1000
    custom = parse_config(
        doc(
            t(cloud="custom"),
            endpoints={"authority_host": "https://a.example/", "graph_host": "https://g.example"},
        ),
        environ={},
    )
    assert custom.tenants[0].endpoints.authority_host == "https://a.example"


def test_segments_from_defaults_and_a_tenants_own_keys() -> None:
    config = parse_config(
        doc(
            t(name="a", segments={"privileged_roles": [ROLE_UPPER, ROLE_UPPER.lower()]}, **SUCC),
            t(
                name="b",
                tenant_id=GUID,
                segments={"groups": {"Pilot": f" {GUID.upper()} "}},
                **SUCC,
            ),
            defaults={"segments": {"privileged_roles": True, "include_eligible": True}},
        ),
        environ={},
    )
    first, second = (tenant.segments for tenant in config.tenants)
    assert first is not None and second is not None
    assert first.privileged_roles == (ROLE_UPPER.lower(),)  # one role, however it is spelled
    assert first.include_eligible and second.include_eligible
    assert second.privileged_roles == DEFAULT_PRIVILEGED_ROLES
    assert second.groups == (("Pilot", GUID.lower()),)
    assert parse_config(doc(), environ={}).tenants[0].segments in (None, SegmentsConfig())


def test_environment_references_come_from_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENTRA_TEST_SECRET", "from-env")
    config = parse_config(doc(t(client_secret="${ENTRA_TEST_SECRET}")))
    credential = config.tenants[0].credential
    assert isinstance(credential, ClientSecretCredential)
    assert credential.secret.reveal() == "from-env"


def test_a_ca_file_with_a_certificate_is_kept_and_one_that_is_no_path_refused(
    tmp_path: Path,
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(trustme.CA().cert_pem.bytes())
    assert parse_config(doc(tls_ca_file=str(ca_file)), environ={}).tls_ca_file == str(ca_file)
    with pytest.raises(ConfigError) as refused:
        parse_config(doc(tls_ca_file=5), environ={})
    assert refused.value.problems == ["tls_ca_file: must be a non-empty string"]


def test_group_limits_are_inclusive() -> None:
    groups = {f"g{i}": GUID for i in range(99)} | {"n" * 128: GUID}
    config = parse_config(doc(t(segments={"groups": groups}, **SUCC)), environ={})
    segments = config.tenants[0].segments
    assert segments is not None and len(segments.groups) == 100


def test_a_ca_file_without_a_certificate_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "ca.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as refused:
        parse_config(doc(tls_ca_file=str(empty)), environ={})
    assert refused.value.problems == [f"tls_ca_file: {empty} holds no PEM certificate"]


def test_a_missing_config_file_is_named_as_the_config_file(tmp_path: Path) -> None:
    absent = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as refused:
        load_config(absent)
    assert refused.value.problems == [
        f"{absent}: cannot read config file: No such file or directory (name it with "
        "--config.file, start from config.example.yaml, or try --demo)"
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (0.0015, "2ms"),
        (1, "1s"),
        (1.9, "1s"),
        (90, "1m30s"),
        (3600, "1h"),
        (3661, "1h1m1s"),
        (86400, "24h"),
    ],
)
def test_durations_are_written_as_they_are_read(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_secrets_repr_never_shows_it() -> None:
    assert repr(Secret("hunter2")) == "Secret('********')"


def test_tenant_labels_are_declared_once_and_given_per_tenant() -> None:
    tenant = {
        "tenant_id": "5f1c3d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f",
        "client_id": "00000000-0000-4000-8000-000000000001",
        "client_secret": "s3cret-value",
    }
    config = parse_config(
        {
            "tenant_labels": ["tier", "region"],
            "tenants": [
                {**tenant, "name": "contoso", "labels": {"tier": "gold", "region": "eu"}},
                {**tenant, "name": "fabrikam", "labels": {"region": 'we"st'}},
            ],
        },
        environ={},
    )
    assert config.tenant_labels == ("tier", "region")
    assert [t.labels for t in config.tenants] == [
        (("tier", "gold"), ("region", "eu")),
        (("tier", ""), ("region", 'we"st')),
    ]
    with pytest.raises(ConfigError) as refused:
        parse_config(
            {
                "tenant_labels": ["tier", "cloud", "9x", "tier"],
                "tenants": [{**tenant, "labels": {"zone": "a", "tier": 3}}],
            },
            environ={},
        )
    assert refused.value.problems == [
        "tenant_labels[1]: 'cloud' is a label entra_tenant_info already has",
        "tenant_labels[2]: '9x' is not a valid label name",
        "tenant_labels[3]: 'tier' is declared twice",
        "tenants[0].labels.zone: not declared in tenant_labels (tier)",
        "tenants[0].labels.tier: must be a string of at most 256 characters",
    ]


def test_tenant_labels_join_entra_tenant_info() -> None:
    from exporter.metrics.families import TENANT_INFO
    from exporter.metrics.rendering import render_tenant_block
    from exporter.metrics.snapshots import TenantSnapshot

    snapshot = TenantSnapshot("contoso", "t-id", "global", "userRegistrationDetails",
                              labels=(("tier", "gold"), ("region", 'e"u')))  # fmt: skip
    assert render_tenant_block(snapshot)[TENANT_INFO] == (
        'entra_tenant_info{tenant="contoso",tenant_id="t-id",cloud="global",'
        'source="userRegistrationDetails",tier="gold",region="e\\"u"} 1\n'
    )
