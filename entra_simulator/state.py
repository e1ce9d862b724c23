"""The simulator's state: its tenants, tokens, limits and request log, and the logic the
request handlers call (the server that serves them is started by :mod:`.simulator`)."""

from __future__ import annotations

import base64
import collections
import json
import os
import random
import secrets
import tempfile
import threading
import time
import urllib.parse
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from entra_simulator.directory import (
    CUSTOM_ANSWER,
    GRAPH_FAULTS,
    TOKEN_FAULTS,
    SimTenant,
    make_tenant,
)
from entra_simulator.limits import GraphLimits, ServiceLimits, TenantRate
from entra_simulator.segments import directory_of
from entra_simulator.tls import check_certificate_assertion, make_tls_material
from exporter.config.model import format_duration


class SimulatorState:
    """The simulator's state, what its handlers read and change (under :attr:`lock`)."""

    def __init__(
        self,
        tenants: int = 3,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        token_lifetime: int = 3599,
        hang_seconds: float = 60.0,
        seed: int | None = None,
        limits: GraphLimits | None = None,
        service_limits: ServiceLimits | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        # Graph's report limits, when the simulator enforces them (None: it does not).
        self.limits = limits
        # The identity and access service's resource units (roles, groups, policies), likewise.
        self.service_limits = service_limits
        # Conditional Access: 1 request per second per tenant, for all apps (with the others).
        self.ca_limits = TenantRate() if service_limits is not None else None
        self.latency = latency
        self.fault_rate = fault_rate
        self.token_lifetime = token_lifetime
        self.hang_seconds = hang_seconds
        # True: access tokens that are not JSON Web Tokens (clients must not rely on a shape).
        self.opaque_tokens = False
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
        # Answered requests by kind, cheap to read while a benchmark waits for a round.
        self.event_counts: collections.Counter[str] = collections.Counter()
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

    def set_fault_rate(
        self, key: str, rate: float | None, kinds: tuple[str, ...] | None = None
    ) -> None:
        """Make a share of the tenant's Graph calls fail at random (None: the global rate),
        with faults drawn from ``kinds`` (default: a few common ones)."""
        tenant = self.find(key)
        if tenant is None:
            raise KeyError(key)
        if rate is not None and not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        unknown = set(kinds or ()) - set(GRAPH_FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}")
        with self.lock:
            tenant.fault_rate = rate
            tenant.random_faults = kinds

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

    def set_body(
        self, key: str, status: int, body: bytes, content_type: str, times: int = 1
    ) -> None:
        """Answer the tenant's next ``times`` Graph calls (0: every one) with exactly these
        bytes (property and hostile-answer tests)."""
        tenant = self.find(key)
        if tenant is None:
            raise KeyError(key)
        with self.lock:
            tenant.custom_answer = (status, body, content_type)
            tenant.faults.append([CUSTOM_ANSWER, times])

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
            "refused_by_limits": self.limits.refused if self.limits else 0,
            "refused_by_service_limits": (
                self.service_limits.refused if self.service_limits else 0
            ),
            "refused_by_ca_limits": self.ca_limits.refused if self.ca_limits else 0,
        }

    # ---------------------------------------------------------------- server

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        host_text = f"[{host}]" if ":" in host else host
        return f"https://{host_text}:{port}"

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
        segments: dict[str, dict[str, Any]] | None = None,
        policies: frozenset[str] = frozenset(),
        enforcement: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """A ready exporter config (as a YAML-able dict) for every simulated tenant.

        ``sources`` sets the ``source`` of some tenants, ``segments`` their ``segments``
        (group names resolved to the simulated groups' IDs), by tenant name; the tenants named
        in ``policies`` read their authentication methods policy, those in ``enforcement``
        their Conditional Access and security defaults.
        """
        sources = sources or {}
        segments = {
            name: _with_group_ids(self.find(name), wanted)
            for name, wanted in (segments or {}).items()
        }
        with self.lock:
            tenants = [
                {
                    "name": t.name,
                    "tenant_id": t.tenant_id,
                    "client_id": t.client_id,
                    "client_secret": t.secret,
                    **({"source": sources[t.name]} if t.name in sources else {}),
                    **({"segments": segments[t.name]} if t.name in segments else {}),
                    **({"policy": True} if t.name in policies else {}),
                    **({"enforcement": True} if t.name in enforcement else {}),
                }
                for t in self.tenants.values()
                if t.secret and t.listed
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
        with self.lock:
            return self._issue_token_locked(tenant)

    def authenticate_and_issue(
        self, tenant: SimTenant, form: dict[str, str], token_url: str
    ) -> tuple[str | None, dict[str, Any] | None]:
        """The client's check and its token under one lock: a test that changes a tenant's
        credential and revokes its tokens (under the lock) never sees a token issued for the
        old credential after the revocation. (The refusal reason, or the token's answer.)"""
        with self.lock:
            reason = self.check_client(tenant, form, token_url)
            return reason, None if reason is not None else self._issue_token_locked(tenant)

    def _issue_token_locked(self, tenant: SimTenant) -> dict[str, Any]:
        # Access tokens are opaque to clients: Microsoft may change their shape at any time.
        token = (
            f"opaque~{secrets.token_urlsafe(48)}"
            if self.opaque_tokens
            else jwt_shaped(tenant.tenant_id, self.token_lifetime)
        )
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
            if tenant.secret and secrets.compare_digest(
                form["client_secret"].encode(), tenant.secret.encode()
            ):
                return None
            return "AADSTS7000215: Invalid client secret provided."
        assertion = form.get("client_assertion", "")
        if not assertion:
            return "AADSTS7000216: client_assertion or client_secret is required."
        if tenant.federated_token is not None:
            if secrets.compare_digest(assertion.encode(), tenant.federated_token.encode()):
                return None
            return "AADSTS700213: No matching federated identity record found."
        if tenant.certificate_pem is None and tenant.trusted_issuer_pem is None:
            return "AADSTS700027: Client assertion failed signature validation."
        return check_certificate_assertion(assertion, tenant, token_url)

    def managed_identity_token(self, query: str) -> tuple[int, dict[str, Any], SimTenant | None]:
        """The instance metadata service's answer to ``query``: status, body, whose token."""
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        wanted = params.get("client_id") or "system"
        with self.lock:
            tenant = next((t for t in self.tenants.values() if t.managed_identity == wanted), None)
            if tenant is None:
                return (
                    400,
                    {"error": "invalid_request", "error_description": "Identity not found"},
                    None,
                )
            tenant.token_requests += 1
        token = self.issue_token(tenant)
        body = {**token, "expires_in": str(token["expires_in"]), "resource": params.get("resource")}
        return 200, body, tenant


def _with_group_ids(tenant: SimTenant | None, segments: dict[str, Any]) -> dict[str, Any]:
    """``segments`` with ``groups`` given as a list of simulated group names made name: ID."""
    if tenant is None or "groups" not in segments:
        return segments
    directory = directory_of(tenant)
    groups = {name: directory.group_named(name).id for name in segments["groups"]}
    return {**segments, "groups": groups}


def jwt_shaped(tenant_id: str, lifetime: int) -> str:
    """An access token shaped as Entra's are (a JSON Web Token: header, claims, signature),
    unsigned: only the simulator reads it back, by its value."""

    def part(document: dict[str, Any]) -> str:
        raw = json.dumps(document, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"tid": tenant_id, "exp": int(time.time()) + lifetime, "jti": secrets.token_hex(12)}
    signature = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return f"{part({'typ': 'JWT', 'alg': 'none'})}.{part(claims)}.{signature}"
