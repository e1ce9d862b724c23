"""A Microsoft Graph + Entra token endpoint look-alike over HTTPS on loopback.

For the demo, the tests and the benchmarks. It serves:

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (OpenID discovery, as MSAL asks it);
- ``POST /{tenant}/oauth2/v2.0/token`` (client credentials with a secret, a certificate-signed
  client assertion, or a federated token; ``expires_in`` settable);
- ``GET /beta/reports/getCredentialUserRegistrationCount()`` (bearer token checked), with
  plausible counts that drift slowly, in each of the shapes Microsoft's documentation shows;
- ``GET /_sim/stats`` (token and Graph requests per tenant, and the last report served);
- ``POST /_sim/faults`` ``{"tenant": NAME, "fault": KIND, "count": N}`` (``"count": 0`` means
  until cleared; ``"fault": null`` clears), or ``{"tenant": NAME, "rate": 0.3}`` (random faults
  for that tenant only), and ``POST /_sim/tenants`` (add a tenant with a
  secret, a certificate or a federated token).

Faults: see :data:`GRAPH_FAULTS` and :data:`TOKEN_FAULTS`; ``--fault-rate`` injects a random
Graph fault into that share of report requests.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import datetime as dt
import email.utils
import hashlib
import ipaddress
import json
import os
import random
import re
import secrets
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.config import format_duration, parse_duration

GRAPH_FAULTS = (
    "throttle",  # 429 with Retry-After in seconds
    "throttle_date",  # 429 with Retry-After as an HTTP date
    "error500",
    "error503",  # 503 with Retry-After: 1
    "hang",  # no answer until the hang time has passed
    "reset",  # connection reset (TCP RST)
    "malformed",  # 200 with broken JSON
    "html",  # 200 with an HTML error page
    "missing_fields",  # 200 with JSON lacking the report's fields
    "forbidden",  # 403 Authentication_ApplicationHasNoReadAuditLogDataAccess
    "oversized",  # 200 with a 2 MiB body
)
TOKEN_FAULTS = ("invalid_client", "token_down")
RANDOM_FAULTS = ("throttle", "error500", "error503", "reset", "malformed")
DETAILS_PATHS = (
    "/v1.0/reports/authenticationMethods/userRegistrationDetails",
    "/beta/reports/authenticationMethods/userRegistrationDetails",
)
DETAIL_FLAGS = (
    "isSsprRegistered",
    "isSsprEnabled",
    "isSsprCapable",
    "isMfaRegistered",
    "isMfaCapable",
    "isPasswordlessCapable",
)
METHODS = (
    "microsoftAuthenticatorPush",
    "softwareOneTimePasscode",
    "mobilePhone",
    "email",
    "fido2SecurityKey",
    "windowsHelloForBusiness",
    "microsoftAuthenticatorPasswordless",
    "passKeyDeviceBound",
)
MAX_PAGE = 999
REPORT_PATHS = (
    "/beta/reports/getCredentialUserRegistrationCount()",
    "/beta/reports/getCredentialUserRegistrationCount",
)
STATUSES = ("registered", "enabled", "capable", "mfaRegistered")


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """A throw-away CA and a server certificate for 127.0.0.1, ::1 and localhost."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def make_tls_material() -> TlsMaterial:
    """Generate a CA and a loopback server certificate signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "entra simulator test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return TlsMaterial(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


# --------------------------------------------------------------------------- tenants


@dataclass(slots=True)
class SimTenant:
    """One simulated tenant: its app registration and its users."""

    name: str
    tenant_id: str
    client_id: str
    secret: str | None = None
    certificate_pem: str | None = None
    federated_token: str | None = None
    shape: int = 0
    extra_status: bool = False
    fault_rate: float | None = None  # overrides the simulator's --fault-rate for this tenant
    seed_gone: bool = False  # getCredentialUserRegistrationCount answers 400 (retired)
    trusted_issuer_pem: str | None = None  # subject name + issuer auth: trust this CA
    managed_identity: str | None = None  # "system", or a user-assigned identity's client_id
    users: int | None = None  # userRegistrationDetails users (default: total_users)
    fail_page: int | None = None  # this page of userRegistrationDetails answers 500
    details_pages: int = 0
    total_users: int = 1000
    base_counts: dict[str, int] = field(default_factory=dict)
    token_requests: int = 0
    graph_requests: int = 0
    faults: list[list[Any]] = field(default_factory=list)  # [kind, remaining (0 = sticky)]
    last_report: dict[str, Any] | None = None

    def take_fault(self, kinds: tuple[str, ...]) -> str | None:
        """The next queued fault of one of ``kinds``, consuming one use of it."""
        for item in self.faults:
            if item[0] in kinds:
                if item[1] > 0:
                    item[1] -= 1
                    if item[1] == 0:
                        self.faults.remove(item)
                return str(item[0])
        return None


def make_tenant(index: int, rng: random.Random) -> SimTenant:
    """A tenant with a stable name and IDs, and counts drawn from ``rng``."""
    total = rng.randint(50, 50_000)
    capable = rng.randint(total // 3, total)
    counts = {
        "registered": rng.randint(capable // 2, capable),
        "enabled": rng.randint(total // 2, total),
        "capable": capable,
        "mfaRegistered": rng.randint(total // 4, total),
    }
    return SimTenant(
        name=f"tenant-{index:04d}",
        tenant_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        client_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        secret=f"sim-secret-{index}-{rng.getrandbits(64):016x}",
        shape=index % 3,
        extra_status=index % 2 == 1,
        total_users=total,
        base_counts=counts,
    )


def report_document(tenant: SimTenant, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON body, the truth it encodes) for the ``step``-th report of ``tenant``.

    Shapes, as Microsoft's documentation shows them: 0 = API example spelled correctly inside
    ``value``; 1 = API example's own misspelling ``userRegistationCount``; 2 = the resource
    page's ``registrationStatus`` / ``registrationCount`` as a bare object.
    """
    drift = step // 2
    counts = {
        status: min(tenant.total_users, value + drift)
        for status, value in tenant.base_counts.items()
    }
    if tenant.extra_status:
        counts["mfaCapable"] = min(tenant.total_users, counts["capable"] + 1)
    truth = {"totalUserCount": tenant.total_users, "userRegistrationCounts": counts}
    if tenant.shape == 2:
        entries = [{"registrationStatus": s, "registrationCount": c} for s, c in counts.items()]
        body: dict[str, Any] = {
            "id": tenant.tenant_id,
            "totalUserCount": tenant.total_users,
            "userRegistrationCounts": entries,
        }
        return body, truth
    count_key = "userRegistationCount" if tenant.shape == 1 else "userRegistrationCount"
    entries = [{"userRegistrationStatus": s, count_key: c} for s, c in counts.items()]
    body = {
        "@odata.context": "https://graph.microsoft.com/beta/$metadata"
        "#Collection(microsoft.graph.credentialUserRegistrationCount)",
        "value": [
            {
                "id": tenant.tenant_id,
                "totalUserCount": tenant.total_users,
                "userRegistrationCounts": entries,
            }
        ],
    }
    return body, truth


def detail_user(tenant: SimTenant, index: int) -> dict[str, Any]:
    """User ``index`` of the tenant, the same every time (nothing is stored)."""
    digest = hashlib.blake2b(f"{tenant.tenant_id}:{index}".encode(), digest_size=16).digest()
    # Thresholds out of 256 give each flag a plausible share of users.
    flags = dict(
        zip(
            DETAIL_FLAGS,
            (b < t for b, t in zip(digest[:6], (150, 200, 170, 190, 180, 40), strict=True)),
            strict=True,
        )
    )
    methods = [m for m, b in zip(METHODS, digest[6:14], strict=True) if b < 90]
    return {
        "id": str(uuid.UUID(bytes=digest, version=4)),
        "userPrincipalName": f"user{index}@{tenant.name}.example",
        "userDisplayName": f"User {index}",
        "isAdmin": digest[14] < 3,
        **flags,
        "methodsRegistered": methods,
        "userType": "guest" if digest[15] < 20 else "member",
    }


def tenant_users(tenant: SimTenant) -> int:
    """How many users the tenant has in userRegistrationDetails."""
    return tenant.users if tenant.users is not None else tenant.total_users


def parse_filter(text: str | None) -> list[tuple[str, bool]]:
    """``isMfaRegistered eq true and isSsprEnabled eq false`` → [(field, value), ...]."""
    if not text:
        return []
    clauses = []
    for clause in re.split(r"\s+and\s+", text.strip()):
        match = re.fullmatch(r"(\w+)\s+eq\s+(true|false)", clause.strip())
        if not match or match.group(1) not in DETAIL_FLAGS:
            raise ValueError(f"Invalid filter clause: {clause}")
        clauses.append((match.group(1), match.group(2) == "true"))
    return clauses


@dataclass(frozen=True, slots=True)
class DetailsPage:
    """One page of userRegistrationDetails."""

    number: int
    users: list[dict[str, Any]]
    next_offset: int | None
    count: int | None


def details_page(tenant: SimTenant, params: dict[str, str], consistency: str | None) -> DetailsPage:
    """The page that ``params`` ($select, $filter, $top, $skiptoken, $count) asks for."""
    top = int(params.get("$top", MAX_PAGE))
    if not 1 <= top <= MAX_PAGE:
        raise ValueError(f"$top must be between 1 and {MAX_PAGE}")
    offset = int(params.get("$skiptoken", "0"))
    select = [f for f in params.get("$select", "").split(",") if f]
    clauses = parse_filter(params.get("$filter"))
    total = tenant_users(tenant)
    count = None
    if params.get("$count") == "true":
        if (consistency or "").lower() != "eventual":
            raise ValueError("$count requires the ConsistencyLevel: eventual header")
        count = sum(
            1 for i in range(total) if all(detail_user(tenant, i)[f] is v for f, v in clauses)
        )
    users: list[dict[str, Any]] = []
    index = offset
    while index < total and len(users) < top:
        user = detail_user(tenant, index)
        index += 1
        if all(user[f] is v for f, v in clauses):
            users.append({k: user[k] for k in select if k in user} if select else user)
    return DetailsPage(offset // top, users, index if index < total else None, count)


def details_truth(tenant: SimTenant) -> dict[str, Any]:
    """What a full walk of userRegistrationDetails counts (computed, never stored per user)."""
    flags = dict.fromkeys(DETAIL_FLAGS, 0)
    methods: dict[str, int] = {}
    total = tenant_users(tenant)
    for index in range(total):
        user = detail_user(tenant, index)
        for flag in DETAIL_FLAGS:
            flags[flag] += user[flag]
        for method in user["methodsRegistered"]:
            methods[method] = methods.get(method, 0) + 1
    return {"users": total, "flags": flags, "methods": methods}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --------------------------------------------------------------------------- the simulator


class Simulator:
    """The simulator's state and server; use :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        tenants: int = 3,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        token_lifetime: int = 3599,
        hang_seconds: float = 60.0,
        seed: int | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.latency = latency
        self.fault_rate = fault_rate
        self.token_lifetime = token_lifetime
        self.hang_seconds = hang_seconds
        self.lock = threading.Lock()
        self.tenants: dict[str, SimTenant] = {}
        for index in range(tenants):
            self.add_tenant(make_tenant(index, self.rng))
        self.tokens: dict[str, tuple[str, float]] = {}
        # Recent requests, for pacing checks and benchmarks: (kind, client_id, tenant_id,
        # arrival and completion in Unix time). kind: discovery, token or report.
        self.events: collections.deque[tuple[str, str, str, float, float]] = collections.deque(
            maxlen=500_000
        )
        self.stopping = threading.Event()
        self.tls = make_tls_material()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="entra-sim-")

    # ---------------------------------------------------------------- state

    def add_tenant(self, tenant: SimTenant) -> None:
        """Register a tenant (by its tenant_id)."""
        if not tenant.base_counts:
            template = make_tenant(len(self.tenants), self.rng)
            tenant.total_users, tenant.base_counts = template.total_users, template.base_counts
        with self.lock:
            self.tenants[tenant.tenant_id] = tenant

    def find(self, key: str) -> SimTenant | None:
        """A tenant by tenant_id or name."""
        with self.lock:
            found = self.tenants.get(key)
            if found is None:
                found = next((t for t in self.tenants.values() if t.name == key), None)
            return found

    def set_fault_rate(self, key: str, rate: float | None) -> None:
        """Make a share of the tenant's report calls fail at random (None: the global rate)."""
        tenant = self.find(key)
        if tenant is None:
            raise KeyError(key)
        if rate is not None and not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        with self.lock:
            tenant.fault_rate = rate

    def set_fault(self, key: str, fault: str | None, count: int = 1) -> None:
        """Queue ``fault`` for the tenant ``count`` times (0: until cleared); None clears all."""
        tenant = self.find(key)
        if tenant is None:
            raise KeyError(key)
        with self.lock:
            if fault is None:
                tenant.faults.clear()
            elif fault in GRAPH_FAULTS or fault in TOKEN_FAULTS:
                tenant.faults.append([fault, count])
            else:
                raise ValueError(f"unknown fault {fault!r}")

    def stats(self) -> dict[str, Any]:
        """Requests per tenant and the last report each was served."""
        with self.lock:
            tenants = {
                t.name: {
                    "tenant_id": t.tenant_id,
                    "token_requests": t.token_requests,
                    "graph_requests": t.graph_requests,
                    "last_report": t.last_report,
                }
                for t in self.tenants.values()
            }
        return {
            "tenants": tenants,
            "token_requests": sum(t["token_requests"] for t in tenants.values()),
            "graph_requests": sum(t["graph_requests"] for t in tenants.values()),
        }

    # ---------------------------------------------------------------- server

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        host_text = f"[{host}]" if ":" in host else host
        return f"https://{host_text}:{port}"

    def start(self, listen: str = "127.0.0.1:0") -> str:
        """Bind, start serving in a background thread and return the base URL."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        cert_file = Path(self._workdir.name) / "server.pem"
        cert_file.write_bytes(self.tls.cert_pem + self.tls.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file)
        handler = type("BoundSimHandler", (_SimHandler,), {"sim": self})
        server_class = _SimServer6 if ":" in host else _SimServer
        server = server_class((host, int(port)), handler)
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="simulator", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving and wake any hung responses."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._workdir.cleanup()

    def write_ca(self, path: str | os.PathLike[str]) -> None:
        """Write the CA bundle the exporter must trust."""
        Path(path).write_bytes(self.tls.ca_pem)

    def exporter_config(
        self,
        ca_file: str,
        interval: float = 30.0,
        jitter: float = 1.0,
        timeout: float = 10.0,
        sources: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A ready exporter config (as a YAML-able dict) for every simulated tenant.

        ``sources`` sets the ``source`` of some tenants, by name.
        """
        sources = sources or {}
        with self.lock:
            tenants = [
                {
                    "name": t.name,
                    "tenant_id": t.tenant_id,
                    "client_id": t.client_id,
                    "client_secret": t.secret,
                    **({"source": sources[t.name]} if t.name in sources else {}),
                }
                for t in self.tenants.values()
                if t.secret
            ]
        return {
            "defaults": {
                "interval": format_duration(interval),
                "timeout": format_duration(timeout),
                "jitter": format_duration(jitter),
                "cloud": "custom",
            },
            "concurrency": 32,
            "endpoints": {"authority_host": self.base_url, "graph_host": self.base_url},
            "tls_ca_file": str(ca_file),
            "tenants": tenants,
        }

    def write_config(self, path: str | os.PathLike[str], ca_file: str, **kwargs: Any) -> None:
        """Write :meth:`exporter_config` as YAML, readable by its owner only (it holds secrets)."""
        text = yaml.safe_dump(self.exporter_config(ca_file, **kwargs), sort_keys=False)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)

    # ---------------------------------------------------------------- request logic

    def issue_token(self, tenant: SimTenant) -> dict[str, Any]:
        token = f"sim-token-{secrets.token_hex(24)}"
        with self.lock:
            self.tokens[token] = (tenant.tenant_id, time.time() + self.token_lifetime)
        return {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }

    def tenant_for_token(self, token: str) -> SimTenant | None:
        with self.lock:
            entry = self.tokens.get(token)
            if entry is None or entry[1] < time.time():
                return None
            return self.tenants.get(entry[0])

    def check_client(self, tenant: SimTenant, form: dict[str, str], token_url: str) -> str | None:
        """None when the client authenticated, else the reason (an AADSTS-like text)."""
        if form.get("client_id") != tenant.client_id:
            return "AADSTS700016: Application not found in the directory."
        if "client_secret" in form:
            if tenant.secret and secrets.compare_digest(form["client_secret"], tenant.secret):
                return None
            return "AADSTS7000215: Invalid client secret provided."
        assertion = form.get("client_assertion", "")
        if not assertion:
            return "AADSTS7000216: client_assertion or client_secret is required."
        if tenant.federated_token is not None:
            if secrets.compare_digest(assertion, tenant.federated_token):
                return None
            return "AADSTS700213: No matching federated identity record found."
        if tenant.certificate_pem is None and tenant.trusted_issuer_pem is None:
            return "AADSTS700027: Client assertion failed signature validation."
        return _check_certificate_assertion(assertion, tenant, token_url)


def _assertion_certificate(header: dict[str, Any], tenant: SimTenant) -> x509.Certificate | str:
    """The certificate an assertion is signed with, or why it is not acceptable.

    Either the app registration holds the certificate (matched by its SHA-256 or SHA-1
    thumbprint), or it trusts an issuer and the assertion carries the chain (x5c) for
    subject name + issuer authentication.
    """
    if tenant.certificate_pem is not None:
        cert = x509.load_pem_x509_certificate(tenant.certificate_pem.encode())
        sha256 = _b64url(cert.fingerprint(hashes.SHA256()))
        sha1 = _b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - what x5t is
        # MSAL keeps the base64 padding.
        if str(header.get("x5t#S256", "")).rstrip("=") == sha256:
            return cert
        if str(header.get("x5t", "")).rstrip("=") == sha1:
            return cert
        return "AADSTS700027: The certificate with thumbprint was not registered on the app."
    assert tenant.trusted_issuer_pem is not None
    chain = header.get("x5c")
    if not isinstance(chain, list) or not chain:
        return "AADSTS700027: Subject name + issuer auth needs the certificate chain (x5c)."
    try:
        leaf = x509.load_der_x509_certificate(base64.b64decode(chain[0]))
        issuer = x509.load_pem_x509_certificate(tenant.trusted_issuer_pem.encode())
        leaf.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return "AADSTS700027: The certificate is not issued by the trusted issuer."
    return leaf


def _check_certificate_assertion(assertion: str, tenant: SimTenant, token_url: str) -> str | None:
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        return "AADSTS50027: JWT token is invalid or malformed."
    cert = _assertion_certificate(header, tenant)
    if isinstance(cert, str):
        return cert
    try:
        jwt.decode(
            assertion,
            cert.public_key(),  # type: ignore[arg-type]
            algorithms=["PS256", "RS256", "ES256"],
            audience=token_url,
            issuer=tenant.client_id,
        )
    except jwt.PyJWTError as err:
        return f"AADSTS700027: Client assertion failed signature validation ({type(err).__name__})."
    return None


class _SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that vanish mid-handshake are normal here; print nothing."""


class _SimServer6(_SimServer):
    address_family = socket.AF_INET6


class _SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sim: Simulator
    timeout = 120

    def setup(self) -> None:
        super().setup()
        # Without TCP_NODELAY every keep-alive answer waits ~40 ms (Nagle + delayed ACK).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.connection.do_handshake()
        except (ssl.SSLError, OSError):
            self.close_connection = True
            raise

    def handle(self) -> None:
        with contextlib.suppress(ssl.SSLError, ConnectionError, TimeoutError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        return

    # ------------------------------------------------------------ responses

    def parse_request(self) -> bool:
        self.started = time.time()  # the request line has arrived
        return super().parse_request()

    def _record(self, kind: str, tenant: SimTenant) -> None:
        """Log a request that was answered (for pacing checks and benchmarks)."""
        event = (kind, tenant.client_id, tenant.tenant_id, self.started, time.time())
        self.sim.events.append(event)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._raw(status, json.dumps(body).encode(), "application/json", headers)

    def _raw(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _graph_error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        request_id = str(uuid.uuid4())
        body = {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": request_id,
                    "client-request-id": self.headers.get("client-request-id", ""),
                },
            }
        }
        self._json(status, body, {"request-id": request_id, **(headers or {})})

    def _reset(self) -> None:
        """Close the connection with a TCP RST."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def finish(self) -> None:
        # The connection may have been reset on purpose, or by the client.
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def _read_form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length", "0") or 0)
        data = self.rfile.read(min(length, 1 << 20)).decode()
        return {k: v[0] for k, v in urllib.parse.parse_qs(data).items()}

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length", "0") or 0)
        return json.loads(self.rfile.read(min(length, 1 << 20)) or b"null")

    # ------------------------------------------------------------ routes

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        sim = self.sim
        if path in REPORT_PATHS:
            self._report()
        elif path in DETAILS_PATHS:
            self._details(urllib.parse.urlsplit(self.path).query)
        elif path.endswith("/v2.0/.well-known/openid-configuration"):
            tenant_key = path.split("/")[1]
            discovered = sim.find(tenant_key)
            if discovered is None:
                self._json(
                    400,
                    {
                        "error": "invalid_tenant",
                        "error_description": "AADSTS90002: Tenant not found.",
                    },
                )
                return
            base = sim.base_url
            self._json(
                200,
                {
                    "token_endpoint": f"{base}/{tenant_key}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/{tenant_key}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/{tenant_key}/oauth2/v2.0/devicecode",
                    "issuer": f"{base}/{tenant_key}/v2.0",
                    "jwks_uri": f"{base}/{tenant_key}/discovery/v2.0/keys",
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                    "response_types_supported": [
                        "code",
                        "id_token",
                        "code id_token",
                        "token id_token",
                    ],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "tenant_region_scope": "NA",
                },
            )
            self._record("discovery", discovered)
        elif path == "/metadata/identity/oauth2/token":
            self._managed_identity_token(urllib.parse.urlsplit(self.path).query)
        elif path == "/_sim/stats":
            self._json(200, sim.stats())
        elif path == "/_sim/events":
            self._json(200, {"events": list(sim.events)})
        else:
            self._graph_error(404, "UnknownResource", f"no route for {path}")

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path.endswith("/oauth2/v2.0/token"):
            self._token(path)
        elif path == "/_sim/faults":
            body = self._read_json()
            try:
                if "rate" in body:
                    rate = body["rate"]
                    self.sim.set_fault_rate(
                        str(body["tenant"]), None if rate is None else float(rate)
                    )
                else:
                    self.sim.set_fault(
                        str(body["tenant"]), body.get("fault"), int(body.get("count", 1))
                    )
            except (KeyError, ValueError, TypeError) as err:
                self._json(400, {"error": str(err)})
                return
            self._json(200, {"ok": True})
        elif path == "/_sim/tenants":
            body = self._read_json()
            try:
                tenant = SimTenant(
                    name=str(body["name"]),
                    tenant_id=str(body["tenant_id"]),
                    client_id=str(body["client_id"]),
                    secret=body.get("secret"),
                    certificate_pem=body.get("certificate_pem"),
                    federated_token=body.get("federated_token"),
                    shape=int(body.get("shape", 0)),
                    users=int(body["users"]) if body.get("users") is not None else None,
                    seed_gone=bool(body.get("seed_gone", False)),
                )
            except (KeyError, TypeError, ValueError) as err:
                self._json(400, {"error": str(err)})
                return
            self.sim.add_tenant(tenant)
            self._json(200, {"ok": True})
        else:
            self._graph_error(404, "UnknownResource", f"no route for {path}")

    def _token(self, path: str) -> None:
        sim = self.sim
        tenant_key = path.split("/")[1]
        form = self._read_form()
        tenant = sim.find(tenant_key)
        if tenant is None:
            self._json(
                400,
                {"error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."},
            )
            return
        with sim.lock:
            tenant.token_requests += 1
            fault = tenant.take_fault(TOKEN_FAULTS)
        correlation = str(uuid.uuid4())
        if fault == "token_down":
            self._reset()
            return
        if form.get("grant_type") != "client_credentials":
            self._json(400, {"error": "unsupported_grant_type", "correlation_id": correlation})
            return
        reason = sim.check_client(tenant, form, f"{sim.base_url}{path}")
        if fault == "invalid_client":
            reason = "AADSTS7000222: The provided client secret keys for app are expired."
        if reason is not None:
            self._json(
                401,
                {
                    "error": "invalid_client",
                    "error_description": f"{reason}\r\nTrace ID: {uuid.uuid4()}\r\n"
                    f"Correlation ID: {correlation}\r\nTimestamp: {dt.datetime.now(dt.UTC)}",
                    "error_codes": [7000215],
                    "correlation_id": correlation,
                },
            )
            return
        self._json(200, sim.issue_token(tenant))
        self._record("token", tenant)

    def _graph_tenant(self) -> SimTenant | None:
        """The tenant of the bearer token; answers 401 itself when there is none."""
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        tenant = self.sim.tenant_for_token(token) if token else None
        if tenant is None:
            self._graph_error(
                401, "InvalidAuthenticationToken", "Access token is empty or invalid."
            )
        return tenant

    def _take_graph_fault(self, tenant: SimTenant) -> tuple[str | None, int]:
        """Count a Graph request; pick its fault (queued or random) and wait the latency."""
        sim = self.sim
        with sim.lock:
            tenant.graph_requests += 1
            fault = tenant.take_fault(GRAPH_FAULTS)
            rate = sim.fault_rate if tenant.fault_rate is None else tenant.fault_rate
            if fault is None and rate and sim.rng.random() < rate:
                fault = sim.rng.choice(RANDOM_FAULTS)
            step = tenant.graph_requests
        if sim.latency:
            sim.stopping.wait(sim.latency)
        return fault, step

    def _report(self) -> None:
        sim = self.sim
        tenant = self._graph_tenant()
        if tenant is None:
            return
        fault, step = self._take_graph_fault(tenant)
        if fault is not None:
            self._fault(fault)
            return
        if tenant.seed_gone:
            self._graph_error(
                400,
                "BadRequest",
                "Resource not found for the segment 'getCredentialUserRegistrationCount'.",
            )
            return
        body, truth = report_document(tenant, step)
        with sim.lock:
            tenant.last_report = truth
        self._json(200, body, {"request-id": str(uuid.uuid4())})
        self._record("report", tenant)

    def _managed_identity_token(self, query: str) -> None:
        """Azure's instance metadata service: a token for the VM's managed identity."""
        if self.headers.get("Metadata") != "true":
            self._json(400, {"error": "invalid_request", "error_description": "Metadata header"})
            return
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        wanted = params.get("client_id") or "system"
        with self.sim.lock:
            tenant = next(
                (t for t in self.sim.tenants.values() if t.managed_identity == wanted), None
            )
        if tenant is None:
            self._json(400, {"error": "invalid_request", "error_description": "Identity not found"})
            return
        with self.sim.lock:
            tenant.token_requests += 1
        token = self.sim.issue_token(tenant)
        self._json(
            200,
            {**token, "expires_in": str(token["expires_in"]), "resource": params.get("resource")},
        )
        self._record("token", tenant)

    def _details(self, query: str) -> None:
        """One page of userRegistrationDetails, generated from the tenant's seed."""
        tenant = self._graph_tenant()
        if tenant is None:
            return
        fault, _ = self._take_graph_fault(tenant)
        if fault is not None:
            self._fault(fault)
            return
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        try:
            page = details_page(tenant, params, self.headers.get("ConsistencyLevel"))
        except ValueError as err:
            self._graph_error(400, "BadRequest", str(err))
            return
        if tenant.fail_page is not None and page.number == tenant.fail_page:
            self._graph_error(500, "InternalServerError", "Something went wrong on this page.")
            return
        body: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata"
            "#reports/authenticationMethods/userRegistrationDetails",
            "value": page.users,
        }
        if page.count is not None:
            body["@odata.count"] = page.count
        if page.next_offset is not None:
            next_params = {**params, "$skiptoken": str(page.next_offset)}
            next_query = urllib.parse.urlencode(next_params, safe="$,")
            body["@odata.nextLink"] = f"{self.sim.base_url}{DETAILS_PATHS[0]}?{next_query}"
        with self.sim.lock:
            tenant.details_pages += 1
        self._json(200, body, {"request-id": str(uuid.uuid4())})
        self._record("details", tenant)

    def _fault(self, fault: str) -> None:
        if fault == "throttle":
            self._graph_error(429, "TooManyRequests", "Too many requests.", {"Retry-After": "1"})
        elif fault == "throttle_date":
            when = email.utils.formatdate(time.time() + 2, usegmt=True)
            self._graph_error(429, "TooManyRequests", "Too many requests.", {"Retry-After": when})
        elif fault == "error500":
            self._graph_error(500, "InternalServerError", "Something went wrong.")
        elif fault == "error503":
            self._graph_error(
                503, "ServiceUnavailable", "Service unavailable.", {"Retry-After": "1"}
            )
        elif fault == "hang":
            self.sim.stopping.wait(self.sim.hang_seconds)
            self.close_connection = True
        elif fault == "reset":
            self._reset()
        elif fault == "malformed":
            self._raw(200, b'{"value": [{"totalUserCount": 12,', "application/json")
        elif fault == "html":
            page = b"<html><head><title>Service Error</title></head><body>Oops</body></html>"
            self._raw(200, page, "text/html")
        elif fault == "missing_fields":
            self._json(200, {"value": [{"id": "x"}]})
        elif fault == "forbidden":
            self._graph_error(
                403,
                "Authentication_ApplicationHasNoReadAuditLogDataAccess",
                "Calling principal does not have required MSGraph permissions AuditLog.Read.All",
            )
        elif fault == "oversized":
            self._raw(200, b" " * (2 * 1024 * 1024), "application/json")


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The simulator's flags."""
    parser = argparse.ArgumentParser(
        prog="entra-registration-simulator",
        description="Graph + Entra token endpoint look-alike over HTTPS, for demos and tests.",
    )
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (default 127.0.0.1:0)")
    parser.add_argument("--tenants", type=int, default=3, help="number of tenants (default 3)")
    parser.add_argument("--latency", default="0s", help="delay of each report call, e.g. 50ms")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of report calls that fail"
    )
    parser.add_argument(
        "--token-lifetime", type=int, default=3599, help="expires_in of tokens, seconds"
    )
    parser.add_argument("--hang", default="60s", help="how long a 'hang' fault holds the answer")
    parser.add_argument("--seed", type=int, default=None, help="random seed for tenants and faults")
    parser.add_argument("--interval", default="30s", help="interval written into --config-out")
    parser.add_argument("--jitter", default="1s", help="jitter written into --config-out")
    parser.add_argument("--timeout", default="10s", help="timeout written into --config-out")
    parser.add_argument(
        "--users",
        type=int,
        default=None,
        help="users per tenant in userRegistrationDetails (default: the tenant's user count)",
    )
    parser.add_argument(
        "--gone-tenants",
        type=int,
        default=0,
        help="the first N tenants answer the seed's report as gone (for source auto)",
    )
    parser.add_argument("--config-out", help="write a ready exporter config here")
    parser.add_argument("--ca-out", help="write the CA bundle here (default: next to --config-out)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGTERM / SIGINT."""
    args = build_parser().parse_args(argv)
    try:
        latency = parse_duration(args.latency)
        hang = parse_duration(args.hang)
        durations = {k: parse_duration(getattr(args, k)) for k in ("interval", "jitter", "timeout")}
    except ValueError as err:
        print(f"entra-registration-simulator: {err}", file=sys.stderr)
        return 2
    if args.tenants < 0 or not 0 <= args.fault_rate <= 1:
        print(
            "entra-registration-simulator: --tenants >= 0 and 0 <= --fault-rate <= 1",
            file=sys.stderr,
        )
        return 2
    sim = Simulator(
        tenants=args.tenants,
        latency=latency,
        fault_rate=args.fault_rate,
        token_lifetime=args.token_lifetime,
        hang_seconds=hang,
        seed=args.seed,
    )
    for index, tenant in enumerate(sim.tenants.values()):
        tenant.users = args.users
        tenant.seed_gone = index < args.gone_tenants
    url = sim.start(args.listen)
    ca_out = args.ca_out or (
        str(Path(args.config_out).with_name("simulator-ca.pem")) if args.config_out else None
    )
    if ca_out:
        sim.write_ca(ca_out)
    if args.config_out:
        sim.write_config(args.config_out, ca_out or "", **durations)
    print(f"simulator listening on {url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
