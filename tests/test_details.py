"""Counting userRegistrationDetails pages into segments: the pure part, row by row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.reports import details
from exporter.reports.details import (
    DETAIL_FLAGS,
    METHOD_SERIES,
    USER_TYPE_SERIES,
    RegistrationDetailsCounter,
    SegmentContext,
)
from exporter.reports.directory import (
    GROUP,
    DirectoryIdCollector,
    object_id_keys,
    parse_object_id,
)
from exporter.reports.registration import ReportParseError
from exporter.reports.strengths import STRENGTHS, strength_of

ALICE, BOB, CAROL = (str(uuid.UUID(int=n, version=4)) for n in (1, 2, 3))


def user(user_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A row of userRegistrationDetails; a user of its own unless ``user_id`` is given."""
    user_id = user_id or str(uuid.uuid4())
    return {"id": user_id, "userType": "member", "isAdmin": False, **fields}


@pytest.mark.parametrize(
    ("methods", "strength"),
    [
        (["mobilePhone", "fido2SecurityKey"], "phishing_resistant"),
        (["passKeySynced"], "phishing_resistant"),
        (["microsoftAuthenticatorPasswordless", "email"], "passwordless"),
        (["softwareOneTimePasscode", "officePhone"], "mfa"),
        (["alternateMobilePhone"], "phone"),
        (["email", "passKeyFromTheFuture"], "unclassified"),
        (["email", "securityQuestion", "temporaryAccessPass", "appPassword"], "none"),
        ([], "none"),
    ],
)
def test_each_user_counts_once_at_the_strongest_class(methods: list[str], strength: str) -> None:
    assert STRENGTHS[strength_of(methods)] == strength


def test_segments_by_user_type_and_role_with_null_and_unknown_values() -> None:
    counter = RegistrationDetailsCounter(SegmentContext(privileged=frozenset({uuid.UUID(BOB).int})))
    counter.add_page(
        {
            "value": [
                user(ALICE, isMfaRegistered=None, isAdmin=None, userType=None),
                user(BOB, isMfaRegistered=True, isAdmin=True),
                user(CAROL, userType="partner", isAdmin=True, methodsRegistered=["mobilePhone"]),
            ]
        }
    )
    report = counter.report()
    assert report.segments is not None
    rows = {(t, r): c for t, r, c in report.segments.segments}
    assert set(rows) == {("unknown", "user"), ("member", "privileged_admin"), ("partner", "admin")}
    assert rows[("unknown", "user")].statuses[3] == 0  # a null boolean counts as false
    assert rows[("member", "privileged_admin")].statuses[3] == 1
    assert rows[("partner", "admin")].strengths == (0, 0, 0, 1, 0, 0)
    assert report.total_users == 3
    assert report.segments.system_preferred == (("none", 3),)
    assert report.segments.data_timestamp is None


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (
            user(methodsRegistered=[{"not": "hashable"}]),
            "value[0].methodsRegistered[0]: expected `str`, got `object`",
        ),
        (
            user(methodsRegistered=["mobile\nPhone"]),
            "value[0].methodsRegistered holds 'mobile\\nPhone'",
        ),
        (user(methodsRegistered=[""]), "value[0].methodsRegistered holds ''"),
        (user(isSsprEnabled="yes"), "value[0].isSsprEnabled: expected `bool | null`, got `str`"),
        (user(isMfaRegistered=1), "value[0].isMfaRegistered: expected `bool | null`, got `int`"),
        (user(userType=7), "value[0].userType: expected `str | null`, got `int`"),
        (user(userType=["member"]), "value[0].userType: expected `str | null`, got `array`"),
        (user(userType="x\ud800"), "value[0].userType is not a usable user type"),
        (
            user(systemPreferredAuthenticationMethods="push"),
            "value[0].systemPreferredAuthenticationMethods: expected `array | null`, got `str`",
        ),
        (
            user(systemPreferredAuthenticationMethods=["\t"]),
            "value[0].systemPreferredAuthenticationMethods holds '\\t'",
        ),
        (
            user(lastUpdatedDateTime="yesterday"),
            "value[0].lastUpdatedDateTime: invalid RFC3339 encoded datetime",
        ),
        (
            user(lastUpdatedDateTime="2026-12-01T10:00:00"),
            "value[0].lastUpdatedDateTime: expected `datetime` with a timezone component",
        ),
        ("not a row", "value[0]: expected `object`, got `str`"),
    ],
)
def test_unusable_rows_are_parse_errors(row: dict[str, Any], problem: str) -> None:
    with pytest.raises(ReportParseError) as refused:
        RegistrationDetailsCounter().add_page({"value": [row]})
    assert str(refused.value) == problem


@pytest.mark.parametrize(
    ("page", "problem"),
    [
        (b"{", "the page is not JSON"),
        (b"[]", "expected `object`, got `array`"),
        (b"{}", "object missing required field `value`"),
        (
            b'{"value": [], "@odata.nextLink": 5}',
            "@odata.nextLink: expected `str | null`, got `int`",
        ),
    ],
)
def test_unusable_pages_are_parse_errors(page: bytes, problem: str) -> None:
    with pytest.raises(ReportParseError) as refused:
        RegistrationDetailsCounter().add_page(page)
    assert str(refused.value) == problem


def test_label_values_past_their_cap_are_counted_in_the_totals_and_get_no_series() -> None:
    extra = 3
    rows = [
        user(
            methodsRegistered=[f"m{i}", "fido2SecurityKey"],
            userType=f"t{i % (USER_TYPE_SERIES + extra)}",
            systemPreferredAuthenticationMethods=[f"p{i}"],
            isMfaRegistered=True,
        )
        for i in range(METHOD_SERIES + extra - 1)  # fido2SecurityKey is one of the methods
    ]
    counter = RegistrationDetailsCounter()
    counter.add_page({"value": rows[:10], "@odata.nextLink": "n"})
    counter.add_page({"value": rows[10:]})
    report = counter.report()
    assert report.total_users == len(rows)
    assert dict(report.users_by_status)["mfaRegistered"] == len(rows)
    assert len(report.users_by_method) == METHOD_SERIES
    assert dict(report.users_by_method)["fido2SecurityKey"] == len(rows)
    assert report.segments is not None
    # Six user types at most, "unknown" (null) among them: five of the nine here.
    assert len({user_type for user_type, _, _ in report.segments.segments}) == USER_TYPE_SERIES - 1
    assert sum(c.users for _, _, c in report.segments.segments) < len(rows)  # dropped types
    assert len(report.segments.system_preferred) == METHOD_SERIES
    assert dict(report.dropped_labels) == {
        "method": extra,
        "user_type": extra + 1,  # "unknown" (null) holds one of the six
        "system_preferred": extra - 1,
    }
    # Every user's strength still counts, whatever label of theirs was dropped.
    strong = sum(c.strengths[0] for _, _, c in report.segments.segments)
    assert strong == sum(c.users for _, _, c in report.segments.segments)


def test_a_method_listed_twice_counts_its_user_once_and_the_newest_date_wins() -> None:
    counter = RegistrationDetailsCounter()
    page = counter.add_page(
        {
            "value": [
                user(
                    methodsRegistered=["email", "email"], lastUpdatedDateTime="2026-12-01T10:00:00Z"
                ),
                user(
                    methodsRegistered=["email"], lastUpdatedDateTime="2026-12-01T12:00:00.1234567Z"
                ),
                user(lastUpdatedDateTime="2026-12-01T11:00:00+02:00"),
            ],
            "@odata.nextLink": "https://graph.example/next",
        }
    )
    assert page[:2] == ("https://graph.example/next", 3)
    report = counter.report()
    assert report.users_by_method == (("email", 2),)
    assert report.segments is not None
    newest = datetime(2026, 12, 1, 12, 0, 0, 123457, tzinfo=UTC)  # 7 digits: microseconds kept
    assert report.segments.data_timestamp == newest.timestamp()


def test_ids_are_parsed_only_when_an_id_set_needs_them() -> None:
    RegistrationDetailsCounter().add_page({"value": [user("not-a-guid")]})
    with pytest.raises(ReportParseError, match="is not an object ID"):
        RegistrationDetailsCounter(SegmentContext(privileged=frozenset({1}))).add_page(
            {"value": [user("not-a-guid")]}
        )


def test_a_role_group_id_that_is_no_guid_is_a_parse_error_naming_the_field() -> None:
    # 36 hex digits without dashes once made a 144-bit number that broke the group's look-up
    # (internal_error): the page is refused where the value is.
    page = {"value": [{"principal": {"@odata.type": GROUP, "id": "f" * 36}}]}
    with pytest.raises(ReportParseError) as refused:
        DirectoryIdCollector().add_page(page, principals=True)
    assert str(refused.value) == f"value[0].principal.id is not an object ID: {'f' * 36!r}"


def test_principals_users_groups_and_what_is_skipped() -> None:
    collector = DirectoryIdCollector()
    link = collector.add_page(
        {
            "value": [
                {"principal": {"@odata.type": "#microsoft.graph.user", "id": ALICE}},
                {"principal": {"@odata.type": "#microsoft.graph.group", "id": BOB}},
                {"principal": {"@odata.type": "#microsoft.graph.servicePrincipal", "id": CAROL}},
                {"principalId": CAROL},  # not expanded: kept, it can only match a listed user
            ],
            "@odata.nextLink": "https://graph.example/next",
        },
        principals=True,
    )
    assert link == ("https://graph.example/next", 4, 3)  # 3 objects new: the skipped one is not
    assert collector.users == {uuid.UUID(ALICE).int, uuid.UUID(CAROL).int}
    assert collector.groups == {uuid.UUID(BOB).int}
    members = DirectoryIdCollector()
    members.add_page(
        {"value": [{"@odata.type": "#microsoft.graph.device", "id": ALICE}, {"id": BOB}]},
        principals=False,
    )
    assert members.users == {uuid.UUID(BOB).int}


def test_a_number_where_a_boolean_belongs_is_refused_after_the_same_true_was_seen() -> None:
    # 1 == True in Python: a JSON 1 must not pass for a true seen before.
    counter = RegistrationDetailsCounter()
    counter.add_page({"value": [user(isMfaRegistered=True)]})
    with pytest.raises(ReportParseError, match=r"isMfaRegistered: expected `bool \| null`"):
        counter.add_page({"value": [user(isMfaRegistered=1)]})


# A row-by-row reference count, as plain as it can be written, for the counter's C passes.
REST = tuple(str(uuid.UUID(int=n, version=4)) for n in range(4, 12))
FLAG_NAMES = tuple(name for name, _ in DETAIL_FLAGS)
rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            # Graph may repeat a user, on the same page or another: counted once, as first seen.
            "id": st.sampled_from((ALICE, BOB, CAROL, *REST)),
            **{name: st.sampled_from((True, False, None)) for name in FLAG_NAMES},
            "methodsRegistered": st.none()
            | st.lists(
                st.sampled_from(("email", "fido2SecurityKey", "mobilePhone", "x")), max_size=3
            ),
            "userType": st.sampled_from(("member", "guest", None)),
            "isAdmin": st.sampled_from((True, False, None)),
            "systemPreferredAuthenticationMethods": st.none()
            | st.lists(st.sampled_from(("push", "sms")), max_size=2),
        }
    ),
    max_size=12,
)


def reference_report(pages: list[list[dict[str, Any]]], context: SegmentContext) -> Any:
    segments: dict[tuple[str, str], list[int]] = {}
    groups = [[0] * (1 + len(FLAG_NAMES) + len(STRENGTHS)) for _ in context.groups]
    by_method: dict[str, int] = {}
    preferred: dict[str, int] = {}
    seen: set[str] = set()
    for row in (row for page in pages for row in page):
        if row["id"] in seen:
            continue
        seen.add(row["id"])
        number = uuid.UUID(row["id"]).int
        role = (
            "privileged_admin"
            if number in context.privileged
            else "admin"
            if row["isAdmin"]
            else "user"
        )
        methods = row["methodsRegistered"] or []
        counts = [1, *(row[name] is True for name in FLAG_NAMES), *([0] * len(STRENGTHS))]
        counts[1 + len(FLAG_NAMES) + strength_of(methods)] = 1
        key = (row["userType"] or "unknown", role)
        segments[key] = [
            a + b for a, b in zip(segments.get(key, [0] * len(counts)), counts, strict=True)
        ]
        for index, (_, members) in enumerate(context.groups):
            if number in members:
                groups[index] = [a + b for a, b in zip(groups[index], counts, strict=True)]
        for method in set(methods):
            by_method[method] = by_method.get(method, 0) + 1
        first = (row["systemPreferredAuthenticationMethods"] or ["none"])[0]
        preferred[first] = preferred.get(first, 0) + 1
    return segments, groups, by_method, preferred


@settings(max_examples=150, deadline=None)
@given(pages=st.lists(rows_strategy, max_size=4), fold_at=st.sampled_from((1, 3, 5000)))
def test_the_counter_agrees_with_a_row_by_row_count(
    pages: list[list[dict[str, Any]]], fold_at: int
) -> None:
    context = SegmentContext(
        privileged=frozenset({uuid.UUID(BOB).int}),
        groups=(("wave-1", frozenset({uuid.UUID(ALICE).int, uuid.UUID(BOB).int})),),
    )
    for with_segments in (True, False):
        used = context if with_segments else SegmentContext()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(details, "FOLD_AT", fold_at)  # folding early changes nothing
            counter = RegistrationDetailsCounter(used)
            for page in pages:
                counter.add_page({"value": page})
            report = counter.report()
        segments, groups, by_method, preferred = reference_report(pages, used)
        assert report.segments is not None
        assert {
            (user_type, role): [counts.users, *counts.statuses, *counts.strengths]
            for user_type, role, counts in report.segments.segments
        } == segments
        assert [[c.users, *c.statuses, *c.strengths] for _, c in report.segments.groups] == groups
        assert dict(report.users_by_method) == by_method
        assert dict(report.segments.system_preferred) == preferred
        assert report.total_users == len({row["id"] for page in pages for row in page})
        rows = sum(map(len, pages))
        assert counter.repeated == rows - report.total_users


def test_the_first_unusable_row_of_a_page_is_named_whatever_is_wrong_with_it() -> None:
    page = [
        user(),
        user(systemPreferredAuthenticationMethods=["\t"]),  # row 1: a preferred method
        user(methodsRegistered=["bad\n"]),  # row 2: a method, checked first on a row
    ]
    with pytest.raises(ReportParseError) as refused:
        RegistrationDetailsCounter().add_page({"value": page})
    assert str(refused.value) == "value[1].systemPreferredAuthenticationMethods holds '\\t'"
    with pytest.raises(ReportParseError) as refused:
        RegistrationDetailsCounter(SegmentContext(privileged=frozenset({1}))).add_page(
            {"value": [user(), user("not-a-guid", userType="\x00"), *page]}
        )
    assert str(refused.value) == "value[1].id is not an object ID: 'not-a-guid'"


@pytest.mark.parametrize(
    "bad",
    [
        None,
        7,
        ALICE[:-1],  # 35 characters
        ALICE[:9] + " " + ALICE[10:],  # a space where a hex digit belongs
        ALICE[:-1] + "g",
        "-" * 36,
        "0" * 36,  # 36 hex digits, no dashes: a number past 128 bits
        ALICE[:7] + "_" + ALICE[8:],  # int() takes an underscore between digits
        "+" + ALICE[1:],  # ...and a sign
        ALICE.replace("-", "", 1) + "-",  # a dash out of place
        ALICE[:-1] + "\u0663",  # ...and a digit of another script
    ],
)
def test_object_ids_are_converted_together_or_the_bad_one_is_named(bad: object) -> None:
    good = [ALICE, BOB.upper(), CAROL]
    keys = object_id_keys(good)
    assert keys == [uuid.UUID(value).int for value in good]  # GUIDs are case-insensitive
    assert keys == [parse_object_id(value, 0) for value in good]
    assert object_id_keys([ALICE, bad, CAROL]) is None
    with pytest.raises(ReportParseError) as refused:
        DirectoryIdCollector().add_page({"value": [{"id": ALICE}, {"id": bad}]}, principals=False)
    expected = f"value[1].id is not an object ID: {str(bad)[:40]!r}"
    if isinstance(bad, int):
        expected = "value[1].id: expected `str | null`, got `int`"  # the page's types first
    assert str(refused.value) == expected


def test_members_that_are_groups_are_kept_for_expansion_and_users_counted() -> None:
    members = DirectoryIdCollector()
    members.add_page(
        {
            "value": [
                {"@odata.type": "#microsoft.graph.group", "id": ALICE},
                {"@odata.type": "#microsoft.graph.user", "id": BOB},
                {"@odata.type": "#microsoft.graph.servicePrincipal", "id": CAROL},
            ]
        },
        principals=False,
    )
    assert members.groups == {uuid.UUID(ALICE).int}
    assert members.users == {uuid.UUID(BOB).int}


def test_a_user_repeated_on_a_page_or_a_later_one_counts_once() -> None:
    counter = RegistrationDetailsCounter()
    alice, bob = user(ALICE, methodsRegistered=["email"]), user(BOB, isMfaRegistered=True)
    assert counter.add_page({"value": [alice, bob, alice], "@odata.nextLink": "n"})[:2] == ("n", 3)
    counter.add_page({"value": [bob, user(CAROL), alice]})
    report = counter.report()
    assert report.total_users == 3 and counter.repeated == 3
    assert report.users_by_method == (("email", 1),)
    assert dict(report.users_by_status)["mfaRegistered"] == 1


def test_a_row_without_an_id_is_refused_and_a_refusal_names_the_row_graph_sent() -> None:
    with pytest.raises(ReportParseError, match=r"^value\[1\]\.id is missing$"):
        RegistrationDetailsCounter().add_page({"value": [user(), {"userType": "member"}]})
    # Rows 0 and 1 repeat one user; row 2's bad method is named as row 2, not as row 1.
    page = [user(ALICE), user(ALICE), user(methodsRegistered=["bad\n"])]
    with pytest.raises(ReportParseError, match=r"^value\[2\]\.methodsRegistered"):
        RegistrationDetailsCounter().add_page({"value": page})


def test_past_the_ids_it_may_hold_the_counter_still_counts_and_says_so() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(details, "IDS_HELD", 3)
        counter = RegistrationDetailsCounter()
        counter.add_page({"value": [user(ALICE), user(BOB)], "@odata.nextLink": "n"})
        counter.add_page({"value": [user(CAROL), user(), user(ALICE)], "@odata.nextLink": "n"})
        counter.add_page({"value": [user(), user(BOB)], "@odata.nextLink": "n"})  # new, repeat
        counter.add_page({"value": [user()]})  # no repeat on the page: counted as it comes
        report = counter.report()
    assert report.total_users == 6 and counter.repeated == 2
    assert counter.unheld == 3  # the three unnamed users, counted with their IDs forgotten
