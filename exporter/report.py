"""Pure parsing: Graph's getCredentialUserRegistrationCount JSON → :class:`RegistrationReport`.

Microsoft's documentation spells the fields of one status entry three ways, and the parser
accepts each of them:

- API page example: ``{"userRegistrationStatus": "registered", "userRegistationCount": 23423}``
  (sic, "Registation"), inside a ``value`` collection;
- the same fields spelled correctly: ``userRegistrationStatus`` / ``userRegistrationCount``;
- the resource pages (English, and e.g. the zh-cn, ja-jp, de-de translations):
  ``{"registrationStatus": "registered", "registrationCount": 23423}``.

No I/O here, so the parser is easy to test and to fuzz: it returns a report or raises
:class:`ReportParseError`, nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

STATUS_FIELDS = ("userRegistrationStatus", "registrationStatus")
COUNT_FIELDS = ("userRegistrationCount", "userRegistationCount", "registrationCount")
_INTEGER_RE = re.compile(r"^\s*\d+\s*$")
MAX_STATUS_LENGTH = 200
MAX_STATUSES = 1000


class ReportParseError(ValueError):
    """The response does not hold a usable registration report."""


@dataclass(frozen=True, slots=True)
class RegistrationReport:
    """Users in a tenant, and users per credential registration status (Graph's spelling)."""

    total_users: int
    users_by_status: tuple[tuple[str, int], ...]
    # Users per registered authentication method (userRegistrationDetails only).
    users_by_method: tuple[tuple[str, int], ...] = ()

    def count(self, status: str) -> int | None:
        """Users with ``status``, or None when Graph did not report that status."""
        for name, value in self.users_by_status:
            if name == status:
                return value
        return None


def _as_count(value: Any, where: str) -> int:
    """Accept non-negative integers, integral floats and numeric strings ("23")."""
    if isinstance(value, bool):
        raise ReportParseError(f"{where} is a boolean, not a count")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and _INTEGER_RE.match(value)
    ):
        number = int(value)
    else:
        raise ReportParseError(f"{where} is not an integer count: {str(value)[:40]!r}")
    if number < 0:
        raise ReportParseError(f"{where} is negative")
    return number


def _first_present(entry: dict[str, Any], names: tuple[str, ...]) -> tuple[str, Any] | None:
    for name in names:
        if name in entry:
            return name, entry[name]
    lowered = {str(k).lower(): k for k in entry}
    for name in names:
        key = lowered.get(name.lower())
        if key is not None:
            return str(key), entry[key]
    return None


def _report_object(document: Any) -> dict[str, Any]:
    """The report object itself, from a ``value`` collection or a bare object."""
    if not isinstance(document, dict):
        raise ReportParseError("response is not a JSON object")
    if "totalUserCount" in document or "userRegistrationCounts" in document:
        return document
    if "value" in document:
        value = document["value"]
        if isinstance(value, dict):
            return value
        if not isinstance(value, list):
            raise ReportParseError("'value' is neither a list nor an object")
        reports = [item for item in value if isinstance(item, dict)]
        if len(reports) != 1 or len(value) != 1:
            raise ReportParseError(f"'value' holds {len(value)} items, expected one report")
        return reports[0]
    raise ReportParseError("response has no totalUserCount or userRegistrationCounts")


def parse_registration_report(document: Any) -> RegistrationReport:
    """Parse a decoded getCredentialUserRegistrationCount response."""
    report = _report_object(document)
    if "totalUserCount" not in report:
        raise ReportParseError("totalUserCount is missing")
    total = _as_count(report["totalUserCount"], "totalUserCount")
    entries = report.get("userRegistrationCounts")
    if entries is None:
        raise ReportParseError("userRegistrationCounts is missing")
    if not isinstance(entries, list):
        raise ReportParseError("userRegistrationCounts is not a list")
    if len(entries) > MAX_STATUSES:
        raise ReportParseError(f"userRegistrationCounts holds {len(entries)} entries")
    counts: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"userRegistrationCounts[{index}]"
        if not isinstance(entry, dict):
            raise ReportParseError(f"{where} is not an object")
        status_field = _first_present(entry, STATUS_FIELDS)
        count_field = _first_present(entry, COUNT_FIELDS)
        if status_field is None:
            raise ReportParseError(f"{where} has no registration status")
        if count_field is None:
            raise ReportParseError(f"{where} has no registration count")
        status = status_field[1]
        if not isinstance(status, str) or not status.strip() or len(status) > MAX_STATUS_LENGTH:
            raise ReportParseError(f"{where}.{status_field[0]} is not a usable status name")
        if status in counts:
            raise ReportParseError(f"{where}: status {status!r} appears twice")
        counts[status] = _as_count(count_field[1], f"{where}.{count_field[0]}")
    return RegistrationReport(total_users=total, users_by_status=tuple(counts.items()))


# userRegistrationDetails property → the registrationStatus it counts (dashboards keep working).
DETAIL_FLAGS = (
    ("isSsprRegistered", "registered"),
    ("isSsprEnabled", "enabled"),
    ("isSsprCapable", "capable"),
    ("isMfaRegistered", "mfaRegistered"),
    ("isMfaCapable", "mfaCapable"),
    ("isPasswordlessCapable", "passwordlessCapable"),
)
DETAIL_FIELDS = ("id", *(name for name, _ in DETAIL_FLAGS), "methodsRegistered")
MAX_METHODS = 200


class RegistrationDetailsCounter:
    """Counts users page by page, keeping only the counts (memory stays flat)."""

    def __init__(self) -> None:
        self.users = 0
        self.by_status = dict.fromkeys((status for _, status in DETAIL_FLAGS), 0)
        self.by_method: dict[str, int] = {}

    def add_page(self, document: Any) -> str | None:
        """Count one page of ``userRegistrationDetails``; return its ``@odata.nextLink``."""
        if not isinstance(document, dict) or not isinstance(document.get("value"), list):
            raise ReportParseError("userRegistrationDetails page has no 'value' list")
        for index, user in enumerate(document["value"]):
            if not isinstance(user, dict):
                raise ReportParseError(f"value[{index}] is not an object")
            self.users += 1
            for field, status in DETAIL_FLAGS:
                flag = user.get(field)
                if flag is True:
                    self.by_status[status] += 1
                elif flag not in (False, None):
                    raise ReportParseError(f"value[{index}].{field} is not a boolean")
            methods = user.get("methodsRegistered") or []
            if not isinstance(methods, list):
                raise ReportParseError(f"value[{index}].methodsRegistered is not a list")
            for method in set(methods):
                if not isinstance(method, str) or not method or len(method) > MAX_STATUS_LENGTH:
                    raise ReportParseError(f"value[{index}].methodsRegistered holds {method!r}")
                if method not in self.by_method and len(self.by_method) >= MAX_METHODS:
                    raise ReportParseError("more distinct authentication methods than expected")
                self.by_method[method] = self.by_method.get(method, 0) + 1
        next_link = document.get("@odata.nextLink")
        if next_link is not None and not isinstance(next_link, str):
            raise ReportParseError("@odata.nextLink is not a string")
        return next_link

    def report(self) -> RegistrationReport:
        """The counts as a report (users counted stand for the tenant's users)."""
        return RegistrationReport(
            total_users=self.users,
            users_by_status=tuple(self.by_status.items()),
            users_by_method=tuple(sorted(self.by_method.items())),
        )
