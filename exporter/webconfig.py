"""``--web.config.file``: TLS and basic auth in the format of Prometheus' exporter-toolkit.

```yaml
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert   # optional
  client_ca_file: ca.crt                         # optional
  min_version: TLS12                             # TLS10..TLS13; default TLS12 (max TLS13)
http_server_config:
  headers: {Strict-Transport-Security: max-age=31536000}
basic_auth_users:
  prometheus: $2y$10$...                         # bcrypt hash
```

Differences from Go's exporter-toolkit, which Python's ``ssl`` module imposes: a client
certificate that is presented is always verified against ``client_ca_file``, so
``RequestClientCert`` and ``RequireAnyClientCert`` need one too. When a client certificate is
required, the TLS handshake still lets clients without one through, and the HTTP layer answers
them 403 on every path but ``/healthz`` and ``/readyz``: Kubernetes probes cannot present
certificates.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from exporter.problems import Problems, read_yaml_file

CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
_REQUIRES_CERT = ("RequireAnyClientCert", "RequireAndVerifyClientCert")
TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# The security headers exporter-toolkit lets a web config set.
ALLOWED_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
)
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_TLS_KEYS = frozenset(
    {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
)
_TOP_KEYS = frozenset({"tls_server_config", "http_server_config", "basic_auth_users"})
TLS_PATH = "tls_server_config"
# Unknown users are checked against this hash so that they cost as much time as known ones.
_DUMMY_HASH = bcrypt.hashpw(b"unknown-user", bcrypt.gensalt(rounds=10))
_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """``tls_server_config``, validated."""

    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"

    @property
    def requires_client_cert(self) -> bool:
        return self.client_auth_type in _REQUIRES_CERT

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context; handshakes let cert-less clients in (see the module doc)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        context.maximum_version = TLS_VERSIONS[self.max_version]
        if context.minimum_version < ssl.TLSVersion.TLSv1_2:
            # OpenSSL's default security level refuses TLS 1.0/1.1 whatever the minimum says;
            # whoever asks for them in the web config gets them.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_auth_type != "NoClientCert":
            assert self.client_ca_file is not None
            context.load_verify_locations(cafile=self.client_ca_file)
            context.verify_mode = ssl.CERT_OPTIONAL
        return context


class BasicAuth:
    """bcrypt-checked users, with a small cache of recent successes (bcrypt is slow)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {name: hashed.encode() for name, hashed in users.items()}
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def user_count(self) -> int:
        return len(self._users)

    def check(self, header: str | None) -> bool:
        """True if the ``Authorization`` header names a user with the right password."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        hashed = self._users.get(user)
        cache_key = hashlib.sha256(
            b"\0".join([user.encode(), password.encode(), hashed or b""])
        ).digest()
        with self._lock:
            if hashed is not None and cache_key in self._verified:
                self._verified.move_to_end(cache_key)
                return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH)
        except ValueError:
            ok = False  # e.g. a password over bcrypt's 72 bytes: a wrong password, not a crash
        ok = ok and hashed is not None
        if ok:
            with self._lock:
                self._verified[cache_key] = None
                while len(self._verified) > _CACHE_SIZE:
                    self._verified.popitem(last=False)
        return ok


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The whole web config."""

    tls: TlsSettings | None = None
    basic_auth: BasicAuth | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Keys that load but do nothing here, said once at start-up.
    warnings: tuple[str, ...] = ()


def _tls_strings(node: dict[str, Any], problems: Problems) -> dict[str, str]:
    """The keys of ``tls_server_config`` that are set, each a non-empty string."""
    problems.check_keys(node, _TLS_KEYS, TLS_PATH)
    values: dict[str, str] = {}
    for key in sorted(_TLS_KEYS):
        value = node.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            problems.add(f"{TLS_PATH}.{key}", "must be a non-empty string")
            continue
        values[key] = value
    for key in ("cert_file", "key_file", "client_ca_file"):
        if key in values and not Path(values[key]).is_file():
            problems.add(f"{TLS_PATH}.{key}", f"cannot read {values[key]}")
    for key in ("cert_file", "key_file"):
        if node.get(key) is None:
            problems.add(f"{TLS_PATH}.{key}", "is required")
    return values


def _check_client_auth(values: dict[str, str], problems: Problems) -> str:
    auth = values.get("client_auth_type", "NoClientCert")
    path = f"{TLS_PATH}.client_auth_type"
    if auth not in CLIENT_AUTH_TYPES:
        problems.add(path, f"{auth!r} is not one of {', '.join(CLIENT_AUTH_TYPES)}")
    elif auth == "NoClientCert" and "client_ca_file" in values:
        problems.add(f"{TLS_PATH}.client_ca_file", "is set but client_auth_type is NoClientCert")
    elif auth != "NoClientCert" and "client_ca_file" not in values:
        problems.add(f"{TLS_PATH}.client_ca_file", f"is required with client_auth_type {auth}")
    return auth


def _check_versions(values: dict[str, str], problems: Problems) -> tuple[str, str]:
    low, high = values.get("min_version", "TLS12"), values.get("max_version", "TLS13")
    for key, version in (("min_version", low), ("max_version", high)):
        if version not in TLS_VERSIONS:
            problems.add(
                f"{TLS_PATH}.{key}", f"{version!r} is not one of {', '.join(TLS_VERSIONS)}"
            )
    if low in TLS_VERSIONS and high in TLS_VERSIONS and TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        problems.add(f"{TLS_PATH}.min_version", f"{low} is above max_version {high}")
    return low, high


def _parse_tls(node: Any, problems: Problems) -> TlsSettings | None:
    if not isinstance(node, dict):
        problems.add(TLS_PATH, "must be a mapping")
        return None
    before = len(problems.lines)
    values = _tls_strings(node, problems)
    auth = _check_client_auth(values, problems)
    low, high = _check_versions(values, problems)
    if len(problems.lines) > before:
        return None
    settings = TlsSettings(
        cert_file=values["cert_file"],
        key_file=values["key_file"],
        client_auth_type=auth,
        client_ca_file=values.get("client_ca_file"),
        min_version=low,
        max_version=high,
    )
    try:
        settings.ssl_context()
    except (ssl.SSLError, OSError) as err:
        problems.add(TLS_PATH, f"cannot load the certificate, key or CA: {err.strerror or err}")
        return None
    return settings


def _parse_http(node: Any, problems: Problems, warnings: list[str]) -> dict[str, str]:
    """``http_server_config``: the allowed security headers; ``http2`` is noted, not served."""
    path = "http_server_config"
    if not isinstance(node, dict):
        problems.add(path, "must be a mapping")
        return {}
    problems.check_keys(node, {"headers", "http2"}, path)
    http2 = node.get("http2")
    if http2 is not None and not isinstance(http2, bool):
        problems.add(f"{path}.http2", "must be true or false")
    elif http2:
        warnings.append(f"{path}.http2: this exporter serves HTTP/1.1 only; http2 has no effect")
    raw_headers = node.get("headers") or {}
    if not isinstance(raw_headers, dict):
        problems.add(f"{path}.headers", "must be a mapping")
        return {}
    headers: dict[str, str] = {}
    for name, value in raw_headers.items():
        if name not in ALLOWED_HEADERS:
            problems.add(
                f"{path}.headers.{name}", f"not an allowed header ({', '.join(ALLOWED_HEADERS)})"
            )
        elif not isinstance(value, str) or "\n" in value or "\r" in value:
            problems.add(f"{path}.headers.{name}", "must be a one-line string")
        else:
            headers[name] = value
    return headers


def _parse_basic_auth(users: Any, problems: Problems) -> BasicAuth | None:
    if not isinstance(users, dict) or not users:
        problems.add("basic_auth_users", "must be a mapping of user names to bcrypt hashes")
        return None
    before = len(problems.lines)
    for name, hashed in users.items():
        if (
            not isinstance(hashed, str)
            or not hashed.startswith(_BCRYPT_PREFIXES)
            or len(hashed) != 60
        ):
            problems.add(f"basic_auth_users.{name}", "is not a bcrypt hash ($2a$, $2b$ or $2y$)")
    if len(problems.lines) > before:
        return None
    return BasicAuth({str(k): str(v) for k, v in users.items()})


def parse_web_config(document: Any) -> WebConfig:
    """Validate a parsed web config; raise ConfigError with every problem."""
    if document is None:
        return WebConfig()
    problems = Problems()
    if not isinstance(document, dict):
        problems.add("web config", "must be a mapping")
        problems.raise_if_any()
    problems.check_keys(document, _TOP_KEYS, "")
    warnings: list[str] = []
    tls = headers = basic_auth = None
    if document.get("tls_server_config") is not None:
        tls = _parse_tls(document["tls_server_config"], problems)
    if document.get("http_server_config") is not None:
        headers = _parse_http(document["http_server_config"], problems, warnings)
    if document.get("basic_auth_users") is not None:
        basic_auth = _parse_basic_auth(document["basic_auth_users"], problems)
    problems.raise_if_any()
    return WebConfig(
        tls=tls, basic_auth=basic_auth, headers=headers or {}, warnings=tuple(warnings)
    )


def describe_web_config(web: WebConfig) -> str:
    """One secret-free line for ``--check-config``."""
    parts = []
    if web.tls is not None:
        tls = web.tls
        parts.append(f"TLS {tls.min_version}-{tls.max_version}, client auth {tls.client_auth_type}")
    if web.basic_auth is not None:
        parts.append(f"basic auth for {web.basic_auth.user_count} user(s)")
    if web.headers:
        parts.append(f"headers {', '.join(web.headers)}")
    return "; ".join(parts) or "plain HTTP, no authentication"


def load_web_config(path: str) -> WebConfig:
    """Read and validate ``--web.config.file`` (strict YAML, as the main config)."""
    return parse_web_config(read_yaml_file(path, "web config file"))
