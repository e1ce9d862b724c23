"""Report parsing: every shape Microsoft's documentation shows, and what must be refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.reports.registration import (
    MAX_STATUS_LENGTH,
    MAX_STATUSES,
    STATUS_SERIES,
    RegistrationReport,
    ReportParseError,
    parse_registration_report,
    usable_label,
)

# The API page's example, verbatim in shape (note the misspelled count field).
API_EXAMPLE = """
{
  "@odata.context":"https://graph.microsoft.com/beta/reports/$metadata#Collection(microsoft.graph.credentialUserRegistrationCount)",
  "value": [
    {
      "id" : "d3590ed6-52b3-4102-aeff-aad2292ab01234",
      "totalUserCount" : 23123,
      "userRegistrationCounts" :
      [
        { "userRegistrationStatus":"registered",
          "userRegistationCount": 23423 }
      ]
    }
  ]
}
"""

# The resource page's JSON representation (English and e.g. zh-cn, ja-jp translations).
RESOURCE_EXAMPLE = {
    "id": "String",
    "totalUserCount": 23123,
    "userRegistrationCounts": [
        {"registrationStatus": "registered", "registrationCount": 23423},
        {"registrationStatus": "enabled", "registrationCount": 4234},
        {"registrationStatus": "capable", "registrationCount": 323},
        {"registrationStatus": "mfaRegistered", "registrationCount": 33},
    ],
}


def test_api_example_with_misspelled_count_field() -> None:
    report = parse_registration_report(json.loads(API_EXAMPLE))
    assert report == RegistrationReport(23123, (("registered", 23423),))


def test_resource_page_shape_as_a_bare_object() -> None:
    report = parse_registration_report(RESOURCE_EXAMPLE)
    assert report.total_users == 23123
    assert dict(report.users_by_status) == {
        "registered": 23423,
        "enabled": 4234,
        "capable": 323,
        "mfaRegistered": 33,
    }


def test_correct_spelling_numeric_strings_extra_fields_and_new_statuses() -> None:
    document = {
        "value": [
            {
                "totalUserCount": "120",
                "somethingNew": {"nested": True},
                "userRegistrationCounts": [
                    {"userRegistrationStatus": "registered", "userRegistrationCount": "7", "x": 1},
                    {"userRegistrationStatus": "passwordlessCapable", "userRegistrationCount": 3.0},
                ],
            }
        ]
    }
    report = parse_registration_report(document)
    assert report.total_users == 120
    assert dict(report.users_by_status).get("registered") == 7
    assert dict(report.users_by_status).get("passwordlessCapable") == 3
    assert dict(report.users_by_status).get("enabled") is None


def test_value_may_be_a_single_object() -> None:
    report = parse_registration_report({"value": RESOURCE_EXAMPLE})
    assert report.total_users == 23123


def test_field_names_in_another_case_are_accepted() -> None:
    report = parse_registration_report(
        {
            "totalUserCount": 5,
            "userRegistrationCounts": [{"RegistrationStatus": "enabled", "RegistrationCount": 2}],
        }
    )
    assert dict(report.users_by_status).get("enabled") == 2


def test_an_empty_status_list_is_a_valid_report() -> None:
    assert (
        parse_registration_report(
            {"totalUserCount": 0, "userRegistrationCounts": []}
        ).users_by_status
        == ()
    )


def counts(*entries: dict[str, object], total: object = 1) -> dict[str, object]:
    return {"totalUserCount": total, "userRegistrationCounts": list(entries)}


def status(name: object, count: object = 1) -> dict[str, object]:
    return {"registrationStatus": name, "registrationCount": count}


# Each refusal with its whole message: the message is what an operator reads in the log and
# on the landing page, so a change to it is a change a test should see.
@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"userRegistrationCounts": []}, "totalUserCount is missing"),
        ({"totalUserCount": 3}, "userRegistrationCounts is missing"),
        ({"value": [{"id": "x"}]}, "totalUserCount is missing"),
        ({"value": []}, "'value' holds 0 items, expected one report"),
        (
            {"value": [RESOURCE_EXAMPLE, RESOURCE_EXAMPLE]},
            "'value' holds 2 items, expected one report",
        ),
        ({"value": [RESOURCE_EXAMPLE, 5]}, "'value' holds 2 items, expected one report"),
        ({"value": 5}, "'value' is neither a list nor an object"),
        ({"id": "x"}, "response has no totalUserCount or userRegistrationCounts"),
        ([], "response is not a JSON object"),
        ("text", "response is not a JSON object"),
        (counts(total=-1), "totalUserCount is negative"),
        (counts(total=True), "totalUserCount is a boolean, not a count"),
        (counts(total="12a"), "totalUserCount is not an integer count: '12a'"),
        (counts(total="9" * 50), f"totalUserCount is not an integer count: '{'9' * 40}'"),
        (counts(total=1.5), "totalUserCount is not an integer count: 'float'"),
        (counts(total=None), "totalUserCount is not an integer count: 'NoneType'"),
        (counts(total=2**53 + 1), "totalUserCount is larger than a float64 holds exactly (2**53)"),
        (counts(total=2.0**54), "totalUserCount is not an integer count: 'float'"),
        (
            {"totalUserCount": 1, "userRegistrationCounts": {}},
            "userRegistrationCounts is not a list",
        ),
        (counts(5), "userRegistrationCounts[0] is not an object"),
        (counts(status("a"), 5), "userRegistrationCounts[1] is not an object"),
        (counts({"registrationCount": 1}), "userRegistrationCounts[0] has no registration status"),
        (
            counts({"registrationStatus": "a"}),
            "userRegistrationCounts[0] has no registration count",
        ),
        (
            counts(status("")),
            "userRegistrationCounts[0].registrationStatus is not a usable status name",
        ),
        (
            counts(status("  ")),
            "userRegistrationCounts[0].registrationStatus is not a usable status name",
        ),
        (
            counts(status("a\x00")),
            "userRegistrationCounts[0].registrationStatus is not a usable status name",
        ),
        (
            counts(status(5)),
            "userRegistrationCounts[0].registrationStatus is not a usable status name",
        ),
        (
            counts(status("x" * 201)),
            "userRegistrationCounts[0].registrationStatus is not a usable status name",
        ),
        (
            counts({"RegistrationStatus": "", "registrationCount": 1}),
            "userRegistrationCounts[0].RegistrationStatus is not a usable status name",
        ),
        (
            counts(status("a"), {"userRegistrationStatus": "a", "userRegistrationCount": 2}),
            "userRegistrationCounts[1]: status 'a' appears twice",
        ),
        (
            counts(status("a", -1)),
            "userRegistrationCounts[0].registrationCount is negative",
        ),
        (
            counts({"registrationStatus": "a", "RegistrationCount": "x"}),
            "userRegistrationCounts[0].RegistrationCount is not an integer count: 'x'",
        ),
        (
            counts(*[status(f"s{i}") for i in range(MAX_STATUSES + 1)]),
            "userRegistrationCounts holds 1001 entries",
        ),
    ],
)
def test_unusable_documents_raise_the_parsers_own_error(document: object, message: str) -> None:
    with pytest.raises(ReportParseError) as refused:
        parse_registration_report(document)
    assert str(refused.value) == message


def test_the_largest_documented_values_are_accepted() -> None:
    # 2**53 as an int and as a float, a 200-character status, 1,000 statuses: the limits' edges.
    report = parse_registration_report(counts(status("x" * 200, 2.0**53), total=2**53))
    assert report.total_users == 2**53
    assert report.users_by_status == (("x" * 200, 2**53),)
    many = parse_registration_report(counts(*[status(f"s{i}") for i in range(MAX_STATUSES)]))
    assert len(many.users_by_status) == STATUS_SERIES
    assert many.dropped_labels == (("registrationStatus", MAX_STATUSES - STATUS_SERIES),)


def test_statuses_past_the_cap_are_counted_and_graphs_own_are_always_kept() -> None:
    extra = [status(f"s{i}") for i in range(STATUS_SERIES)]
    report = parse_registration_report(counts(*extra, status("registered", 7)))
    assert len(report.users_by_status) == STATUS_SERIES
    assert ("registered", 7) in report.users_by_status  # Graph's enum first, then in order
    assert report.users_by_status[0] == ("s0", 1) and ("s31", 1) not in report.users_by_status
    assert report.dropped_labels == (("registrationStatus", 1),)
    fits = parse_registration_report(counts(*extra))
    assert len(fits.users_by_status) == STATUS_SERIES and fits.dropped_labels == ()


def test_usable_label_edges() -> None:
    assert usable_label("a") and usable_label("x" * MAX_STATUS_LENGTH)
    assert not usable_label("")
    assert not usable_label("x" * (MAX_STATUS_LENGTH + 1))
    assert not usable_label("x\ud800")
    assert not usable_label(5)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=25), children, max_size=5)
    ),
    max_leaves=30,
)
field_names = st.sampled_from(
    [
        "value",
        "totalUserCount",
        "userRegistrationCounts",
        "userRegistrationStatus",
        "registrationStatus",
        "userRegistrationCount",
        "userRegistationCount",
        "registrationCount",
        "id",
    ]
)
report_like = st.recursive(
    json_values,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(field_names, children, max_size=5)
    ),
    max_leaves=40,
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(report_like)
def test_arbitrary_json_gives_a_report_or_the_parsers_error(document: object) -> None:
    try:
        report = parse_registration_report(document)
    except ReportParseError:
        return
    assert isinstance(report, RegistrationReport)
    assert report.total_users >= 0
    assert all(
        isinstance(s, str) and s and isinstance(c, int) and c >= 0
        for s, c in report.users_by_status
    )


def test_policy_methods_and_targets_past_their_caps_are_counted_not_shown() -> None:
    from exporter.reports.policy import METHOD_SERIES, TARGET_SERIES, parse_methods_policy

    configurations = [{"id": f"Method{i}", "state": "enabled"} for i in range(METHOD_SERIES + 5)]
    targets = [{"targetedAuthenticationMethod": f"t{i:03}"} for i in range(TARGET_SERIES + 2)]
    campaign = {"state": "enabled", "includeTargets": targets}
    policy = parse_methods_policy(
        {
            "authenticationMethodConfigurations": configurations,
            "registrationEnforcement": {"authenticationMethodsRegistrationCampaign": campaign},
        }
    )
    assert [name for name, _ in policy.methods] == [f"Method{i}" for i in range(METHOD_SERIES)]
    assert policy.campaign_targets == tuple(f"t{i:03}" for i in range(TARGET_SERIES))
    assert policy.dropped_labels == (("method", 5), ("campaign_target", 2))
    assert parse_methods_policy({"authenticationMethodConfigurations": []}).dropped_labels == ()


def test_a_method_listed_twice_in_one_policy_is_refused_naming_it() -> None:
    from exporter.reports.policy import parse_methods_policy

    configurations = [
        {"id": "Sms", "state": "enabled"},
        {"id": "Fido2", "state": "enabled"},
        {"id": "Sms", "state": "disabled"},
    ]
    with pytest.raises(ReportParseError) as refused:
        parse_methods_policy({"authenticationMethodConfigurations": configurations})
    assert str(refused.value) == (
        "authenticationMethodConfigurations[2].id 'Sms' appears twice in the policy"
    )
