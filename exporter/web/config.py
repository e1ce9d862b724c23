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
import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import bcrypt

from exporter.config.network import parse_duration
from exporter.config.problems import Problems, read_yaml_file
from exporter.web.tls import TlsSettings, parse_tls

# The security headers exporter-toolkit lets a web config set.
ALLOWED_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
)
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_TOP_KEYS = frozenset({"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"})
# Values exporter-toolkit allows for two of the headers (it refuses any other).
_HEADER_VALUES = MappingProxyType(
    {
        "X-Content-Type-Options": ("nosniff",),
        "X-Frame-Options": ("deny", "sameorigin"),
    }
)
# Unknown users are checked against this hash so that they cost as much time as known ones.
_DUMMY_HASH = bcrypt.hashpw(b"unknown-user", bcrypt.gensalt(rounds=10))
_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """``rate_limit``: a request per ``interval`` seconds on average, ``burst`` at once."""

    interval: float
    burst: int


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
    rate_limit: RateLimitSettings | None = None
    # Keys that load but do nothing here, said once at start-up.
    warnings: tuple[str, ...] = ()
    # The file it was read from, and every file it names: re-read when one of them changes.
    source: str | None = None
    watched: tuple[str, ...] = ()


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
    for name, raw in raw_headers.items():
        # YAML reads `X-XSS-Protection: 1` as a number; Go's YAML gives the header its text.
        value = str(raw).lower() if isinstance(raw, bool) else str(raw)
        allowed = _HEADER_VALUES.get(name)
        if name not in ALLOWED_HEADERS:
            problems.add(
                f"{path}.headers.{name}",
                f"HTTP header {name!r} can not be configured ({', '.join(ALLOWED_HEADERS)} can)",
            )
        elif isinstance(raw, dict | list) or raw is None or "\n" in value or "\r" in value:
            problems.add(f"{path}.headers.{name}", "must be a one-line value")
        elif allowed is not None and value.lower() not in allowed:
            problems.add(
                f"{path}.headers.{name}", f"invalid value for {name}: use {' or '.join(allowed)}"
            )
        else:
            headers[name] = value
    return headers


def _parse_basic_auth(users: Any, problems: Problems) -> BasicAuth | None:
    if not isinstance(users, dict):
        problems.add("basic_auth_users", "must be a mapping of user names to bcrypt hashes")
        return None
    if not users:
        return None  # as exporter-toolkit: no users, no authentication
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


def _parse_rate_limit(node: Any, problems: Problems) -> RateLimitSettings | None:
    """``rate_limit: {interval, burst}``: one request per interval, bursts of ``burst``."""
    if not isinstance(node, dict):
        problems.add("rate_limit", "must be a mapping with interval and burst")
        return None
    problems.check_keys(node, {"interval", "burst"}, "rate_limit")
    interval_raw, burst = node.get("interval", 0), node.get("burst", 0)
    try:
        interval = 0.0 if interval_raw in (0, "0", None) else parse_duration(interval_raw)
    except ValueError as err:
        problems.add("rate_limit.interval", str(err))
        return None
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        problems.add("rate_limit.burst", "must be a whole number, 0 or more")
        return None
    return RateLimitSettings(interval, burst) if interval > 0 else None


def parse_web_config(document: Any, base: Path | None = None) -> WebConfig:
    """Validate a parsed web config; raise ConfigError with every problem.

    Relative file names resolve against ``base``, the web config file's folder.
    """
    if document is None:
        return WebConfig()
    problems = Problems()
    if not isinstance(document, dict):
        problems.add("web config", "must be a mapping")
        problems.raise_if_any()
    problems.check_keys(document, _TOP_KEYS, "")
    warnings: list[str] = []
    tls = headers = basic_auth = rate_limit = None
    http = document.get("http_server_config")
    http2 = not (isinstance(http, dict) and http.get("http2") is False)
    if http is not None:
        headers = _parse_http(http, problems, warnings)
    node = document.get("tls_server_config")
    if node is not None:
        tls = parse_tls(node, base or Path.cwd(), http2, problems)
    if document.get("basic_auth_users") is not None:
        basic_auth = _parse_basic_auth(document["basic_auth_users"], problems)
    if document.get("rate_limit") is not None:
        rate_limit = _parse_rate_limit(document["rate_limit"], problems)
    problems.raise_if_any()
    return WebConfig(
        tls=tls,
        basic_auth=basic_auth,
        headers=headers or {},
        rate_limit=rate_limit,
        warnings=tuple(warnings),
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
    file = Path(path).resolve()
    web = parse_web_config(read_yaml_file(path, "web config file"), file.parent)
    named = web.tls.files if web.tls is not None else ()
    return dataclasses.replace(web, source=str(file), watched=(str(file), *named))
