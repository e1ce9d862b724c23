"""Pure counting: pages of ``userRegistrationDetails`` (and of the ID look-ups segments need) →
one :class:`~exporter.report.RegistrationReport` with its segments.

Graph's own breakdowns (``usersRegisteredByFeature``) are delegated-only, so the counts per user
type, role, group and method strength are made here, row by row, in the same pass that counts
the tenant. Memory holds only counts (bounded by the number of segments) and the ID sets of
privileged admins and configured groups, each ID a 128-bit int. No I/O: everything raises
:class:`~exporter.report.ReportParseError` or returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exporter.report import (
    CoverageCounts,
    RegistrationReport,
    ReportParseError,
    SegmentReport,
    usable_label,
)

# userRegistrationDetails property → the registrationStatus it counts (dashboards keep working).
DETAIL_FLAGS = (
    ("isSsprRegistered", "registered"),
    ("isSsprEnabled", "enabled"),
    ("isSsprCapable", "capable"),
    ("isMfaRegistered", "mfaRegistered"),
    ("isMfaCapable", "mfaCapable"),
    ("isPasswordlessCapable", "passwordlessCapable"),
)
SEGMENT_STATUSES = tuple(status for _, status in DETAIL_FLAGS)
DETAIL_FIELDS = (
    "id",
    *(name for name, _ in DETAIL_FLAGS),
    "methodsRegistered",
    "userType",
    "isAdmin",
    "systemPreferredAuthenticationMethods",
    "lastUpdatedDateTime",
)
# Method strength classes, strongest first; each user counts once, at the strongest.
STRENGTHS = ("phishing_resistant", "passwordless", "mfa", "phone", "unclassified", "none")
_STRENGTH_METHODS = (
    (
        "fido2SecurityKey",
        "windowsHelloForBusiness",
        "passKeyDeviceBound",
        "passKeyDeviceBoundAuthenticator",
        "passKeyDeviceBoundWindowsHello",
        "passKeySynced",
        "macOsSecureEnclaveKey",
    ),
    ("microsoftAuthenticatorPasswordless",),
    ("microsoftAuthenticatorPush", "softwareOneTimePasscode", "hardwareOneTimePasscode"),
    ("mobilePhone", "alternateMobilePhone", "officePhone"),
    (),
    ("email", "securityQuestion", "temporaryAccessPass", "appPassword"),
)
METHOD_STRENGTH = {m: rank for rank, methods in enumerate(_STRENGTH_METHODS) for m in methods}
UNCLASSIFIED = STRENGTHS.index("unclassified")
NO_STRENGTH = STRENGTHS.index("none")
ROLES = ("privileged_admin", "admin", "user")
NO_METHOD = "none"  # system-preferred method of a user with none
NULL_USER_TYPE = "unknown"  # userType sent as null
MAX_METHODS = 200
MAX_USER_TYPES = 20
_ROW = 1 + len(SEGMENT_STATUSES) + len(STRENGTHS)  # users, statuses, strengths


def parse_object_id(value: Any, where: str) -> int:
    """A directory object ID (a GUID) as a 128-bit int: a third of a string's memory."""
    if isinstance(value, str) and len(value) == 36:
        try:
            return int(value.replace("-", ""), 16)
        except ValueError:
            pass
    raise ReportParseError(f"{where} is not an object ID: {str(value)[:40]!r}")


def strength_of(methods: Iterable[str]) -> int:
    """Index in :data:`STRENGTHS` of the strongest of ``methods``."""
    best = NO_STRENGTH
    for method in methods:
        rank = METHOD_STRENGTH.get(method, UNCLASSIFIED)
        best = min(best, rank)
    return best


@dataclass(frozen=True, slots=True)
class SegmentContext:
    """The ID sets a report pass needs: privileged admins, and each configured group's users."""

    privileged: frozenset[int] = frozenset()
    groups: tuple[tuple[str, frozenset[int]], ...] = ()

    @property
    def needs_ids(self) -> bool:
        return bool(self.privileged) or bool(self.groups)


class RegistrationDetailsCounter:
    """Counts users page by page into segments; keeps only counts and the given ID sets."""

    def __init__(self, context: SegmentContext | None = None) -> None:
        self._context = context or SegmentContext()
        self._segments: dict[tuple[str, str], list[int]] = {}
        self._groups = [[0] * _ROW for _ in self._context.groups]
        self._by_method: dict[str, int] = {}
        self._preferred: dict[str, int] = {}
        self._newest: float | None = None
        self._pages = 0

    def add_page(self, document: Any) -> str | None:
        """Count one page of ``userRegistrationDetails``; return its ``@odata.nextLink``."""
        if not isinstance(document, dict) or not isinstance(document.get("value"), list):
            raise ReportParseError("userRegistrationDetails page has no 'value' list")
        for index, user in enumerate(document["value"]):
            if not isinstance(user, dict):
                raise ReportParseError(f"value[{index}] is not an object")
            self._count(user, f"value[{index}]")
        self._pages += 1
        return next_link(document)

    def _count(self, user: dict[str, Any], where: str) -> None:
        flags = [_flag(user.get(field), where, field) for field, _ in DETAIL_FLAGS]
        methods = _methods(user.get("methodsRegistered"), where)
        strength = strength_of(methods)
        user_id = parse_object_id(user.get("id"), f"{where}.id") if self._context.needs_ids else 0
        if user_id in self._context.privileged:
            role = "privileged_admin"
        else:
            role = "admin" if _flag(user.get("isAdmin"), where, "isAdmin") else "user"
        key = (self._user_type(user.get("userType"), where), role)
        row = self._segments.get(key)
        if row is None:
            row = self._segments[key] = [0] * _ROW
        _add(row, flags, strength)
        for (_, members), group_row in zip(self._context.groups, self._groups, strict=True):
            if user_id in members:
                _add(group_row, flags, strength)
        for method in methods:
            self._by_method[method] = self._by_method.get(method, 0) + 1
        if len(self._by_method) > MAX_METHODS:
            raise ReportParseError("more distinct authentication methods than expected")
        self._count_preferred(user.get("systemPreferredAuthenticationMethods"), where)
        self._note_updated(user.get("lastUpdatedDateTime"), where)

    def _user_type(self, value: Any, where: str) -> str:
        if value is None:
            return NULL_USER_TYPE
        if not usable_label(value):
            raise ReportParseError(f"{where}.userType is not a usable user type")
        if len(self._segments) >= MAX_USER_TYPES * len(ROLES) and all(
            key[0] != value for key in self._segments
        ):
            raise ReportParseError("more distinct user types than expected")
        return value

    def _count_preferred(self, value: Any, where: str) -> None:
        if value is None or value == []:
            first = NO_METHOD
        elif isinstance(value, list) and usable_label(value[0]):
            first = value[0]
        else:
            raise ReportParseError(f"{where}.systemPreferredAuthenticationMethods is not a list")
        if first not in self._preferred and len(self._preferred) >= MAX_METHODS:
            raise ReportParseError("more distinct system-preferred methods than expected")
        self._preferred[first] = self._preferred.get(first, 0) + 1

    def _note_updated(self, value: Any, where: str) -> None:
        if value is None:
            return
        try:
            when = datetime.fromisoformat(value).timestamp() if isinstance(value, str) else None
        except ValueError:
            when = None
        if when is None:
            raise ReportParseError(f"{where}.lastUpdatedDateTime is not a date and time")
        if self._newest is None or when > self._newest:
            self._newest = when

    def report(self) -> RegistrationReport:
        """The counts as a report (users counted stand for the tenant's users)."""
        totals = [0] * _ROW
        for row in self._segments.values():
            for i, value in enumerate(row):
                totals[i] += value
        segments = SegmentReport(
            segments=tuple(
                (user_type, role, _counts(row))
                for (user_type, role), row in sorted(self._segments.items())
            ),
            groups=tuple(
                (name, _counts(row))
                for (name, _), row in zip(self._context.groups, self._groups, strict=True)
            ),
            system_preferred=tuple(sorted(self._preferred.items())),
            data_timestamp=self._newest,
        )
        return RegistrationReport(
            total_users=totals[0],
            users_by_status=tuple(zip(SEGMENT_STATUSES, totals[1:7], strict=True)),
            users_by_method=tuple(sorted(self._by_method.items())),
            segments=segments,
        )


def _flag(value: Any, where: str, field: str) -> int:
    """1 for true; 0 for false or null (Graph sends null for some users)."""
    if value is True:
        return 1
    if value is False or value is None:
        return 0
    raise ReportParseError(f"{where}.{field} is not a boolean")


def _methods(value: Any, where: str) -> set[str]:
    if value is None:
        return set()
    if not isinstance(value, list):
        raise ReportParseError(f"{where}.methodsRegistered is not a list")
    for method in value:
        if not usable_label(method):
            raise ReportParseError(f"{where}.methodsRegistered holds {str(method)[:40]!a}")
    return set(value)


def _add(row: list[int], flags: list[int], strength: int) -> None:
    row[0] += 1
    for i, flag in enumerate(flags, 1):
        row[i] += flag
    row[1 + len(flags) + strength] += 1


def _counts(row: list[int]) -> CoverageCounts:
    statuses = len(SEGMENT_STATUSES)
    return CoverageCounts(
        users=row[0],
        statuses=tuple(row[1 : 1 + statuses]),
        strengths=tuple(row[1 + statuses :]),
    )


def next_link(document: dict[str, Any]) -> str | None:
    """A page's ``@odata.nextLink``, or None on the last page."""
    link = document.get("@odata.nextLink")
    if link is not None and not isinstance(link, str):
        raise ReportParseError("@odata.nextLink is not a string")
    return link


class DirectoryIdCollector:
    """IDs of users (and of the groups to expand) from pages of directory objects.

    Role assignments list principals (expanded, or as ``principalId``); group member lists
    list objects. Service principals and devices are skipped; objects without a type are kept,
    which is harmless: only IDs the report lists as users are ever counted.
    """

    def __init__(self) -> None:
        self.users: set[int] = set()
        self.groups: set[int] = set()

    def add_page(self, document: Any, principals: bool) -> str | None:
        """Collect one page (``principals``: role assignments); return its next link."""
        if not isinstance(document, dict) or not isinstance(document.get("value"), list):
            raise ReportParseError("page has no 'value' list")
        for index, item in enumerate(document["value"]):
            where = f"value[{index}]"
            if not isinstance(item, dict):
                raise ReportParseError(f"{where} is not an object")
            if principals:
                self._add_principal(item, where)
            else:
                self._add_object(item, where)
        return next_link(document)

    def _add_principal(self, item: dict[str, Any], where: str) -> None:
        principal = item.get("principal")
        if isinstance(principal, dict):
            self._add_object(principal, f"{where}.principal")
        else:
            self.users.add(parse_object_id(item.get("principalId"), f"{where}.principalId"))

    def _add_object(self, item: dict[str, Any], where: str) -> None:
        kind = item.get("@odata.type")
        object_id = parse_object_id(item.get("id"), f"{where}.id")
        if kind == "#microsoft.graph.group":
            self.groups.add(object_id)
        elif kind in (None, "#microsoft.graph.user"):
            self.users.add(object_id)
