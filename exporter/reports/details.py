"""Pure counting: pages of ``userRegistrationDetails`` → one
:class:`~exporter.reports.registration.RegistrationReport` with its segments.

Graph's own breakdowns (``usersRegisteredByFeature``) are delegated-only, so the counts per user
type, role, group and method strength are made here, in the same pass that counts the tenant.
Memory holds counts (bounded by the label caps), the ID sets of privileged admins and
configured groups (:mod:`exporter.reports.directory`, each ID a 128-bit int), and a hash of each
counted user's ID, so a user Graph sends twice counts once (at most :data:`IDS_HELD`). No I/O:
everything raises :class:`~exporter.reports.registration.ReportParseError` or returns.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import compress, repeat
from operator import attrgetter, contains
from typing import Annotated, Any

import msgspec

from exporter.reports.directory import Page, decode_page, first_bad_id, object_id_keys
from exporter.reports.enforcement import EnforcementContext, EnforcementTally, is_guest
from exporter.reports.memberships import listed_ids
from exporter.reports.registration import (
    CoverageCounts,
    RegistrationReport,
    ReportParseError,
    SegmentReport,
    usable_label,
)
from exporter.reports.strengths import (
    EXTERNAL_MARK,
    NO_STRENGTH,
    PHONE,
    RETIREMENTS,
    STRENGTHS,
    strength_of,
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
NO_METHOD = "none"  # system-preferred method of a user with none
NULL_USER_TYPE = "unknown"  # userType sent as null
# Series of their own per tenant, at most, for label values Graph chooses: methods (and
# system-preferred methods) and user types (each x 3 roles x 13 series). Past a cap a value is
# counted in ``RegistrationReport.dropped_labels`` and its users in the totals, not shown.
METHOD_SERIES = 64
USER_TYPE_SERIES = 6  # Graph has member, guest, unknownFutureValue; null counts as "unknown"
DROPPED_TRACKED = 10_000  # distinct dropped values remembered per label (the count stops there)
DROPPED_TYPE = ""  # the segment key of users whose user type was dropped (never rendered)
IDS_HELD = 1_000_000  # users' IDs remembered in one poll to tell repeats (some 75 MB)
# Distinct methodsRegistered lists remembered with their strength, and distinct user types and
# preferred lists remembered as checked: caches, started again past this.
_STRENGTHS_HELD = 100_000
_ROW = 1 + len(SEGMENT_STATUSES) + len(STRENGTHS)  # users, statuses, strengths
_MFA_REGISTERED = SEGMENT_STATUSES.index("mfaRegistered")


@dataclass(frozen=True, slots=True)
class SegmentContext:
    """The ID sets a report pass needs: privileged admins, each configured group's users, and,
    for SMS/voice retirement readiness, Global Administrators (None: readiness off)."""

    privileged: frozenset[int] = frozenset()
    groups: tuple[tuple[str, frozenset[int]], ...] = ()
    global_admins: frozenset[int] | None = None
    # MFA enforcement: the policies and their ID sets (None: the tenant's enforcement is off,
    # or its policies could not be read in this poll).
    enforcement: EnforcementContext | None = None

    @property
    def readiness(self) -> bool:
        return self.global_admins is not None

    @property
    def needs_ids(self) -> bool:
        sets = self.enforcement.id_sets if self.enforcement is not None else ()
        return bool(self.privileged or self.groups or self.global_admins or any(sets))


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
        context = context or SegmentContext()
        # What the pass needs of the context; its ID sets live on only in ``_listed``.
        self.readiness = context.readiness
        self._needs_ids = context.needs_ids
        self._group_names = tuple(name for name, _ in context.groups)
        self._segments: dict[tuple[str, str], list[int]] = {}
        self._groups = [[0] * _ROW for _ in context.groups]
        self._tally = None if context.enforcement is None else EnforcementTally(context.enforcement)
        self._listed, self._memberships = listed_ids(
            context.privileged,
            (members for _, members in context.groups),
            context.global_admins or (),
            context.enforcement.id_sets if context.enforcement is not None else (),
            # Each membership carries its classes, not its sets: fewer distinct row shapes.
            None if self._tally is None else self._tally.classes_of,
        )
        # Guests and #EXT# accounts are told apart for readiness and for enforcement.
        self._upns = self.readiness or context.enforcement is not None
        self._by_method: dict[str, int] = {}
        self._preferred: dict[str, int] = {}
        self._ranks: dict[str, int] = {}  # every method kept as a label, with its strength
        # Every methodsRegistered seen (checked) → its strength.
        self._strengths: dict[tuple[str, ...] | None, int] = {None: NO_STRENGTH, (): NO_STRENGTH}
        self._user_types: set[str | None] = {None}  # kept as labels
        self._types_seen: set[str | None] = {None}  # kept or dropped
        # Per label: distinct values past its cap (their users counted, no series of their own).
        self._dropped: defaultdict[str, set[str]] = defaultdict(set)
        self._preferred_seen: set[tuple[str, ...] | None] = set()
        # Not yet folded: row shapes, methodsRegistered lists and preferred lists, counted.
        self._shapes: Counter[tuple[Any, ...]] = Counter()
        self._combos: Counter[tuple[str, ...] | None] = Counter()
        self._preferred_lists: Counter[tuple[str, ...] | None] = Counter()
        self._newest: datetime | None = None
        # Phone-only users: [by 2027-02-01, by 2027-07-01] (readiness only).
        self._phone_only = [0, 0]
        # Each counted user's ID as its str hash (64 bits; some 75 bytes a user with the set),
        # at most IDS_HELD; ``repeated``: rows left out as repeats; ``unheld``: users counted
        # past IDS_HELD (a repeat of one of them counts again).
        self._seen: set[int] = set()
        self.repeated = 0
        self.unheld = 0

    def add_page(self, page: Any) -> Page:
        """Count one page of ``userRegistrationDetails`` (its JSON bytes)."""
        upns = self._upns
        document = decode_details_page(page, with_ids=True, with_upns=upns)
        rows: Sequence[DetailsRow] = document.value
        ids = list(map(_ID, rows))
        numbers = object_id_keys(ids) if self._needs_ids else None
        if None in ids or (numbers is None and self._needs_ids):
            self._check(rows, list(map(_METHODS, rows)), list(map(_PREFERRED, rows)), None)
        fresh = set(map(hash, ids))
        if len(fresh) != len(ids) or not self._seen.isdisjoint(fresh):
            rows, numbers = self._first_sightings(rows, list(map(hash, ids)), numbers)
        elif len(self._seen) + len(fresh) <= IDS_HELD:
            self._seen |= fresh
        else:
            self.unheld += len(fresh)
        methods = list(map(_METHODS, rows))
        preferred = list(map(_PREFERRED, rows))
        strengths = list(map(self._strengths.get, methods))
        if (
            None in strengths
            or not self._types_seen.issuperset(map(_USER_TYPE, rows))
            or not self._preferred_seen.issuperset(preferred)
        ):
            self._check(rows, methods, preferred, numbers)  # something not seen before
            strengths = list(map(self._strengths.__getitem__, methods))
        if numbers is None and not upns:
            self._shapes.update(zip(map(_SHAPE, rows), strengths, strict=True))
        else:
            listed = map(self._listed.get, numbers, repeat(0)) if numbers else repeat(0, len(rows))
            columns: list[Iterable[Any]] = [map(_SHAPE, rows), strengths, listed]
            if upns:  # external users, even with no ID set: in C (str(None) has no mark)
                columns.append(map(contains, map(str, map(_UPN, rows)), repeat(EXTERNAL_MARK)))
            self._shapes.update(zip(*columns, strict=True))
        self._combos.update(methods)
        self._preferred_lists.update(preferred)
        newest = max(filter(None, map(_UPDATED, rows)), default=None)
        if newest is not None and (self._newest is None or newest > self._newest):
            self._newest = newest
        if len(self._shapes) + len(self._combos) + len(self._preferred_lists) > FOLD_AT:
            self._fold()
        return Page(document.next_link, len(document.value))

    def _first_sightings(
        self, rows: Sequence[DetailsRow], keys: list[int], numbers: list[int] | None
    ) -> tuple[Sequence[DetailsRow], list[int] | None]:
        """The rows of users not counted before (Graph repeated some, here or on an earlier
        page); the page is checked first, so a refusal names the row as Graph sent it."""
        self._check(rows, list(map(_METHODS, rows)), list(map(_PREFERRED, rows)), numbers)
        seen = self._seen
        held: set[int] = set()  # this page's own, past IDS_HELD
        first = []
        for key in keys:
            new = key not in seen and key not in held
            first.append(new)
            if new:
                (seen if len(seen) < IDS_HELD else held).add(key)
        self.repeated += first.count(False)
        self.unheld += len(held)
        rows = list(compress(rows, first))
        return rows, None if numbers is None else list(compress(numbers, first))

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
            _first_missing_id(rows)
            if numbers is None and not self._needs_ids
            else first_bad_id(list(map(_ID, rows)))
            if numbers is None
            else None,
            self._check_user_types(list(map(_USER_TYPE, rows))),
            self._check_preferred(preferred),
        ]
        found = [problem for problem in problems if problem is not None]
        if found:
            raise ReportParseError(min(found, key=lambda problem: problem[0])[1])

    def _check_methods(self, methods: list[tuple[str, ...] | None]) -> tuple[int, str] | None:
        if len(self._strengths) > _STRENGTHS_HELD:  # a cache (bounded by a page past this)
            self._strengths = {None: NO_STRENGTH, (): NO_STRENGTH}
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
                if len(self._ranks) < METHOD_SERIES:
                    self._ranks[method] = strength_of((method,))
                else:
                    self._drop("method", method)
            self._strengths[combo] = strength_of(combo)
        return None

    def _drop(self, label: str, value: str) -> None:
        """Count ``value`` of ``label`` as past the label's cap."""
        dropped = self._dropped[label]
        if len(dropped) < DROPPED_TRACKED:
            dropped.add(value)

    def _check_user_types(self, user_types: list[str | None]) -> tuple[int, str] | None:
        if len(self._types_seen) > _STRENGTHS_HELD:  # a cache, as _strengths
            self._types_seen = set(self._user_types)
        for value in dict.fromkeys(user_types):
            if value in self._types_seen:
                continue
            where = user_types.index(value)
            if not usable_label(value):
                return where, f"value[{where}].userType is not a usable user type"
            if len(self._user_types) < USER_TYPE_SERIES:
                self._user_types.add(value)
            else:
                self._drop("user_type", value)
            self._types_seen.add(value)
        return None

    def _check_preferred(self, preferred: list[tuple[str, ...] | None]) -> tuple[int, str] | None:
        if len(self._preferred_seen) > _STRENGTHS_HELD:  # a cache, as _strengths
            self._preferred_seen = set()
        for value in dict.fromkeys(preferred):
            if value in self._preferred_seen:
                continue
            first = value[0] if value else NO_METHOD
            if first not in self._preferred:
                where = preferred.index(value)
                if not usable_label(first):
                    field = "systemPreferredAuthenticationMethods"
                    return where, f"value[{where}].{field} holds {first[:40]!a}"
                if len(self._preferred) < METHOD_SERIES:
                    self._preferred[first] = 0
                else:
                    self._drop("system_preferred", first)
            self._preferred_seen.add(value)
        return None

    def _fold(self) -> None:
        """Add the counted shapes, method lists and preferred lists to the counts."""
        for (shape, strength, *listed), users in self._shapes.items():
            *flags, user_type, is_admin = shape
            privileged, groups, late, classes = self._memberships[listed[0] if listed else 0]
            external = len(listed) > 1 and listed[1]
            if strength == PHONE:  # Global Administrators and external users: later
                self._phone_only[1 if late or external else 0] += users
            role = "privileged_admin" if privileged else "admin" if is_admin else "user"
            if user_type is None:
                user_type = NULL_USER_TYPE
            elif user_type not in self._user_types:
                user_type = DROPPED_TYPE  # counted in the totals, shown in no segment
            key = (user_type, role)
            row = self._segments.get(key)
            if row is None:
                row = self._segments[key] = [0] * _ROW
            truths = tuple(flag is True for flag in flags)
            _add(row, truths, strength, users)
            if self._tally is not None:
                guest = is_guest(shape[-2], external)
                self._tally.add(key, classes, guest, truths[_MFA_REGISTERED], users)
            for group in groups:
                _add(self._groups[group], truths, strength, users)
        self._fold_labels()
        self._shapes.clear()

    def _fold_labels(self) -> None:
        """Add the counted method lists and preferred lists to the counts."""
        for combo, users in self._combos.items():
            for method in set(combo or ()):  # a method listed twice is still one user
                if method in self._ranks:  # else dropped, past the cap
                    self._by_method[method] = self._by_method.get(method, 0) + users
        for value, users in self._preferred_lists.items():
            first = value[0] if value else NO_METHOD
            if first in self._preferred:  # else dropped, past the cap
                self._preferred[first] += users
        self._combos.clear()
        self._preferred_lists.clear()

    def report(self) -> RegistrationReport:
        """The counts as a report (users counted stand for the tenant's users)."""
        self._fold()
        totals = [0] * _ROW
        for row in self._segments.values():
            for i, value in enumerate(row):
                totals[i] += value
        shown = [key for key in sorted(self._segments) if key[0] != DROPPED_TYPE]
        segments = SegmentReport(
            segments=tuple(
                (user_type, role, _counts(self._segments[(user_type, role)]))
                for user_type, role in shown
            ),
            groups=tuple(
                (name, _counts(row))
                for name, row in zip(self._group_names, self._groups, strict=True)
            ),
            # A method only a repeated row named was checked, never counted: left out.
            system_preferred=tuple(sorted(item for item in self._preferred.items() if item[1])),
            data_timestamp=None if self._newest is None else self._newest.timestamp(),
            enforcement=None if self._tally is None else self._tally.report(shown),
            phone_only=(
                tuple(
                    (date, count)
                    for (date, _), count in zip(RETIREMENTS, self._phone_only, strict=True)
                )
                if self.readiness
                else None
            ),
        )
        return RegistrationReport(
            total_users=totals[0],
            users_by_status=tuple(zip(SEGMENT_STATUSES, totals[1:7], strict=True)),
            users_by_method=tuple(sorted(self._by_method.items())),
            segments=segments,
            dropped_labels=tuple(
                (label, len(values)) for label, values in self._dropped.items() if values
            ),
        )


def _first_missing_id(rows: Sequence[DetailsRow]) -> tuple[int, str] | None:
    """The first row without an ``id`` (it could not be told apart from a repeated user)."""
    ids = list(map(_ID, rows))
    if None not in ids:
        return None
    where = ids.index(None)
    return where, f"value[{where}].id is missing"


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
