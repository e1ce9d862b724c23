"""Report parsing: every shape Microsoft's documentation shows, and what must be refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.report import RegistrationReport, ReportParseError, parse_registration_report

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


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"userRegistrationCounts": []}, "totalUserCount is missing"),
        ({"totalUserCount": 3}, "userRegistrationCounts is missing"),
        ({"value": [{"id": "x"}]}, "totalUserCount is missing"),
        ({"value": []}, "expected one report"),
        ({"value": [RESOURCE_EXAMPLE, RESOURCE_EXAMPLE]}, "expected one report"),
        ([], "not a JSON object"),
        ("text", "not a JSON object"),
        ({"totalUserCount": -1, "userRegistrationCounts": []}, "negative"),
        ({"totalUserCount": True, "userRegistrationCounts": []}, "boolean"),
        ({"totalUserCount": "12a", "userRegistrationCounts": []}, "not an integer"),
        ({"totalUserCount": 1.5, "userRegistrationCounts": []}, "not an integer"),
        ({"totalUserCount": 1, "userRegistrationCounts": {}}, "not a list"),
        ({"totalUserCount": 1, "userRegistrationCounts": [5]}, "not an object"),
        (
            {"totalUserCount": 1, "userRegistrationCounts": [{"registrationCount": 1}]},
            "no registration status",
        ),
        (
            {"totalUserCount": 1, "userRegistrationCounts": [{"registrationStatus": "a"}]},
            "no registration count",
        ),
        (
            {
                "totalUserCount": 1,
                "userRegistrationCounts": [{"registrationStatus": "", "registrationCount": 1}],
            },
            "not a usable status",
        ),
        (
            {
                "totalUserCount": 1,
                "userRegistrationCounts": [
                    {"registrationStatus": "a", "registrationCount": 1},
                    {"userRegistrationStatus": "a", "userRegistrationCount": 2},
                ],
            },
            "appears twice",
        ),
    ],
)
def test_unusable_documents_raise_the_parsers_own_error(document: object, message: str) -> None:
    with pytest.raises(ReportParseError, match=message):
        parse_registration_report(document)


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
