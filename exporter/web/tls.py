"""``tls_server_config`` of an exporter-toolkit web config → a server-side ``ssl.SSLContext``.

Every key exporter-toolkit knows is read as it reads it: certificate and key as files (relative
to the web config's folder) or inline, ``client_auth_type`` (with the legacy
``RequireClientCert``), ``client_ca_file`` or inline ``client_ca``, ``client_allowed_sans``,
``min_version``/``max_version``, ``cipher_suites`` (Go's names, applied to TLS 1.2 and below as
OpenSSL names; TLS 1.3 suites are not configurable, in Go either), ``prefer_server_cipher_suites``
and ``curve_preferences``.

Where Python's ``ssl`` cannot do what Go does, the difference fails closed:

- a presented client certificate is always verified, so ``RequestClientCert`` and
  ``RequireAnyClientCert`` accept only certificates issued by ``client_ca_file``; without one,
  no client certificate is accepted and ``RequireAnyClientCert`` refuses every client (403) but
  the probes;
- ``curve_preferences`` restricts the key exchange to its first (most preferred) curve;
- when a certificate is required, cert-less clients complete the handshake and get 403 on every
  path but ``/healthz`` and ``/readyz`` (Kubernetes probes cannot present certificates).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exporter.config.problems import Problems

TLS_PATH = "tls_server_config"
CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
# Spellings exporter-toolkit also accepts for the same policies.
_CLIENT_AUTH_ALIASES = MappingProxyType(
    {"": "NoClientCert", "RequireClientCert": "RequireAnyClientCert"}
)
_REQUIRES_CERT = ("RequireAnyClientCert", "RequireAndVerifyClientCert")
TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType(
    {
        "TLS10": ssl.TLSVersion.TLSv1,
        "TLS11": ssl.TLSVersion.TLSv1_1,
        "TLS12": ssl.TLSVersion.TLSv1_2,
        "TLS13": ssl.TLSVersion.TLSv1_3,
    }
)
# Go's cipher suite names (tls.CipherSuites and tls.InsecureCipherSuites) → OpenSSL's.
CIPHER_SUITES: Mapping[str, str | None] = MappingProxyType(
    {
        "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
        # TLS 1.3: always enabled, not configurable (as in Go).
        "TLS_AES_128_GCM_SHA256": None,
        "TLS_AES_256_GCM_SHA384": None,
        "TLS_CHACHA20_POLY1305_SHA256": None,
    }
)
# What Go's HTTP/2 server requires among TLS 1.2 cipher suites.
HTTP2_CIPHERS = ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
CURVES: Mapping[str, str] = MappingProxyType(
    {
        "CurveP256": "prime256v1",
        "CurveP384": "secp384r1",
        "CurveP521": "secp521r1",
        "X25519": "X25519",
    }
)
_KEYS = frozenset(
    {
        "cert_file",
        "key_file",
        "cert",
        "key",
        "client_auth_type",
        "client_ca_file",
        "client_ca",
        "client_allowed_sans",
        "min_version",
        "max_version",
        "cipher_suites",
        "prefer_server_cipher_suites",
        "curve_preferences",
    }
)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """``tls_server_config``, validated, its PEM material read."""

    cert_pem: str
    key_pem: str
    client_auth_type: str = "NoClientCert"
    client_ca_pem: str | None = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()
    # The certificate, key and CA files it was read from (absolute paths).
    files: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"TlsSettings({self.min_version}-{self.max_version}, {self.client_auth_type})"

    @property
    def requires_client_cert(self) -> bool:
        return self.client_auth_type in _REQUIRES_CERT

    def allows_client(self, peer: Mapping[str, Any] | None) -> bool:
        """After the handshake: a certificate if one is required, with an allowed SAN."""
        if not peer:
            return not self.requires_client_cert and not self.client_allowed_sans
        if not self.client_allowed_sans:
            return True
        names = {str(value) for _, value in peer.get("subjectAltName", ())}
        return bool(names & set(self.client_allowed_sans))

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context (see the module doc for what differs from Go)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        context.maximum_version = TLS_VERSIONS[self.max_version]
        ciphers = [CIPHER_SUITES[name] for name in self.cipher_suites if CIPHER_SUITES[name]]
        spec = ":".join(c for c in ciphers if c) if ciphers else "DEFAULT"
        if context.minimum_version < ssl.TLSVersion.TLSv1_2:
            # OpenSSL's default security level refuses TLS 1.0/1.1 whatever the minimum says;
            # whoever asks for them in the web config gets them.
            spec += ":@SECLEVEL=0"
        context.set_ciphers(spec)
        if self.prefer_server_cipher_suites:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        if self.curve_preferences:
            context.set_ecdh_curve(CURVES[self.curve_preferences[0]])
        _load_chain(context, self.cert_pem, self.key_pem)
        if self.client_auth_type != "NoClientCert" and self.client_ca_pem:
            context.load_verify_locations(cadata=self.client_ca_pem)
            context.verify_mode = ssl.CERT_OPTIONAL
        return context


def _load_chain(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """``load_cert_chain`` wants files: a private folder that lives for the call."""
    with tempfile.TemporaryDirectory(prefix="entra-tls-") as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_file.write_text(cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(key_pem)
        context.load_cert_chain(cert_file, key_file)


def tls_is_off(node: Mapping[str, Any]) -> bool:
    """True for a ``tls_server_config`` that names nothing (exporter-toolkit serves HTTP)."""
    return all(node.get(key) in (None, "", [], {}) for key in _KEYS)


def _pem(
    node: Mapping[str, Any], file_key: str, inline_key: str, base: Path, problems: Problems
) -> str | None:
    """The PEM text of ``file_key`` (relative to ``base``) or ``inline_key``; one of them."""
    path = f"{TLS_PATH}.{file_key}"
    file_name, inline = node.get(file_key), node.get(inline_key)
    if file_name and inline:
        problems.add(path, f"give {file_key} or {inline_key}, not both")
        return None
    if inline:
        return inline if isinstance(inline, str) else None
    if not isinstance(file_name, str) or not file_name:
        return None
    return problems.read_text_file(str(base / file_name), path)


def _names(
    node: Mapping[str, Any], key: str, known: Mapping[str, Any], problems: Problems
) -> tuple[str, ...]:
    value = node.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(f"{TLS_PATH}.{key}", "must be a list of names")
        return ()
    unknown = [v for v in value if v not in known]
    if unknown:
        kind = "cipher" if key == "cipher_suites" else "curve"
        problems.add(f"{TLS_PATH}.{key}", f"unknown {kind} {', '.join(map(repr, unknown))}")
        return ()
    return tuple(value)


def _client_auth(node: Mapping[str, Any], problems: Problems) -> str | None:
    raw = node.get("client_auth_type")
    text = raw if isinstance(raw, str) else ""
    auth = _CLIENT_AUTH_ALIASES.get(text, text) or "NoClientCert"
    if (raw is not None and not isinstance(raw, str)) or auth not in CLIENT_AUTH_TYPES:
        choices = ", ".join(CLIENT_AUTH_TYPES)
        problems.add(f"{TLS_PATH}.client_auth_type", f"{raw!r} is not one of {choices}")
        return None
    has_ca = bool(node.get("client_ca_file") or node.get("client_ca"))
    if auth == "NoClientCert" and has_ca:
        problems.add(f"{TLS_PATH}.client_ca_file", "is set but client_auth_type is NoClientCert")
        return None
    return str(auth)


def _versions(node: Mapping[str, Any], problems: Problems) -> tuple[str, str] | None:
    low, high = node.get("min_version") or "TLS12", node.get("max_version") or "TLS13"
    for key, version in (("min_version", low), ("max_version", high)):
        if version not in TLS_VERSIONS:
            problems.add(
                f"{TLS_PATH}.{key}",
                f"unknown TLS version {version!r} (one of {', '.join(TLS_VERSIONS)})",
            )
            return None
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        problems.add(f"{TLS_PATH}.min_version", f"{low} is above max_version {high}")
        return None
    return str(low), str(high)


def parse_tls(node: Any, base: Path, http2: bool, problems: Problems) -> TlsSettings | None:
    """``tls_server_config`` → settings; None (with problems) when refused, or when TLS is off."""
    if not isinstance(node, dict):
        problems.add(TLS_PATH, "must be a mapping")
        return None
    problems.check_keys(node, _KEYS, TLS_PATH)
    if tls_is_off(node):
        return None  # exporter-toolkit serves plain HTTP for an empty tls_server_config
    before = len(problems.lines)
    cert = _pem(node, "cert_file", "cert", base, problems)
    key = _pem(node, "key_file", "key", base, problems)
    if cert is None and len(problems.lines) == before:
        problems.add(f"{TLS_PATH}.cert_file", "missing cert_file or cert")
    if key is None and len(problems.lines) == before:
        problems.add(f"{TLS_PATH}.key_file", "missing key_file or key")
    ca = _pem(node, "client_ca_file", "client_ca", base, problems)
    auth = _client_auth(node, problems)
    versions = _versions(node, problems)
    ciphers = _names(node, "cipher_suites", CIPHER_SUITES, problems)
    curves = _names(node, "curve_preferences", CURVES, problems)
    sans = node.get("client_allowed_sans") or []
    if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
        problems.add(f"{TLS_PATH}.client_allowed_sans", "must be a list of names")
    prefer = node.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        problems.add(f"{TLS_PATH}.prefer_server_cipher_suites", "must be true or false")
    if (
        len(problems.lines) > before
        or cert is None
        or key is None
        or auth is None
        or versions is None
    ):
        return None
    if not _http2_ready(http2, ciphers, versions[0], problems):
        return None
    settings = TlsSettings(
        cert_pem=cert,
        key_pem=key,
        client_auth_type=auth,
        client_ca_pem=ca,
        client_allowed_sans=tuple(sans),
        min_version=versions[0],
        max_version=versions[1],
        cipher_suites=ciphers,
        prefer_server_cipher_suites=bool(prefer),
        curve_preferences=curves,
        files=_named_files(node, base),
    )
    return settings if _usable(settings, problems) else None


def _http2_ready(http2: bool, ciphers: tuple[str, ...], low: str, problems: Problems) -> bool:
    """Go's HTTP/2 server needs one of its ciphers among TLS 1.2 suites (exporter-toolkit)."""
    if http2 and ciphers and low != "TLS13" and not set(ciphers) & set(HTTP2_CIPHERS):
        problems.add(
            f"{TLS_PATH}.cipher_suites",
            "is missing an HTTP/2-required cipher (TLS_ECDHE_*_WITH_AES_128_GCM_SHA256); "
            "add one or set http_server_config.http2: false, as exporter-toolkit requires",
        )
        return False
    return True


def _named_files(node: Mapping[str, Any], base: Path) -> tuple[str, ...]:
    """The certificate, key and CA files the settings were read from (to watch them)."""
    names = (node.get(name) for name in ("cert_file", "key_file", "client_ca_file"))
    return tuple(str(base / name) for name in names if isinstance(name, str) and name)


def _usable(settings: TlsSettings, problems: Problems) -> bool:
    """True when OpenSSL takes the certificate, key, CA and ciphers together."""
    try:
        settings.ssl_context()
    except (ssl.SSLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or "invalid"
        problems.add(TLS_PATH, f"cannot use the certificate, key, CA or ciphers: {reason}")
        return False
    return True
