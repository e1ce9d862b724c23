"""Pure parsing: Graph's getCredentialUserRegistrationCount JSON → :class:`RegistrationReport`
(the successor's pages are counted in :mod:`exporter.reports.details`).

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
from typing import Any, TypeGuard, TypeVar

STATUS_FIELDS = ("userRegistrationStatus", "registrationStatus")
COUNT_FIELDS = ("userRegistrationCount", "userRegistationCount", "registrationCount")
# ASCII digits only: int() would also take Arabic-Indic or fullwidth digits, which no Graph
# count is.
_INTEGER_RE = re.compile(r"^\s*[0-9]{1,16}\s*$", re.ASCII)
MAX_STATUS_LENGTH = 200
# The largest count a float64 (what Prometheus stores) holds exactly.
MAX_COUNT = 2**53
MAX_STATUSES = 1000  # entries in one report: more is not a report
# Label values Graph chooses, kept per tenant as series of their own, at most (Graph sends a
# handful of each; more would only swell Prometheus): the rest are counted, not shown.
STATUS_SERIES = 32
REGISTRATION_STATUSES = ("registered", "enabled", "capable", "mfaRegistered", "unknownFutureValue")
_V = TypeVar("_V")


class ReportParseError(ValueError):
    """The response does not hold a usable registration report."""


@dataclass(frozen=True, slots=True)
class CoverageCounts:
    """One segment's or group's users, per status and per strength class (zeros included)."""

    users: int
    statuses: tuple[int, ...]  # in the order of details.SEGMENT_STATUSES
    strengths: tuple[int, ...]  # in the order of details.STRENGTHS


@dataclass(frozen=True, slots=True)
class SegmentReport:
    """Who is covered where it matters, counted from userRegistrationDetails."""

    # (user_type, role, counts) for each segment that has users.
    segments: tuple[tuple[str, str, CoverageCounts], ...] = ()
    # (group name, counts) for every configured group, users or not.
    groups: tuple[tuple[str, CoverageCounts], ...] = ()
    # Users by the first of systemPreferredAuthenticationMethods ("none" when empty).
    system_preferred: tuple[tuple[str, int], ...] = ()
    # Newest lastUpdatedDateTime in the report, Unix time (None: no row had one).
    data_timestamp: float | None = None
    # Phone-only users per SMS/voice retirement date (None: readiness is off for the tenant).
    phone_only: tuple[tuple[str, int], ...] | None = None
    # MFA enforcement, for each segment: (user_type, role, users per class and isMfaRegistered,
    # as exporter.reports.enforcement.EnforcementTally counts them); None: not counted.
    enforcement: tuple[tuple[str, str, tuple[int, ...]], ...] | None = None


@dataclass(frozen=True, slots=True)
class RegistrationReport:
    """Users in a tenant, and users per credential registration status (Graph's spelling)."""

    total_users: int
    users_by_status: tuple[tuple[str, int], ...]
    # Users per registered authentication method (userRegistrationDetails only).
    users_by_method: tuple[tuple[str, int], ...] = ()
    # The segments (userRegistrationDetails only).
    segments: SegmentReport | None = None
    # Per label ("registrationStatus", "method", "user_type", "system_preferred"): distinct
    # values Graph sent past that label's cap, counted but given no series.
    dropped_labels: tuple[tuple[str, int], ...] = ()


def capped(
    pairs: tuple[tuple[str, _V], ...], cap: int, known: tuple[str, ...] = ()
) -> tuple[tuple[tuple[str, _V], ...], int]:
    """The first ``cap`` of ``pairs`` (those whose value is in ``known`` first), in their
    order, and how many were left out."""
    if len(pairs) <= cap:
        return pairs, 0
    ranked = sorted(range(len(pairs)), key=lambda i: (pairs[i][0] not in known, i))
    kept = sorted(ranked[:cap])
    return tuple(pairs[i] for i in kept), len(pairs) - cap


def _as_count(value: Any, where: str) -> int:
    """Accept non-negative integers, integral floats and numeric strings ("23") up to 2**53."""
    if isinstance(value, bool):
        raise ReportParseError(f"{where} is a boolean, not a count")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer() and abs(value) <= MAX_COUNT) or (
        isinstance(value, str) and _INTEGER_RE.match(value)
    ):
        number = int(value)
    else:
        raise ReportParseError(f"{where} is not an integer count: {_quote(value)}")
    if number < 0:
        raise ReportParseError(f"{where} is negative")
    if number > MAX_COUNT:
        raise ReportParseError(f"{where} is larger than a float64 holds exactly (2**53)")
    return number


def _quote(value: Any) -> str:
    """A short, printable rendering of a bad value for an error message."""
    text = value if isinstance(value, str) else type(value).__name__
    return ascii(text[:40])


def usable_label(value: Any) -> TypeGuard[str]:
    """True for a string that may become a label value: 1 to 200 printable characters.

    Refuses what would break the exposition for everyone (a lone surrogate cannot be encoded)
    or a reader of it (control characters).
    """
    return isinstance(value, str) and 0 < len(value) <= MAX_STATUS_LENGTH and value.isprintable()


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
        if not usable_label(status) or not status.strip():
            raise ReportParseError(f"{where}.{status_field[0]} is not a usable status name")
        if status in counts:
            raise ReportParseError(f"{where}: status {status!r} appears twice")
        counts[status] = _as_count(count_field[1], f"{where}.{count_field[0]}")
    statuses, dropped = capped(tuple(counts.items()), STATUS_SERIES, REGISTRATION_STATUSES)
    return RegistrationReport(
        total_users=total,
        users_by_status=statuses,
        dropped_labels=(("registrationStatus", dropped),) if dropped else (),
    )
