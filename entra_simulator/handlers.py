"""The simulator's HTTP routes: OpenID discovery, the token endpoints (Entra and the instance
metadata service), Graph's two reports, faults, and the ``/_sim/...`` control API."""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import json
import socket
import ssl
import struct
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from entra_simulator.conditional_access import ConditionalAccessHandler
from entra_simulator.directory import (
    CUSTOM_ANSWER,
    GRAPH_FAULTS,
    RANDOM_FAULTS,
    TOKEN_FAULTS,
    SimTenant,
    details_page,
    report_document,
    tenant_from,
    tenant_users,
)
from entra_simulator.faults import (
    FAULT_ANSWERS,
    FAULT_BODIES,
    SHAPED_TOKENS,
    TOKEN_PAGES,
    invalid_client_body,
    openid_configuration,
    repeat_page,
    token_refusal,
)
from entra_simulator.limits import directory_cost, retry_after
from entra_simulator.partners import PARTNER_PATHS, PartnerHandler
from entra_simulator.paths import (
    CA_POLICIES_PATH,
    DETAILS_PATHS,
    GROUPS_PREFIX,
    MEMBERS,
    POLICY_PATH,
    REPORT_PATHS,
    ROLE_PATHS,
    SECURITY_DEFAULTS_PATH,
)
from entra_simulator.policy import FORBIDDEN, FORBIDDEN_BODY, policy_document
from entra_simulator.segments import directory_of, members_page, role_page

if TYPE_CHECKING:
    from entra_simulator.state import SimulatorState


class _SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that vanish mid-handshake are normal here; print nothing."""


class _SimServer6(_SimServer):
    address_family = socket.AF_INET6


class _SimHandler(ConditionalAccessHandler, PartnerHandler, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sim: SimulatorState
    custom_answer: tuple[int, bytes, str] = (200, b"{}", "application/json")
    load = 0.0  # the share of the service budget in use, after the last directory call
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
        """Log a request before its answer goes out: whoever saw the answer finds the event."""
        event = (kind, tenant.client_id, tenant.tenant_id, self.started, time.time())
        self.sim.events.append(event)
        with self.sim.lock:
            self.sim.event_counts[kind] += 1

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
        elif path in ROLE_PATHS or (path.startswith(GROUPS_PREFIX) and path.endswith(MEMBERS)):
            self._directory_objects(path, urllib.parse.urlsplit(self.path).query)
        elif path == POLICY_PATH:
            self._policy(urllib.parse.urlsplit(self.path).query)
        elif path in (SECURITY_DEFAULTS_PATH, CA_POLICIES_PATH, *PARTNER_PATHS):
            self._tenant_policies(path, urllib.parse.urlsplit(self.path).query)
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
            self._record("discovery", discovered)
            self._json(200, openid_configuration(sim.base_url, tenant_key))
        elif path == "/metadata/identity/oauth2/token":
            self._managed_identity_token(urllib.parse.urlsplit(self.path).query)
        elif path == "/_sim/stats":
            self._json(200, sim.stats())
        elif path == "/_sim/events":
            self._json(200, {"events": list(sim.events)})
        elif path == "/_sim/counts":
            with sim.lock:
                counts = dict(sim.event_counts)
            self._json(200, counts)
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
                    rate, kinds = body["rate"], body.get("kinds")
                    self.sim.set_fault_rate(
                        str(body["tenant"]),
                        None if rate is None else float(rate),
                        tuple(map(str, kinds)) if kinds else None,
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
            try:
                tenant = tenant_from(self._read_json())
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
        if fault in TOKEN_PAGES:
            self._raw(*TOKEN_PAGES[fault])
            return
        if form.get("grant_type") != "client_credentials":
            self._json(400, {"error": "unsupported_grant_type", "correlation_id": correlation})
            return
        reason = token_refusal(fault, form)
        answer = None
        if reason is None:
            reason, answer = sim.authenticate_and_issue(tenant, form, f"{sim.base_url}{path}")
        if answer is None:
            self._json(401, invalid_client_body(reason or "AADSTS7000215", correlation))
            return
        if fault in SHAPED_TOKENS:
            self._json(200, {**answer, **SHAPED_TOKENS[fault]})
            return
        self._record("token", tenant)
        self._json(200, answer)

    def _graph_tenant(self) -> SimTenant | None:
        """The tenant of the bearer token; answers 401 itself when there is none."""
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        tenant = self.sim.tenant_for_token(token) if token else None
        if tenant is None:
            self._graph_error(401, "InvalidAuthenticationToken", "Access token is empty or bad.")
        return tenant

    def _over_limits(self, tenant: SimTenant) -> bool:
        """Answer 429 (and True) when the request would cross Graph's report limits."""
        limits = self.sim.limits
        wait = limits.admit(tenant.client_id, tenant.tenant_id) if limits else None
        if wait is None:
            return False
        self._graph_error(
            429, "TooManyRequests", "Too many requests.", {"Retry-After": retry_after(wait)}
        )
        return True

    def _over_service_limits(self, tenant: SimTenant, units: int) -> bool:
        """Answer 429 (and True) past the identity and access service's resource units."""
        limits = self.sim.service_limits
        if limits is None:
            return False
        users = tenant_users(tenant)
        wait, self.load = limits.admit(tenant.client_id, tenant.tenant_id, users, units)
        if wait is None:
            return False
        self._graph_error(
            429, "TooManyRequests", "Too many requests.", {"Retry-After": retry_after(wait)}
        )
        return True

    def _policy(self, query: str) -> None:
        """The tenant's authentication methods policy (or Graph's 403 for its variant)."""
        call = self._graph_call(query, units=1, directory=False)
        if call is None:
            return
        tenant, forbidden = call[0], call[0].policy_variant == FORBIDDEN
        body = FORBIDDEN_BODY if forbidden else policy_document(tenant.policy_variant)
        self._record("policy", tenant)
        self._json(403 if forbidden else 200, body, self._load_header())

    def _load_header(self) -> dict[str, str]:  # Graph's, from 0.8 of the budget on
        return {"x-ms-throttle-limit-percentage": f"{self.load:.2f}"} if self.load >= 0.8 else {}

    def _take_graph_fault(self, tenant: SimTenant) -> tuple[str | None, int]:
        """Count a Graph request; pick its fault (queued or random) and wait the latency."""
        sim = self.sim
        with sim.lock:
            tenant.graph_requests += 1
            fault = tenant.take_fault((*GRAPH_FAULTS, CUSTOM_ANSWER))
            if fault == CUSTOM_ANSWER and tenant.custom_answer is not None:
                self.custom_answer = tenant.custom_answer
            rate = sim.fault_rate if tenant.fault_rate is None else tenant.fault_rate
            if fault is None and rate and sim.rng.random() < rate:
                fault = sim.rng.choice(tenant.random_faults or RANDOM_FAULTS)
            step = tenant.graph_requests
        if sim.latency:
            sim.stopping.wait(sim.latency)
        return fault, step

    def _report(self) -> None:
        sim = self.sim
        tenant = self._graph_tenant()
        if tenant is None:
            return
        if self._over_limits(tenant):
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
        self._record("report", tenant)
        self._json(200, body, {"request-id": str(uuid.uuid4())})

    def _managed_identity_token(self, query: str) -> None:
        """Azure's instance metadata service: a token for the VM's managed identity."""
        if self.headers.get("Metadata") != "true":
            self._json(400, {"error": "invalid_request", "error_description": "Metadata header"})
            return
        status, body, tenant = self.sim.managed_identity_token(query)
        if tenant is not None:
            self._record("token", tenant)
        self._json(status, body)

    def _graph_call(
        self, query: str, limited: bool = False, units: int = 0, directory: bool = True
    ) -> tuple[SimTenant, dict[str, str]] | None:
        """Tenant and query of a Graph call; None when it was answered (401, 429, a fault).

        ``limited``: a report call, subject to Graph's report limits when they are enforced;
        ``units``: a directory call of that cost, subject to the service's limits;
        ``directory``: the call reads users or roles (the tenant's directory is built for it)."""
        tenant = self._graph_tenant()
        if tenant is None or (limited and self._over_limits(tenant)):
            return None
        if units and self._over_service_limits(tenant, units):
            return None
        fault, _ = self._take_graph_fault(tenant)
        if fault is not None:
            self._fault(fault)
            return None
        if directory:  # isAdmin follows the role assignments
            directory_of(tenant)
        return tenant, {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}

    def _send_page(
        self,
        path: str,
        params: dict[str, str],
        value: list[dict[str, Any]],
        next_offset: int | None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{path}",
            **(extra or {}),
            "value": value,
        }
        if next_offset is not None:
            next_query = urllib.parse.urlencode(
                {**params, "$skiptoken": str(next_offset)}, safe="$,'()"
            )
            body["@odata.nextLink"] = f"{self.sim.base_url}{path}?{next_query}"
        self._json(200, body, {"request-id": str(uuid.uuid4()), **(headers or {})})

    def _details(self, query: str) -> None:
        """One page of userRegistrationDetails, generated from the tenant's seed."""
        call = self._graph_call(query, limited=True)
        if call is None:
            return
        tenant, params = call
        try:
            page = details_page(tenant, params, self.headers.get("ConsistencyLevel"))
        except ValueError as err:
            self._graph_error(400, "BadRequest", str(err))
            return
        if tenant.fail_page is not None and page.number == tenant.fail_page:
            self._graph_error(500, "InternalServerError", "Something went wrong on this page.")
            return
        extra = {"@odata.count": page.count} if page.count is not None else {}
        with self.sim.lock:
            tenant.details_pages += 1
        self._record("details", tenant)
        self._send_page(DETAILS_PATHS[0], params, page.users, page.next_offset, extra)

    def _directory_objects(self, path: str, query: str) -> None:
        """Role assignments or eligibilities (by role, principal expanded), or group members."""
        call = self._graph_call(query, units=directory_cost(path, query))
        if call is None:
            return
        tenant, params = call
        try:
            if path in ROLE_PATHS:
                items, following = role_page(tenant, path == ROLE_PATHS[1], params)
                number = 0
            else:
                group_id = path[len(GROUPS_PREFIX) : -len(MEMBERS)]
                page = members_page(tenant, group_id, params)
                if page is None:
                    self._graph_error(
                        404,
                        "Request_ResourceNotFound",
                        f"Resource '{group_id}' does not exist or one of its queried "
                        "reference-property objects are not present.",
                    )
                    return
                items, following, number = page
                if number == tenant.fail_group_page:
                    self._graph_error(500, "InternalServerError", "Something went wrong.")
                    return
        except ValueError as err:
            self._graph_error(400, "BadRequest", str(err))
            return
        self._record("directory", tenant)
        self._send_page(path, params, items, following, headers=self._load_header())

    def _fault(self, fault: str) -> None:
        """Answer with ``fault`` (one of :data:`GRAPH_FAULTS`) instead of the report."""
        answer = FAULT_ANSWERS.get(fault)
        if answer is not None:
            status, code, message, headers = answer
            self._graph_error(status, code, message, headers)
        elif fault == "throttle_date":
            when = email.utils.formatdate(time.time() + 2, usegmt=True)
            self._graph_error(429, "TooManyRequests", "Too many requests.", {"Retry-After": when})
        elif fault == "hang":
            self.sim.stopping.wait(self.sim.hang_seconds)
            self.close_connection = True
        elif fault == "reset":
            self._reset()
        elif fault == CUSTOM_ANSWER:
            status, body, content_type = self.custom_answer
            self._raw(status, body, content_type)
        elif fault == "echo_token":
            echoed = self.headers.get("Authorization", "")
            self._graph_error(403, "Authorization_RequestDenied", f"denied for {echoed}")
        elif fault == "repeat_page":
            self._json(200, repeat_page(f"{self.sim.base_url}{self.path.partition('?')[0]}"))
        elif fault == "nextlink_loop":
            loop = {"value": [], "@odata.nextLink": f"{self.sim.base_url}{self.path}"}
            self._json(200, loop)
        elif fault in FAULT_BODIES:
            body, content_type = FAULT_BODIES[fault]
            self._raw(200, body, content_type)


def make_server(sim: SimulatorState, host: str, port: int) -> ThreadingHTTPServer:
    """Bind the simulator's (not yet TLS-wrapped, not yet serving) server."""
    handler = type("BoundSimHandler", (_SimHandler,), {"sim": sim})
    server_class = _SimServer6 if ":" in host else _SimServer
    return server_class((host, port), handler)
