"""The one place where a failed poll is mapped to a ``result`` class of the contract.

Result classes: success, auth_error, throttled, http_error, timeout, network_error, parse_error,
and internal_error: an exception raised by the exporter's own code (a bug), never filed as Graph's
``parse_error``.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

SUCCESS = "success"
AUTH_ERROR = "auth_error"
THROTTLED = "throttled"
HTTP_ERROR = "http_error"
TIMEOUT = "timeout"
NETWORK_ERROR = "network_error"
PARSE_ERROR = "parse_error"
INTERNAL_ERROR = "internal_error"
CONSENT_REQUIRED = "consent_required"
RESULTS = (
    SUCCESS,
    AUTH_ERROR,
    THROTTLED,
    HTTP_ERROR,
    TIMEOUT,
    NETWORK_ERROR,
    PARSE_ERROR,
    INTERNAL_ERROR,
    CONSENT_REQUIRED,
)
# Worst first: a tenant's poll counts by its worst collector result. A bug outranks what Graph
# said; credentials outrank a bad answer; an answer outranks the network; slowing down is last.
_SEVERITY = (
    INTERNAL_ERROR,
    CONSENT_REQUIRED,
    AUTH_ERROR,
    PARSE_ERROR,
    HTTP_ERROR,
    TIMEOUT,
    NETWORK_ERROR,
    THROTTLED,
)
# The token endpoint's codes for an app that is not consented in the tenant: no service
# principal there (AADSTS700016), or no admin consent (AADSTS65001).
CONSENT_CODES = ("AADSTS700016", "AADSTS65001")

MAX_MESSAGE = 300
MAX_FIELD = 100


def bounded(text: str, limit: int) -> str:
    """``text`` on one printable line, cut to ``limit`` characters (with an ellipsis)."""
    line = "".join(c if c.isprintable() else " " for c in str(text)[: limit + 1])
    return line if len(line) <= limit else line[: limit - 1] + "…"


# OAuth error codes from the token endpoint that mean "the identity provider is busy",
# not "your credentials are wrong".
_TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


@dataclass(frozen=True, slots=True)
class PollFailure:
    """Why a poll failed: its result class and what a person needs to act on it."""

    result: str
    message: str
    http_status: int | None = None
    error_code: str | None = None
    request_id: str | None = None
    # Seconds Graph asked us to wait (its Retry-After), when the failure is such a refusal.
    retry_after: float | None = None

    def __post_init__(self) -> None:
        # Whatever Graph or the identity provider sent is bounded here, where every failure
        # is made: a tenant's recent polls and log tail hold a few of these each.
        object.__setattr__(self, "message", bounded(self.message, MAX_MESSAGE))
        if self.error_code is not None:
            object.__setattr__(self, "error_code", bounded(self.error_code, MAX_FIELD))
        if self.request_id is not None:
            object.__setattr__(self, "request_id", bounded(self.request_id, MAX_FIELD))

    def log_fields(self) -> dict[str, object]:
        """Fields for the poll's log line (only those that are known)."""
        fields: dict[str, object] = {"result": self.result}
        if self.http_status is not None:
            fields["http_status"] = self.http_status
        if self.error_code:
            fields["error_code"] = self.error_code
        if self.request_id:
            fields["request_id"] = self.request_id
        return fields


def classify_http_status(status: int) -> str:
    """Result class of a final (no longer retried) non-2xx Graph answer."""
    if status in (401, 403):
        return AUTH_ERROR
    if status == 429:
        return THROTTLED
    return HTTP_ERROR


def classify_transport_error(error: BaseException) -> str:
    """Result class of an exception raised while talking HTTP."""
    if isinstance(error, httpx.TimeoutException | TimeoutError):
        return TIMEOUT
    return NETWORK_ERROR


def unexpected_failure(error: BaseException, otherwise: str = INTERNAL_ERROR) -> PollFailure:
    """The failure of a poll that raised what nothing below expected: connection trouble as
    such, anything else as ``otherwise`` — ``internal_error`` (the exporter's own bug, not
    Graph's answer), or ``parse_error`` where a library (MSAL) raised on an answer it was
    handed."""
    if isinstance(error, httpx.HTTPError | OSError | TimeoutError):
        result = classify_transport_error(error)
    else:
        result = otherwise
    return PollFailure(result, f"unexpected failure: {describe_error(error)}")


def worst_result(results: list[str] | tuple[str, ...]) -> str:
    """The worst of ``results`` (:data:`SUCCESS` when all succeeded, or there are none)."""
    for result in _SEVERITY:
        if result in results:
            return result
    return SUCCESS


def classify_oauth_error(error: str | None, description: str = "", codes: object = None) -> str:
    """Result class of an OAuth error answer from the token endpoint (its ``error``,
    ``error_description`` and ``error_codes``)."""
    if error in _TRANSIENT_OAUTH_ERRORS:
        return NETWORK_ERROR
    numbers = {f"AADSTS{c}" for c in codes} if isinstance(codes, list) else set()
    if any(code in description or code in numbers for code in CONSENT_CODES):
        return CONSENT_REQUIRED
    return AUTH_ERROR


def admin_consent_url(authority_host: str, tenant_id: str, client_id: str) -> str:
    """Where an administrator of ``tenant_id`` consents to the app (and so creates its service
    principal there): every application permission the registration asks for."""
    return f"{authority_host}/{tenant_id}/adminconsent?client_id={client_id}"


def is_retryable_status(status: int) -> bool:
    """True for answers worth retrying inside the same poll."""
    return status == 429 or 500 <= status <= 599


def describe_error(error: BaseException) -> str:
    """``Type: first line of the message`` (e.g. the TLS verification failure), cut short."""
    text = str(error).splitlines()[0][:160] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
