"""Directory objects: typed pages of Graph (the decoding every paged answer shares), object IDs
as compact keys, and the IDs of users and groups collected from role assignments and group
member lists for the segments.

An object ID (a GUID) is kept as a 128-bit int: 44 bytes instead of a string's 85, and a page's
IDs are converted together in C (``map`` of ``str.replace`` and ``int``), not one by one in
Python. No I/O: everything raises :class:`~exporter.reports.registration.ReportParseError`
or returns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import compress, repeat
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, TypeVar

import msgspec

from exporter.reports.registration import ReportParseError

# A GUID as Graph writes object IDs: int() alone would take 36 hex digits without dashes (a
# number past 128 bits), underscores or blanks, and the ID would break where it is used.
_GUID_LENGTH = 36
_GUID_CHARACTERS = b"0123456789abcdefABCDEF-"
_DASH_PLACES = itemgetter(8, 13, 18, 23)
_DASHES = ("-", "-", "-", "-")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_Page = TypeVar("_Page", bound=msgspec.Struct)


class Page(NamedTuple):
    """What a page told the walk along ``@odata.nextLink``: the next link, its rows, and how
    many of them were new to the walk (None: all of them)."""

    next_link: str | None
    rows: int
    new: int | None = None


def decode_page(page: Any, decoder: msgspec.json.Decoder[_Page], kind: type[_Page]) -> _Page:
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


def decode_listing(page: Any, what: str) -> tuple[list[Any], str | None]:
    """A listing page's rows (``value``) and ``@odata.nextLink``, from its bytes (or the decoded
    document), rows left as JSON for the caller to check; ``what`` names the rows in the
    refusal."""
    if isinstance(page, bytes | bytearray | memoryview):
        try:
            page = msgspec.json.decode(page)
        except (msgspec.DecodeError, RecursionError):
            raise ReportParseError("the page is not JSON") from None
    rows = page.get("value") if isinstance(page, dict) else None
    if not isinstance(rows, list):
        raise ReportParseError(f"the page has no list of {what} (value)")
    link = page.get("@odata.nextLink")
    if link is not None and not isinstance(link, str):
        raise ReportParseError("@odata.nextLink is not a string")
    return rows, link


def _where_first(message: str) -> str:
    """msgspec's ``Expected X, got Y - at `$.value[3].isAdmin``` as ``value[3].isAdmin:
    expected X, got Y``."""
    text, _, where = message.partition(" - at `$")
    text = text[:1].lower() + text[1:]
    return f"{where.rstrip('`').lstrip('.')}: {text}" if where else text


def parse_object_id(value: Any, index: int, field: str = "id") -> int:
    """A directory object ID (a GUID) as a 128-bit int.

    ``index`` and ``field`` say where, in the refusal only.
    """
    if isinstance(value, str) and _GUID.fullmatch(value):
        return int(value.replace("-", ""), 16)
    raise ReportParseError(f"value[{index}].{field} is not an object ID: {str(value)[:40]!r}")


def object_id_keys(values: Sequence[Any]) -> list[int] | None:
    """Every value as :func:`parse_object_id` makes it, converted together in C; None when
    one is not an object ID (:func:`first_bad_id` names it)."""
    try:
        if values and not _all_guids(values):
            return None
        return list(map(int, map(str.replace, values, repeat("-"), repeat("")), repeat(16)))
    except (TypeError, ValueError):
        return None


def _all_guids(values: Sequence[Any]) -> bool:
    """True when every value is a GUID; checked over the whole page in C (a regular expression
    per value costs over twice as much, and these pages run to the tenant's size)."""
    if set(map(len, values)) != {_GUID_LENGTH}:
        return False  # a value that is no string raises TypeError here
    joined = "".join(values)
    return (
        joined.isascii()
        and not joined.encode().translate(None, _GUID_CHARACTERS)
        and set(map(_DASH_PLACES, values)) == {_DASHES}
    )


def first_bad_id(values: Sequence[Any]) -> tuple[int, str] | None:
    """The first ``id`` that is not an object ID, and why."""
    for index, value in enumerate(values):
        try:
            parse_object_id(value, index)
        except ReportParseError as err:
            return index, str(err)
    return None


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
_ITEM_ID = attrgetter("id")
_ITEM_KIND = attrgetter("kind")
GROUP = "#microsoft.graph.group"
_GROUP_KINDS = frozenset({GROUP})
_USER_KINDS = frozenset({None, "#microsoft.graph.user"})


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
        """Collect one page (its JSON bytes; ``principals``: role assignments); the page says
        how many of its objects were new (pages of nothing new that link on are a loop)."""
        document = decode_page(page, _DIRECTORY_DECODER, DirectoryPage)
        known = len(self.users) + len(self.groups)
        if principals:
            for index, item in enumerate(document.value):
                if item.principal is not None:
                    principal = item.principal
                    self._add_object(principal.id, principal.kind, index, "principal.id")
                else:
                    self.users.add(parse_object_id(item.principalId, index, "principalId"))
        else:
            self._add_members(document.value)
        new = len(self.users) + len(self.groups) - known
        return Page(document.next_link, len(document.value), new)

    def _add_members(self, items: list[DirectoryItem]) -> None:
        """A page of group members, all at once (these lists run to the tenant's size)."""
        ids = list(map(_ITEM_ID, items))
        keys = object_id_keys(ids)
        if keys is None:
            where = first_bad_id(ids)
            raise ReportParseError(where[1] if where else "unusable object IDs")
        kinds = list(map(_ITEM_KIND, items))
        self.users.update(compress(keys, map(_USER_KINDS.__contains__, kinds)))
        if GROUP in kinds:
            self.groups.update(compress(keys, map(_GROUP_KINDS.__contains__, kinds)))

    def _add_object(self, object_id: str | None, kind: str | None, index: int, field: str) -> None:
        key = parse_object_id(object_id, index, field)
        if kind == GROUP:
            self.groups.add(key)
        elif kind in _USER_KINDS:
            self.users.add(key)
