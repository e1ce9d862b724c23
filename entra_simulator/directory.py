"""Simulated tenants and their users: app registrations, report documents in each shape
Microsoft documents, and userRegistrationDetails generated from a seed (nothing per user is
stored, so a tenant may have a million users)."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

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
    "surrogate_status",  # 200 with a status name holding a lone UTF-16 surrogate
    "huge_count",  # 200 with a 400-digit count
    "deep_json",  # 200 with 100,000 nested arrays
    "throttle_superscript",  # 429 with Retry-After: ²
    "nextlink_loop",  # 200 with no rows and a nextLink to the same page
    "label_flood",  # 200 with 300 registration statuses no one has seen before
    "echo_token",  # 403 whose error quotes the request's bearer token back
    "throttle_long",  # 429 with Retry-After: 120 (longer than a poll's budget)
    "repeat_page",  # 200: the same one object, and a nextLink never seen before
    "throttle_bare",  # 429 without Retry-After (Conditional Access's own limit answers so)
)
# A queued answer of given bytes (Simulator.set_body); never drawn at random.
CUSTOM_ANSWER = "custom_answer"
TOKEN_FAULTS = (
    "invalid_client",
    "token_down",
    "token_error500",  # the token endpoint answers 500 with an HTML page
    "token_html",  # the token endpoint answers 400 with a proxy's HTML page (MSAL logs it)
    "no_service_principal",  # AADSTS700016: the app is not in the tenant (never consented)
    "no_consent",  # AADSTS65001: the app is there, admin consent is not
    "echo_secret",
    "expires_in_null",
    "expires_in_text",
    "empty_token",
    "crlf_token",
)
RANDOM_FAULTS = ("throttle", "error500", "error503", "reset", "malformed")
DETAIL_FLAGS = (
    "isSsprRegistered",
    "isSsprEnabled",
    "isSsprCapable",
    "isMfaRegistered",
    "isMfaCapable",
    "isPasswordlessCapable",
)
# (method, how many users out of 256 have it): methodsRegistered values Graph documents, and
# one that it does not (yet): Microsoft adds methods, the exporter must take them as they come.
METHODS = (
    ("microsoftAuthenticatorPush", 90),
    ("softwareOneTimePasscode", 60),
    ("mobilePhone", 110),
    ("email", 90),
    ("fido2SecurityKey", 20),
    ("windowsHelloForBusiness", 30),
    ("microsoftAuthenticatorPasswordless", 25),
    ("passKeyDeviceBound", 12),
    ("passKeySynced", 8),
    ("alternateMobilePhone", 15),
    ("hardwareOneTimePasscode", 5),
    ("securityQuestion", 20),
    ("temporaryAccessPass", 4),
    ("futureMethodNotYetDocumented", 3),
)
# systemPreferredAuthenticationMethods: the first registered method of this list, in order.
SYSTEM_PREFERRED = (
    ("fido2SecurityKey", "fido2"),
    ("passKeyDeviceBound", "fido2"),
    ("microsoftAuthenticatorPush", "push"),
    ("softwareOneTimePasscode", "oath"),
    ("hardwareOneTimePasscode", "oath"),
    ("mobilePhone", "sms"),
)
# Graph's enum for the report's statuses (its metadata), unknownFutureValue left out.
REPORT_STATUSES = ("registered", "enabled", "capable", "mfaRegistered")
# Report shapes: Graph's metadata (registrationStatus / registrationCount in a value collection),
# the seed document's misspelling (userRegistationCount), its correct spelling
# (userRegistrationStatus / userRegistrationCount), and the resource page's bare object.
REPORT_SHAPES = 4
METADATA_SHAPE, MISSPELLED_SHAPE, SEED_SHAPE, BARE_SHAPE = range(REPORT_SHAPES)
MAX_PAGE = 999


def _last_full_hour() -> float:
    """When the report's data was last refreshed: the previous full hour (users lag behind)."""
    return (time.time() // 3600 - 1) * 3600


@dataclass(slots=True)
class SimTenant:
    """One simulated tenant: its app registration and its users."""

    name: str
    tenant_id: str
    client_id: str
    secret: str | None = None
    certificate_pem: str | None = None
    federated_token: str | None = None
    shape: int = METADATA_SHAPE
    extra_status: bool = False  # report a status Graph's enum does not have (yet)
    fault_rate: float | None = None  # overrides the simulator's --fault-rate for this tenant
    random_faults: tuple[str, ...] | None = None  # what random faults it draws from
    custom_answer: tuple[int, bytes, str] | None = None  # status, body, content type
    seed_gone: bool = False  # getCredentialUserRegistrationCount answers 400 (retired)
    trusted_issuer_pem: str | None = None  # subject name + issuer auth: trust this CA
    managed_identity: str | None = None  # "system", or a user-assigned identity's client_id
    users: int | None = None  # userRegistrationDetails users (default: total_users)
    page_size: int = MAX_PAGE  # userRegistrationDetails rows per page, at most (Graph's choice)
    page_overlap: int = 0  # each page repeats this many users of the one before (seams)
    fail_page: int | None = None  # this page of userRegistrationDetails answers 500
    details_pages: int = 0
    total_users: int = 1000
    base_counts: dict[str, int] = field(default_factory=dict)
    token_requests: int = 0
    graph_requests: int = 0
    faults: list[list[Any]] = field(default_factory=list)  # [kind, remaining (0 = sticky)]
    last_report: dict[str, Any] | None = None
    # userRegistrationDetails users holding an admin role (isAdmin true), by index.
    admin_indexes: frozenset[int] = frozenset()
    # Roles and groups (built on first use: see entra_simulator.segments).
    directory: Any = None
    role_page_size: int = 3  # Graph chooses its page sizes; small ones exercise paging
    fail_group_page: int | None = None  # this page of any group's members answers 500
    data_refreshed_at: float = field(default_factory=_last_full_hour)
    privileged_admins: int = 6  # users holding privileged roles in the default directory
    group_size: int | None = None  # two rollout groups of this many users, else the default
    policy_variant: int = 0  # its authentication methods policy (entra_simulator.policy)
    ca_variant: int = 0  # its Conditional Access (entra_simulator.conditional_access)
    customer_of: str | None = None  # the partner tenant listing it (entra_simulator.partners)
    display_name: str | None = None  # its name in a partner's listing (default: name)
    listed: bool = True  # written into the exporter's config (a partner's customers are found)
    external_share: int = 16  # users out of 256 whose userPrincipalName carries #EXT#

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
        total_users=total,
        base_counts=counts,
        policy_variant=index % 6,
    )


def report_document(tenant: SimTenant, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON body, the truth it encodes) for the ``step``-th report of ``tenant``."""
    drift = step // 2
    counts = {
        status: min(tenant.total_users, value + drift)
        for status, value in tenant.base_counts.items()
    }
    if tenant.extra_status:
        counts["mfaCapable"] = min(tenant.total_users, counts["capable"] + 1)
    truth = {"totalUserCount": tenant.total_users, "userRegistrationCounts": counts}
    status_key, count_key = {
        METADATA_SHAPE: ("registrationStatus", "registrationCount"),
        MISSPELLED_SHAPE: ("userRegistrationStatus", "userRegistationCount"),
        SEED_SHAPE: ("userRegistrationStatus", "userRegistrationCount"),
        BARE_SHAPE: ("registrationStatus", "registrationCount"),
    }[tenant.shape]
    report = {
        "id": tenant.tenant_id,
        "totalUserCount": tenant.total_users,
        "userRegistrationCounts": [{status_key: s, count_key: c} for s, c in counts.items()],
    }
    if tenant.shape == BARE_SHAPE:
        return report, truth
    body = {
        "@odata.context": "https://graph.microsoft.com/beta/$metadata"
        "#Collection(microsoft.graph.credentialUserRegistrationCount)",
        "value": [report],
    }
    return body, truth


def user_id(tenant: SimTenant, index: int) -> str:
    """The object ID of user ``index`` (cheap: segments need many)."""
    digest = hashlib.blake2b(f"{tenant.tenant_id}:id:{index}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def _user_type(byte: int) -> str:
    if byte < 20:
        return "guest"
    if byte == 255:
        return "unknownFutureValue"  # Graph's evolvable enums send this for new values
    return "member"


def detail_user(tenant: SimTenant, index: int) -> dict[str, Any]:
    """User ``index`` of the tenant with every documented property, the same every time."""
    d = hashlib.blake2b(f"{tenant.tenant_id}:{index}".encode(), digest_size=48).digest()
    # Thresholds out of 256 give each flag a plausible share; a few are null, as Graph sends.
    flags = {
        name: None if null < 6 else b < t
        for name, b, t, null in zip(
            DETAIL_FLAGS, d[0:6], (150, 200, 170, 190, 180, 40), d[6:12], strict=True
        )
    }
    methods = [m for (m, share), b in zip(METHODS, d[12:26], strict=True) if b < share]
    preferred = [code for method, code in SYSTEM_PREFERRED if method in methods][:1]
    updated = tenant.data_refreshed_at - d[26] * 60 - d[27] / 7.0
    return {
        "id": user_id(tenant, index),
        "userPrincipalName": (
            f"user{index}_partner.example#EXT#@{tenant.name}.onmicrosoft.com"
            if d[31] < tenant.external_share
            else f"user{index}@{tenant.name}.example"
        ),
        "userDisplayName": f"User {index}",
        "userType": _user_type(d[28]),
        "isAdmin": d[29] < 3 or index in tenant.admin_indexes,
        **flags,
        "isSystemPreferredAuthenticationMethodEnabled": d[30] < 200,
        "methodsRegistered": methods,
        "systemPreferredAuthenticationMethods": preferred,
        "userPreferredMethodForSecondaryAuthentication": preferred[0] if preferred else "none",
        "lastUpdatedDateTime": _graph_time(updated),
    }


def _graph_time(when: float) -> str:
    """Graph's way of writing a time: UTC, seven fractional digits, ``Z``."""
    whole = int(when)
    fraction = min(9_999_999, round((when - whole) * 10_000_000))
    stamp = dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:07d}Z"


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
    top = min(top, tenant.page_size)
    while index < total and len(users) < top:
        user = detail_user(tenant, index)
        index += 1
        if all(user[f] is v for f, v in clauses):
            users.append({k: user[k] for k in select if k in user} if select else user)
    next_offset = None if index >= total else max(offset + 1, index - tenant.page_overlap)
    return DetailsPage(offset // top, users, next_offset, count)


def details_truth(tenant: SimTenant) -> dict[str, Any]:
    """What a full walk of userRegistrationDetails counts (computed, never stored per user)."""
    flags = dict.fromkeys(DETAIL_FLAGS, 0)
    methods: dict[str, int] = {}
    total = tenant_users(tenant)
    for index in range(total):
        user = detail_user(tenant, index)
        for flag in DETAIL_FLAGS:
            flags[flag] += user[flag] is True
        for method in user["methodsRegistered"]:
            methods[method] = methods.get(method, 0) + 1
    return {"users": total, "flags": flags, "methods": methods}


def tenant_from(body: dict[str, Any]) -> SimTenant:
    """A tenant from the control API's JSON (``POST /_sim/tenants``); the same tenant_id
    replaces the tenant (a rotated secret, another policy)."""
    return SimTenant(
        name=str(body["name"]),
        tenant_id=str(body["tenant_id"]),
        client_id=str(body["client_id"]),
        secret=body.get("secret"),
        certificate_pem=body.get("certificate_pem"),
        federated_token=body.get("federated_token"),
        shape=int(body.get("shape", 0)),
        users=int(body["users"]) if body.get("users") is not None else None,
        seed_gone=bool(body.get("seed_gone", False)),
        policy_variant=int(body.get("policy_variant", 0)),
        ca_variant=int(body.get("ca_variant", 0)),
    )
