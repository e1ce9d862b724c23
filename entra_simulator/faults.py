"""Fixed answers: each Graph fault that is one (the others — hang, reset, a dated Retry-After,
a nextLink loop — are made in the handler), and the identity provider's OpenID discovery."""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.parse
import uuid
from typing import Any


def openid_configuration(base: str, tenant_key: str) -> dict[str, Any]:
    """The OpenID discovery document MSAL reads for ``tenant_key``."""
    return {
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
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": "NA",
    }


# Faults answered with a Graph error: (status, code, message, headers).
FAULT_ANSWERS: dict[str, tuple[int, str, str, dict[str, str]]] = {
    "throttle": (429, "TooManyRequests", "Too many requests.", {"Retry-After": "1"}),
    # As Graph's Conditional Access limit answers: no Retry-After at all.
    "throttle_bare": (429, "TooManyRequests", "Too many requests.", {}),
    # Longer than a poll may wait: the poll gives up, the retry must come no earlier.
    "throttle_long": (429, "TooManyRequests", "Too many requests.", {"Retry-After": "120"}),
    # "²".isdigit() is true in Python; float("²") raises.
    "throttle_superscript": (429, "TooManyRequests", "Too many requests.", {"Retry-After": "²"}),
    "error500": (500, "InternalServerError", "Something went wrong.", {}),
    "error503": (503, "ServiceUnavailable", "Service unavailable.", {"Retry-After": "1"}),
    "forbidden": (
        403,
        "Authentication_ApplicationHasNoReadAuditLogDataAccess",
        "Calling principal does not have required MSGraph permissions AuditLog.Read.All",
        {},
    ),
}
# Faults answered 200 with a body that is not a usable report: (body, content type).
FAULT_BODIES: dict[str, tuple[bytes, str]] = {
    "malformed": (b'{"value": [{"totalUserCount": 12,', "application/json"),
    "html": (
        b"<html><head><title>Service Error</title></head><body>Oops</body></html>",
        "text/html",
    ),
    "missing_fields": (b'{"value": [{"id": "x"}]}', "application/json"),
    "oversized": (b" " * (2 * 1024 * 1024), "application/json"),
    # Hostile answers: a status no exposition can encode, a count no float64 holds, JSON
    # nested past any parser's recursion limit.
    "surrogate_status": (
        b'{"value": [{"totalUserCount": 5, "userRegistrationCounts": '
        b'[{"registrationStatus": "x\\ud800y", "registrationCount": 1}]}]}',
        "application/json",
    ),
    "huge_count": (
        b'{"value": [{"totalUserCount": 5, "userRegistrationCounts": '
        b'[{"registrationStatus": "registered", "registrationCount": ' + b"9" * 400 + b"}]}]}",
        "application/json",
    ),
    "deep_json": (b"[" * 100_000, "application/json"),
    # A usable report with far more statuses than Graph has: the exporter caps their series.
    "label_flood": (
        json.dumps(
            {
                "value": [
                    {
                        "totalUserCount": 300,
                        "userRegistrationCounts": [
                            {"registrationStatus": f"flood{i}", "registrationCount": 1}
                            for i in range(300)
                        ],
                    }
                ]
            }
        ).encode(),
        "application/json",
    ),
}


# Token endpoint answers that are no token answer at all: a proxy's or a gateway's pages.
TOKEN_PAGES: dict[str, tuple[int, bytes, str]] = {
    "token_error500": (500, b"<html><body>Service unavailable</body></html>", "text/html"),
    "token_html": (400, b"<html><body>Proxy says no</body></html>", "text/html"),
}


def repeat_page(url: str) -> dict[str, Any]:
    """A page listing the same one object (as a member and as a role's principal) every
    time, linking on to ``url`` with a skip token never seen before."""
    item = {"@odata.type": "#microsoft.graph.user", "id": "5f1c3d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f"}
    link = f"{url}?$skiptoken={uuid.uuid4().hex}"
    return {"value": [{"principal": item, **item}], "@odata.nextLink": link}


def token_refusal(fault: str | None, form: dict[str, str]) -> str | None:
    """Why the token endpoint refuses the client for a queued ``fault`` (None: no such fault)."""
    if fault == "invalid_client":
        return "AADSTS7000222: The provided client secret keys for app are expired."
    if fault == "no_service_principal":
        return (
            "AADSTS700016: Application with identifier was not found in the directory. This can "
            "happen if the application has not been installed by the administrator of the tenant."
        )
    if fault == "no_consent":
        return "AADSTS65001: The user or administrator has not consented to use the application."
    if fault == "echo_secret":
        # Some proxies and IdPs echo the request back: the secret in three encodings.
        echoed = form.get("client_secret", "")
        return (
            f"AADSTS90014: bad request client_secret={urllib.parse.quote(echoed, safe='')}"
            f" body={base64.b64encode(urllib.parse.urlencode(form).encode()).decode()}"
            f" json={json.dumps({'client_secret': echoed})}"
        )
    return None


def invalid_client_body(reason: str, correlation: str) -> dict[str, Any]:
    """The token endpoint's 401 ``invalid_client`` answer, as Entra writes it."""
    return {
        "error": "invalid_client",
        "error_description": f"{reason}\r\nTrace ID: {uuid.uuid4()}\r\n"
        f"Correlation ID: {correlation}\r\nTimestamp: {dt.datetime.now(dt.UTC)}",
        "error_codes": [7000215],
        "correlation_id": correlation,
    }


# Token answers that are 200s but unusable, by fault: the fields they replace.
SHAPED_TOKENS: dict[str, dict[str, Any]] = {
    "expires_in_null": {"expires_in": None},
    "expires_in_text": {"expires_in": "abc"},
    "empty_token": {"access_token": ""},
    "crlf_token": {"access_token": "eyJhbGciOiJub25lIn0.eyJ0aWQiOiJ4In0.c2ln\r\nX-Injected: 1"},
}
