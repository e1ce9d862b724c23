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
import yaml

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
_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
}
# Unknown users are checked against this hash so that they cost as much time as known ones.
_DUMMY_HASH = bcrypt.hashpw(b"unknown-user", bcrypt.gensalt(rounds=10))
_CACHE_SIZE = 256


class WebConfigError(Exception):
    """The web config file is invalid; ``problems`` holds one ``path: message`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} web config problem(s)")
        self.problems = problems


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


def _problems_for_tls(node: Any, problems: list[str]) -> TlsSettings | None:
    path = "tls_server_config"
    if not isinstance(node, dict):
        problems.append(f"{path}: must be a mapping")
        return None
    for key in node:
        if key not in _TLS_KEYS:
            problems.append(
                f"{path}.{key}: unknown key (expected one of: {', '.join(sorted(_TLS_KEYS))})"
            )
    values: dict[str, str] = {}
    for key in _TLS_KEYS:
        value = node.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            problems.append(f"{path}.{key}: must be a non-empty string")
            continue
        values[key] = value
    for key in ("cert_file", "key_file", "client_ca_file"):
        if key in values and not Path(values[key]).is_file():
            problems.append(f"{path}.{key}: cannot read {values[key]}")
    for key in ("cert_file", "key_file"):
        if key not in values and f"{path}.{key}: must be a non-empty string" not in problems:
            problems.append(f"{path}.{key}: is required")
    auth = values.get("client_auth_type", "NoClientCert")
    if auth not in CLIENT_AUTH_TYPES:
        problems.append(
            f"{path}.client_auth_type: {auth!r} is not one of {', '.join(CLIENT_AUTH_TYPES)}"
        )
    elif auth == "NoClientCert" and "client_ca_file" in values:
        problems.append(f"{path}.client_ca_file: is set but client_auth_type is NoClientCert")
    elif auth != "NoClientCert" and "client_ca_file" not in values:
        problems.append(f"{path}.client_ca_file: is required with client_auth_type {auth}")
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        version = values.get(key, default)
        if version not in TLS_VERSIONS:
            problems.append(f"{path}.{key}: {version!r} is not one of {', '.join(TLS_VERSIONS)}")
    low, high = values.get("min_version", "TLS12"), values.get("max_version", "TLS13")
    if low in TLS_VERSIONS and high in TLS_VERSIONS and TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        problems.append(f"{path}.min_version: {low} is above max_version {high}")
    if problems:
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
        problems.append(f"{path}: cannot load the certificate, key or CA: {err.strerror or err}")
        return None
    return settings


def parse_web_config(document: Any) -> WebConfig:
    """Validate a parsed web config; raise :class:`WebConfigError` with every problem."""
    if document is None:
        return WebConfig()
    if not isinstance(document, dict):
        raise WebConfigError(["web config: must be a mapping"])
    problems: list[str] = []
    allowed = {"tls_server_config", "http_server_config", "basic_auth_users"}
    for key in document:
        if key not in allowed:
            problems.append(f"{key}: unknown key (expected one of: {', '.join(sorted(allowed))})")
    tls = None
    if document.get("tls_server_config") is not None:
        tls = _problems_for_tls(document["tls_server_config"], problems)
    headers: dict[str, str] = {}
    http = document.get("http_server_config")
    if http is not None:
        if not isinstance(http, dict):
            problems.append("http_server_config: must be a mapping")
        else:
            for key in http:
                if key not in ("headers", "http2"):
                    problems.append(
                        f"http_server_config.{key}: unknown key (expected headers, http2)"
                    )
            raw_headers = http.get("headers") or {}
            if not isinstance(raw_headers, dict):
                problems.append("http_server_config.headers: must be a mapping")
            else:
                for name, value in raw_headers.items():
                    if name not in ALLOWED_HEADERS:
                        problems.append(
                            f"http_server_config.headers.{name}: not an allowed header "
                            f"({', '.join(ALLOWED_HEADERS)})"
                        )
                    elif not isinstance(value, str) or "\n" in value or "\r" in value:
                        problems.append(
                            f"http_server_config.headers.{name}: must be a one-line string"
                        )
                    else:
                        headers[name] = value
    basic_auth = None
    users = document.get("basic_auth_users")
    if users is not None:
        if not isinstance(users, dict) or not users:
            problems.append("basic_auth_users: must be a mapping of user names to bcrypt hashes")
        else:
            for name, hashed in users.items():
                if (
                    not isinstance(hashed, str)
                    or not hashed.startswith(_BCRYPT_PREFIXES)
                    or len(hashed) != 60
                ):
                    problems.append(
                        f"basic_auth_users.{name}: is not a bcrypt hash ($2a$, $2b$ or $2y$)"
                    )
            if not problems:
                basic_auth = BasicAuth({str(k): str(v) for k, v in users.items()})
    if problems:
        raise WebConfigError(problems)
    return WebConfig(tls=tls, basic_auth=basic_auth, headers=headers)


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
    """Read and validate ``--web.config.file``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise WebConfigError(
            [f"{path}: cannot read web config file: {err.strerror or err}"]
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise WebConfigError([f"{path}{where}: YAML syntax error"]) from None
    return parse_web_config(document)
