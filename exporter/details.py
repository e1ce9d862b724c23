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
from typing import Annotated, Any, NamedTuple, TypeVar

import msgspec

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
NO_METHOD = "none"  # system-preferred method of a user with none
NULL_USER_TYPE = "unknown"  # userType sent as null
MAX_METHODS = 200
MAX_USER_TYPES = 20
_ROW = 1 + len(SEGMENT_STATUSES) + len(STRENGTHS)  # users, statuses, strengths


def parse_object_id(value: Any, index: int, field: str = "id") -> int:
    """A directory object ID (a GUID) as a 128-bit int: a third of a string's memory.

    ``index`` and ``field`` say where, in the refusal only (this runs once per row).
    """
    if isinstance(value, str) and len(value) == 36:
        try:
            return int(value.replace("-", ""), 16)
        except ValueError:
            pass
    raise ReportParseError(f"value[{index}].{field} is not an object ID: {str(value)[:40]!r}")


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


class DetailsRow(msgspec.Struct, gc=False):
    """One user of ``userRegistrationDetails``: the counted fields, typed.

    msgspec checks every type while it decodes (a JSON 1 is not a boolean, a method is a
    string); properties not listed here are skipped, as Graph adds new ones.
    """

    id: str | None = None
    isSsprRegistered: bool | None = None
    isSsprEnabled: bool | None = None
    isSsprCapable: bool | None = None
    isMfaRegistered: bool | None = None
    isMfaCapable: bool | None = None
    isPasswordlessCapable: bool | None = None
    methodsRegistered: list[str] | None = None
    userType: str | None = None
    isAdmin: bool | None = None
    systemPreferredAuthenticationMethods: list[str] | None = None
    lastUpdatedDateTime: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class DetailsPage(msgspec.Struct, gc=False):
    """One page of ``userRegistrationDetails``."""

    value: list[DetailsRow]
    next_link: str | None = msgspec.field(default=None, name="@odata.nextLink")


class Page(NamedTuple):
    """What a page told the walk along ``@odata.nextLink``: the next link and its rows."""

    next_link: str | None
    rows: int


_DECODER = msgspec.json.Decoder(DetailsPage)
_Page = TypeVar("_Page", bound=msgspec.Struct)
# (user type, role, the six flags, strength) of a row: what it adds to its segment.
_RowKey = tuple[str, str, tuple[bool, ...], int]


def decode_details_page(page: Any) -> DetailsPage:
    """A page of ``userRegistrationDetails`` (see :func:`_decode_page`)."""
    return _decode_page(page, _DECODER, DetailsPage)


def _decode_page(page: Any, decoder: msgspec.json.Decoder[_Page], kind: type[_Page]) -> _Page:
    """A page from Graph's bytes (or, in tests, an already-decoded document), its types
    checked; what does not fit is a ReportParseError naming where."""
    try:
        if isinstance(page, bytes | bytearray | memoryview):
            return decoder.decode(page)
        return msgspec.convert(page, kind)
    except msgspec.ValidationError as err:
        raise ReportParseError(_where_first(str(err))) from None
    except msgspec.DecodeError:
        raise ReportParseError("the page is not JSON") from None


def _where_first(message: str) -> str:
    """msgspec's ``Expected X, got Y - at `$.value[3].isAdmin``` as ``value[3].isAdmin:
    expected X, got Y``."""
    text, _, where = message.partition(" - at `$")
    text = text[:1].lower() + text[1:]
    return f"{where.rstrip('`').lstrip('.')}: {text}" if where else text


class RegistrationDetailsCounter:
    """Counts users page by page into segments; keeps only counts and the given ID sets.

    Per row, only what varies is looked at: the flags, user type and role, strength, methods
    and preferred method become a few tuple keys counted per page, then folded into the
    segments. Labels (methods, user types, preferred methods) are checked once each, the first
    time they are seen, and bounded in number.
    """

    def __init__(self, context: SegmentContext | None = None) -> None:
        self._context = context or SegmentContext()
        self._segments: dict[tuple[str, str], list[int]] = {}
        self._groups = [[0] * _ROW for _ in self._context.groups]
        self._listed = _listed_ids(self._context)
        self._by_method: dict[str, int] = {}
        self._preferred: dict[str, int] = {}
        self._ranks: dict[str, int] = {}  # every method seen (and checked), with its strength
        self._user_types: set[str] = {NULL_USER_TYPE}
        self._newest: datetime | None = None

    def add_page(self, page: Any) -> Page:
        """Count one page of ``userRegistrationDetails`` (its JSON bytes)."""
        rows = decode_details_page(page)
        tally: dict[_RowKey, int] = {}
        group_tally: dict[tuple[int, tuple[bool, ...], int], int] = {}
        method_tally: dict[tuple[str, ...], int] = {}
        for index, user in enumerate(rows.value):
            methods = user.methodsRegistered or ()
            if not self._ranks.keys() >= set(methods):
                self._learn_methods(methods, index)
            strength = min(map(self._ranks.__getitem__, methods), default=NO_STRENGTH)
            flags = (
                user.isSsprRegistered is True,
                user.isSsprEnabled is True,
                user.isSsprCapable is True,
                user.isMfaRegistered is True,
                user.isMfaCapable is True,
                user.isPasswordlessCapable is True,
            )
            role, memberships = self._role(user, index)
            key = (self._user_type(user.userType, index), role, flags, strength)
            tally[key] = tally.get(key, 0) + 1
            for group in memberships:
                group_key = (group, flags, strength)
                group_tally[group_key] = group_tally.get(group_key, 0) + 1
            if methods:
                combo = tuple(methods)
                method_tally[combo] = method_tally.get(combo, 0) + 1
            self._count_preferred(user.systemPreferredAuthenticationMethods, index)
            stamp = user.lastUpdatedDateTime
            if stamp is not None and (self._newest is None or stamp > self._newest):
                self._newest = stamp
        self._fold(tally, group_tally, method_tally)
        return Page(rows.next_link, len(rows.value))

    def _role(self, user: DetailsRow, index: int) -> tuple[str, tuple[int, ...]]:
        """The row's role, and the configured groups (by index) it belongs to."""
        if not self._context.needs_ids:
            return ("admin" if user.isAdmin else "user"), ()
        user_id = parse_object_id(user.id, index)
        privileged, memberships = self._listed.get(user_id, _NOT_LISTED)
        if privileged:
            return "privileged_admin", memberships
        return ("admin" if user.isAdmin else "user"), memberships

    def _learn_methods(self, methods: Iterable[str], index: int) -> None:
        for method in methods:
            if method in self._ranks:
                continue
            if not usable_label(method):
                raise ReportParseError(f"value[{index}].methodsRegistered holds {method[:40]!a}")
            if len(self._ranks) >= MAX_METHODS:
                raise ReportParseError("more distinct authentication methods than expected")
            self._ranks[method] = strength_of((method,))

    def _user_type(self, value: str | None, index: int) -> str:
        if value is None:
            return NULL_USER_TYPE
        if value in self._user_types:
            return value
        if not usable_label(value):
            raise ReportParseError(f"value[{index}].userType is not a usable user type")
        if len(self._user_types) > MAX_USER_TYPES:
            raise ReportParseError("more distinct user types than expected")
        self._user_types.add(value)
        return value

    def _count_preferred(self, value: list[str] | None, index: int) -> None:
        first = value[0] if value else NO_METHOD
        if first not in self._preferred:
            if not usable_label(first):
                raise ReportParseError(
                    f"value[{index}].systemPreferredAuthenticationMethods holds {first[:40]!a}"
                )
            if len(self._preferred) >= MAX_METHODS:
                raise ReportParseError("more distinct system-preferred methods than expected")
            self._preferred[first] = 0
        self._preferred[first] += 1

    def _fold(
        self,
        tally: dict[_RowKey, int],
        group_tally: dict[tuple[int, tuple[bool, ...], int], int],
        method_tally: dict[tuple[str, ...], int],
    ) -> None:
        """Add one page's tallies to the counts."""
        for (user_type, role, flags, strength), users in tally.items():
            row = self._segments.get((user_type, role))
            if row is None:
                row = self._segments[(user_type, role)] = [0] * _ROW
            _add(row, flags, strength, users)
        for (group, flags, strength), users in group_tally.items():
            _add(self._groups[group], flags, strength, users)
        for combo, users in method_tally.items():
            for method in set(combo):  # a method listed twice is still one user
                self._by_method[method] = self._by_method.get(method, 0) + users

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
            data_timestamp=None if self._newest is None else self._newest.timestamp(),
        )
        return RegistrationReport(
            total_users=totals[0],
            users_by_status=tuple(zip(SEGMENT_STATUSES, totals[1:7], strict=True)),
            users_by_method=tuple(sorted(self._by_method.items())),
            segments=segments,
        )


_NOT_LISTED: tuple[bool, tuple[int, ...]] = (False, ())


def _listed_ids(context: SegmentContext) -> dict[int, tuple[bool, tuple[int, ...]]]:
    """Every ID of the context's sets → (privileged, the groups it is in): one look-up a row
    instead of one test per set. The (few) distinct values are shared, the IDs are the sets'."""
    listed: dict[int, tuple[bool, tuple[int, ...]]] = {}
    shared: dict[tuple[bool, tuple[int, ...]], tuple[bool, tuple[int, ...]]] = {}
    for number, (_, members) in enumerate(context.groups):
        for user_id in members:
            privileged, groups = listed.get(user_id, _NOT_LISTED)
            value = (privileged, (*groups, number))
            listed[user_id] = shared.setdefault(value, value)
    for user_id in context.privileged:
        value = (True, listed.get(user_id, _NOT_LISTED)[1])
        listed[user_id] = shared.setdefault(value, value)
    return listed


def _add(row: list[int], flags: tuple[bool, ...], strength: int, users: int) -> None:
    row[0] += users
    for i, flag in enumerate(flags, 1):
        if flag:
            row[i] += users
    row[1 + len(flags) + strength] += users


def _counts(row: list[int]) -> CoverageCounts:
    statuses = len(SEGMENT_STATUSES)
    return CoverageCounts(
        users=row[0],
        statuses=tuple(row[1 : 1 + statuses]),
        strengths=tuple(row[1 + statuses :]),
    )


class DirectoryObject(msgspec.Struct, gc=False):
    """A directory object as member lists and expanded principals show it."""

    id: str | None = None
    kind: str | None = msgspec.field(default=None, name="@odata.type")


class DirectoryItem(msgspec.Struct, gc=False):
    """A member (``id``, ``@odata.type``) or a role assignment (``principal``/``principalId``)."""

    id: str | None = None
    kind: str | None = msgspec.field(default=None, name="@odata.type")
    principal: DirectoryObject | None = None
    principalId: str | None = None


class DirectoryPage(msgspec.Struct, gc=False):
    value: list[DirectoryItem]
    next_link: str | None = msgspec.field(default=None, name="@odata.nextLink")


_DIRECTORY_DECODER = msgspec.json.Decoder(DirectoryPage)


class DirectoryIdCollector:
    """IDs of users (and of the groups to expand) from pages of directory objects.

    Role assignments list principals (expanded, or as ``principalId``); group member lists
    list objects. Service principals and devices are skipped; objects without a type are kept,
    which is harmless: only IDs the report lists as users are ever counted.
    """

    def __init__(self) -> None:
        self.users: set[int] = set()
        self.groups: set[int] = set()

    def add_page(self, page: Any, principals: bool) -> Page:
        """Collect one page (its JSON bytes; ``principals``: role assignments)."""
        document = _decode_page(page, _DIRECTORY_DECODER, DirectoryPage)
        for index, item in enumerate(document.value):
            if not principals:
                self._add_object(item.id, item.kind, index, "id")
            elif item.principal is not None:
                principal = item.principal
                self._add_object(principal.id, principal.kind, index, "principal.id")
            else:
                self.users.add(parse_object_id(item.principalId, index, "principalId"))
        return Page(document.next_link, len(document.value))

    def _add_object(self, object_id: str | None, kind: str | None, index: int, field: str) -> None:
        number = parse_object_id(object_id, index, field)
        if kind == "#microsoft.graph.group":
            self.groups.add(number)
        elif kind in (None, "#microsoft.graph.user"):
            self.users.add(number)
