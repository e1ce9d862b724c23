"""Counting userRegistrationDetails pages into segments: the pure part, row by row."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from exporter.details import (
    STRENGTHS,
    DirectoryIdCollector,
    RegistrationDetailsCounter,
    SegmentContext,
    strength_of,
)
from exporter.report import ReportParseError

ALICE, BOB, CAROL = (str(uuid.UUID(int=n, version=4)) for n in (1, 2, 3))


def user(user_id: str = ALICE, **fields: Any) -> dict[str, Any]:
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
        (user(methodsRegistered=[{"not": "hashable"}]), "methodsRegistered holds"),
        (user(isSsprEnabled="yes"), "isSsprEnabled is not a boolean"),
        (user(userType=7), "userType is not a usable user type"),
        (user(systemPreferredAuthenticationMethods="push"), "is not a list"),
        (user(lastUpdatedDateTime="yesterday"), "lastUpdatedDateTime is not a date"),
    ],
)
def test_unusable_rows_are_parse_errors(row: dict[str, Any], problem: str) -> None:
    with pytest.raises(ReportParseError, match=problem):
        RegistrationDetailsCounter().add_page({"value": [row]})


def test_ids_are_parsed_only_when_an_id_set_needs_them() -> None:
    RegistrationDetailsCounter().add_page({"value": [user("not-a-guid")]})
    with pytest.raises(ReportParseError, match="is not an object ID"):
        RegistrationDetailsCounter(SegmentContext(privileged=frozenset({1}))).add_page(
            {"value": [user("not-a-guid")]}
        )


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
    assert link == "https://graph.example/next"
    assert collector.users == {uuid.UUID(ALICE).int, uuid.UUID(CAROL).int}
    assert collector.groups == {uuid.UUID(BOB).int}
    members = DirectoryIdCollector()
    members.add_page(
        {"value": [{"@odata.type": "#microsoft.graph.device", "id": ALICE}, {"id": BOB}]},
        principals=False,
    )
    assert members.users == {uuid.UUID(BOB).int}


def test_a_number_where_a_boolean_belongs_is_refused_after_the_same_true_was_seen() -> None:
    # Seen flag combinations are remembered; 1 == True in Python, so the memory must not let
    # a JSON 1 pass for a true that was seen before.
    counter = RegistrationDetailsCounter()
    counter.add_page({"value": [user(isMfaRegistered=True)]})
    with pytest.raises(ReportParseError, match="isMfaRegistered is not a boolean"):
        counter.add_page({"value": [user(isMfaRegistered=1)]})


def test_unhashable_labels_are_refused_not_crashed_on() -> None:
    counter = RegistrationDetailsCounter()
    counter.add_page({"value": [user(userType="member")]})
    with pytest.raises(ReportParseError, match="userType is not a usable user type"):
        counter.add_page({"value": [user(userType=["member"])]})
