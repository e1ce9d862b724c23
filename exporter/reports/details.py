"""Pure counting: pages of ``userRegistrationDetails`` → one
:class:`~exporter.reports.registration.RegistrationReport` with its segments.

Graph's own breakdowns (``usersRegisteredByFeature``) are delegated-only, so the counts per user
type, role, group and method strength are made here, in the same pass that counts the tenant.
Memory holds only counts (bounded by the number of segments) and the ID sets of privileged
admins and configured groups (:mod:`exporter.reports.directory`, each ID a 128-bit int). No I/O:
everything raises :class:`~exporter.reports.registration.ReportParseError` or returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import attrgetter, contains
from types import MappingProxyType
from typing import Annotated, Any

import msgspec

from exporter.reports.directory import Page, decode_page, first_bad_id, object_id_keys
from exporter.reports.registration import (
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
METHOD_STRENGTH = MappingProxyType(
    {m: rank for rank, methods in enumerate(_STRENGTH_METHODS) for m in methods}
)
PHONE = STRENGTHS.index("phone")
UNCLASSIFIED = STRENGTHS.index("unclassified")
NO_STRENGTH = STRENGTHS.index("none")
NO_METHOD = "none"  # system-preferred method of a user with none
NULL_USER_TYPE = "unknown"  # userType sent as null
MAX_METHODS = 200
MAX_USER_TYPES = 20
_ROW = 1 + len(SEGMENT_STATUSES) + len(STRENGTHS)  # users, statuses, strengths


def strength_of(methods: Iterable[str]) -> int:
    """Index in :data:`STRENGTHS` of the strongest of ``methods``."""
    best = NO_STRENGTH
    for method in methods:
        rank = METHOD_STRENGTH.get(method, UNCLASSIFIED)
        best = min(best, rank)
    return best


# Microsoft retires its own SMS and voice for MFA and SSPR on these dates (00:00 UTC, Unix
# time): everyone on the first, except Global Administrators and external (B2B) users, who
# follow on the second. Microsoft Learn, "Passkeys by default and retirement of
# Microsoft-provided SMS and voice authentication" (FAQ, 2026-09-23); global cloud only.
RETIREMENT_GENERAL = ("2027-02-01", 1_801_440_000)
RETIREMENT_LATE = ("2027-07-01", 1_814_400_000)
RETIREMENTS = (RETIREMENT_GENERAL, RETIREMENT_LATE)
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
EXTERNAL_MARK = "#EXT#"  # in the userPrincipalName of every B2B account


@dataclass(frozen=True, slots=True)
class SegmentContext:
    """The ID sets a report pass needs: privileged admins, each configured group's users, and,
    for SMS/voice retirement readiness, Global Administrators (None: readiness off)."""

    privileged: frozenset[int] = frozenset()
    groups: tuple[tuple[str, frozenset[int]], ...] = ()
    global_admins: frozenset[int] | None = None

    @property
    def readiness(self) -> bool:
        return self.global_admins is not None

    @property
    def needs_ids(self) -> bool:
        return bool(self.privileged) or bool(self.groups) or bool(self.global_admins)


class DetailsRow(msgspec.Struct, gc=False):
    """One user of ``userRegistrationDetails``: the counted fields, typed.

    msgspec checks every type while it decodes (a JSON 1 is not a boolean, a method is a
    string); properties not listed here are skipped, as Graph adds new ones. The ``id`` is
    read only when segments need it (:class:`DetailsRowWithId`).
    """

    isSsprRegistered: bool | None = None
    isSsprEnabled: bool | None = None
    isSsprCapable: bool | None = None
    isMfaRegistered: bool | None = None
    isMfaCapable: bool | None = None
    isPasswordlessCapable: bool | None = None
    methodsRegistered: tuple[str, ...] | None = None
    userType: str | None = None
    isAdmin: bool | None = None
    systemPreferredAuthenticationMethods: tuple[str, ...] | None = None
    lastUpdatedDateTime: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class DetailsRowWithId(DetailsRow, gc=False):
    """A row with its ``id``, for privileged admins and groups."""

    id: str | None = None


class DetailsRowWithUpn(DetailsRowWithId, gc=False):
    """A row with its ``id`` and ``userPrincipalName``, for retirement readiness."""

    userPrincipalName: str | None = None


class DetailsPage(msgspec.Struct, gc=False):
    """One page of ``userRegistrationDetails``."""

    value: list[DetailsRow]
    next_link: str | None = msgspec.field(default=None, name="@odata.nextLink")


class DetailsPageWithIds(msgspec.Struct, gc=False):
    """One page of ``userRegistrationDetails``, each row with its ``id``."""

    value: list[DetailsRowWithId]
    next_link: str | None = msgspec.field(default=None, name="@odata.nextLink")


class DetailsPageWithUpns(msgspec.Struct, gc=False):
    """One page of ``userRegistrationDetails``, each row with ``id`` and ``userPrincipalName``."""

    value: list[DetailsRowWithUpn]
    next_link: str | None = msgspec.field(default=None, name="@odata.nextLink")


_DECODER = msgspec.json.Decoder(DetailsPage)
_DECODER_WITH_IDS = msgspec.json.Decoder(DetailsPageWithIds)
_DECODER_WITH_UPNS = msgspec.json.Decoder(DetailsPageWithUpns)
# A row's shape: the six flags as sent (true, false or null), userType and isAdmin.
_SHAPE = attrgetter(*(name for name, _ in DETAIL_FLAGS), "userType", "isAdmin")
_METHODS = attrgetter("methodsRegistered")
_PREFERRED = attrgetter("systemPreferredAuthenticationMethods")
_USER_TYPE = attrgetter("userType")
_UPDATED = attrgetter("lastUpdatedDateTime")
_ID = attrgetter("id")
_UPN = attrgetter("userPrincipalName")
# Distinct shapes, method lists and preferred lists held before they are folded into counts.
FOLD_AT = 5000


def decode_details_page(
    page: Any, with_ids: bool = False, with_upns: bool = False
) -> DetailsPage | DetailsPageWithIds | DetailsPageWithUpns:
    """A page of ``userRegistrationDetails`` (see :func:`.directory.decode_page`)."""
    if with_upns:
        return decode_page(page, _DECODER_WITH_UPNS, DetailsPageWithUpns)
    if with_ids:
        return decode_page(page, _DECODER_WITH_IDS, DetailsPageWithIds)
    return decode_page(page, _DECODER, DetailsPage)


class RegistrationDetailsCounter:
    """Counts users page by page into segments; keeps only counts and the given ID sets.

    A page is counted in a few passes over its rows that run in C (``map``, ``attrgetter``,
    ``Counter``), not row by row in Python: each row becomes its shape — the six flags, user
    type, ``isAdmin``, strength and, with segments, whether it is a privileged admin and which
    groups it is in — and the shapes are counted. Only each distinct shape is then looked at
    in Python (folded into the segments), and only each label (method, user type, preferred
    method) seen for the first time is checked. Distinct shapes are folded once
    :data:`FOLD_AT` of them are held, and at the end, so memory stays bounded.
    """

    def __init__(self, context: SegmentContext | None = None) -> None:
        self._context = context or SegmentContext()
        self._segments: dict[tuple[str, str], list[int]] = {}
        self._groups = [[0] * _ROW for _ in self._context.groups]
        self._listed, self._memberships = _listed_ids(self._context)
        self._by_method: dict[str, int] = {}
        self._preferred: dict[str, int] = {}
        self._ranks: dict[str, int] = {}  # every method seen (and checked), with its strength
        # Every methodsRegistered seen (checked) → its strength.
        self._strengths: dict[tuple[str, ...] | None, int] = {None: NO_STRENGTH, (): NO_STRENGTH}
        self._user_types: set[str | None] = {None}
        self._preferred_seen: set[tuple[str, ...] | None] = set()
        # Not yet folded: row shapes, methodsRegistered lists and preferred lists, counted.
        self._shapes: Counter[tuple[Any, ...]] = Counter()
        self._combos: Counter[tuple[str, ...] | None] = Counter()
        self._preferred_lists: Counter[tuple[str, ...] | None] = Counter()
        self._newest: datetime | None = None
        # Phone-only users: [by 2027-02-01, by 2027-07-01] (readiness only).
        self._phone_only = [0, 0]

    def add_page(self, page: Any) -> Page:
        """Count one page of ``userRegistrationDetails`` (its JSON bytes)."""
        needs_ids = self._context.needs_ids
        readiness = self._context.readiness
        document = decode_details_page(page, with_ids=needs_ids, with_upns=readiness)
        rows = document.value
        methods = list(map(_METHODS, rows))
        preferred = list(map(_PREFERRED, rows))
        numbers = object_id_keys(list(map(_ID, rows))) if needs_ids else None
        strengths = list(map(self._strengths.get, methods))
        if (
            None in strengths
            or not self._user_types.issuperset(map(_USER_TYPE, rows))
            or not self._preferred_seen.issuperset(preferred)
            or (needs_ids and numbers is None)
        ):
            self._check(rows, methods, preferred, numbers)  # something not seen before
            strengths = list(map(self._strengths.__getitem__, methods))
        if numbers is None:
            self._shapes.update(zip(map(_SHAPE, rows), strengths, strict=True))
        elif readiness:
            listed = map(self._listed.get, numbers, repeat(0))
            # In C, row by row: str(None) is "None", which holds no mark.
            external = map(contains, map(str, map(_UPN, rows)), repeat(EXTERNAL_MARK))
            self._shapes.update(zip(map(_SHAPE, rows), strengths, listed, external, strict=True))
        else:
            listed = map(self._listed.get, numbers, repeat(0))
            self._shapes.update(zip(map(_SHAPE, rows), strengths, listed, strict=True))
        self._combos.update(methods)
        self._preferred_lists.update(preferred)
        newest = max(filter(None, map(_UPDATED, rows)), default=None)
        if newest is not None and (self._newest is None or newest > self._newest):
            self._newest = newest
        if len(self._shapes) + len(self._combos) + len(self._preferred_lists) > FOLD_AT:
            self._fold()
        return Page(document.next_link, len(rows))

    def _check(
        self,
        rows: Sequence[DetailsRow],
        methods: list[tuple[str, ...] | None],
        preferred: list[tuple[str, ...] | None],
        numbers: list[int] | None,
    ) -> None:
        """Refuse the page at its first unusable row, as a row-by-row pass would.

        Each check looks only at values not seen before, in the order they first appear, and
        names its first unusable row; the row first in the page is refused (on one row, in the
        order methods, ID, user type, preferred method).
        """
        problems = [
            self._check_methods(methods),
            first_bad_id(list(map(_ID, rows)))
            if self._context.needs_ids and numbers is None
            else None,
            self._check_user_types(list(map(_USER_TYPE, rows))),
            self._check_preferred(preferred),
        ]
        found = [problem for problem in problems if problem is not None]
        if found:
            raise ReportParseError(min(found, key=lambda problem: problem[0])[1])

    def _check_methods(self, methods: list[tuple[str, ...] | None]) -> tuple[int, str] | None:
        for combo in dict.fromkeys(methods):
            if combo in self._strengths:
                continue
            assert combo is not None  # None is in _strengths from the start
            for method in combo:
                if method in self._ranks:
                    continue
                if not usable_label(method):
                    where = methods.index(combo)
                    return where, f"value[{where}].methodsRegistered holds {method[:40]!a}"
                if len(self._ranks) >= MAX_METHODS:
                    where = methods.index(combo)
                    return where, "more distinct authentication methods than expected"
                self._ranks[method] = strength_of((method,))
            self._strengths[combo] = min(map(self._ranks.__getitem__, combo))
        return None

    def _check_user_types(self, user_types: list[str | None]) -> tuple[int, str] | None:
        for value in dict.fromkeys(user_types):
            if value in self._user_types:
                continue
            where = user_types.index(value)
            if not usable_label(value):
                return where, f"value[{where}].userType is not a usable user type"
            if len(self._user_types) > MAX_USER_TYPES:
                return where, "more distinct user types than expected"
            self._user_types.add(value)
        return None

    def _check_preferred(self, preferred: list[tuple[str, ...] | None]) -> tuple[int, str] | None:
        for value in dict.fromkeys(preferred):
            if value in self._preferred_seen:
                continue
            first = value[0] if value else NO_METHOD
            if first not in self._preferred:
                where = preferred.index(value)
                if not usable_label(first):
                    field = "systemPreferredAuthenticationMethods"
                    return where, f"value[{where}].{field} holds {first[:40]!a}"
                if len(self._preferred) >= MAX_METHODS:
                    return where, "more distinct system-preferred methods than expected"
                self._preferred[first] = 0
            self._preferred_seen.add(value)
        return None

    def _fold(self) -> None:
        """Add the counted shapes, method lists and preferred lists to the counts."""
        for (shape, strength, *listed), users in self._shapes.items():
            *flags, user_type, is_admin = shape
            privileged, groups, late = self._memberships[listed[0]] if listed else _NOT_LISTED
            if strength == PHONE:
                # Global Administrators and external users lose SMS and voice later.
                external = len(listed) > 1 and listed[1]
                self._phone_only[1 if late or external else 0] += users
            role = "privileged_admin" if privileged else "admin" if is_admin else "user"
            key = (NULL_USER_TYPE if user_type is None else user_type, role)
            row = self._segments.get(key)
            if row is None:
                row = self._segments[key] = [0] * _ROW
            truths = tuple(flag is True for flag in flags)
            _add(row, truths, strength, users)
            for group in groups:
                _add(self._groups[group], truths, strength, users)
        for combo, users in self._combos.items():
            for method in set(combo or ()):  # a method listed twice is still one user
                self._by_method[method] = self._by_method.get(method, 0) + users
        for value, users in self._preferred_lists.items():
            self._preferred[value[0] if value else NO_METHOD] += users
        self._shapes.clear()
        self._combos.clear()
        self._preferred_lists.clear()

    def report(self) -> RegistrationReport:
        """The counts as a report (users counted stand for the tenant's users)."""
        self._fold()
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
            phone_only=(
                tuple(
                    (date, count)
                    for (date, _), count in zip(RETIREMENTS, self._phone_only, strict=True)
                )
                if self._context.readiness
                else None
            ),
        )
        return RegistrationReport(
            total_users=totals[0],
            users_by_status=tuple(zip(SEGMENT_STATUSES, totals[1:7], strict=True)),
            users_by_method=tuple(sorted(self._by_method.items())),
            segments=segments,
        )


# A user's membership: (privileged admin, configured groups, Global Administrator).
Membership = tuple[bool, tuple[int, ...], bool]
_NOT_LISTED: Membership = (False, (), False)


def _listed_ids(context: SegmentContext) -> tuple[dict[int, int], list[Membership]]:
    """Every ID of the context's sets → the number of its membership in the list returned
    beside it (0: listed nowhere). One look-up a row instead of one test per set, and a small
    int in the row's key, quicker to hash than the tuple."""
    memberships = [_NOT_LISTED]
    numbers = {_NOT_LISTED: 0}

    def number_of(membership: Membership) -> int:
        if membership not in numbers:
            numbers[membership] = len(memberships)
            memberships.append(membership)
        return numbers[membership]

    listed: dict[int, int] = {}
    for group, (_, members) in enumerate(context.groups):
        for user_id in members:
            privileged, groups, late = memberships[listed.get(user_id, 0)]
            listed[user_id] = number_of((privileged, (*groups, group), late))
    for user_id in context.privileged:
        _, groups, late = memberships[listed.get(user_id, 0)]
        listed[user_id] = number_of((True, groups, late))
    for user_id in context.global_admins or ():
        privileged, groups, _ = memberships[listed.get(user_id, 0)]
        listed[user_id] = number_of((privileged, groups, True))
    return listed, memberships


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
