"""The enforcement rules of the contract, row by row, and the worked example of
docs/enforcement.md; hostile listings refused or counted as the contract says."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.reports.enforcement import (
    CLASSES,
    MAX_POLICIES,
    Classifier,
    EnforcementContext,
    EnforcementPolicies,
    PolicyListing,
    parse_policy,
)
from exporter.reports.registration import ReportParseError

BREAK_GLASS = "11111111-1111-4111-8111-111111111111"
FINANCE = "22222222-2222-4222-8222-222222222222"
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"


def policy(
    name: str, state: str = "enabled", users: dict[str, Any] | None = None, **parts: Any
) -> dict[str, Any]:
    return {
        "id": name,
        "state": state,
        "conditions": {
            "applications": {"includeApplications": parts.get("apps", ["All"])},
            "users": users or {"includeUsers": ["All"]},
            "clientAppTypes": parts.get("client_apps", ["all"]),
            **parts.get("conditions", {}),
        },
        "grantControls": parts.get("grant", {"operator": "OR", "builtInControls": ["mfa"]}),
    }


@pytest.mark.parametrize(
    ("document", "kind"),
    [
        (policy("p"), "mfa_all"),
        (
            policy("p", grant={"operator": "OR", "builtInControls": ["mfa", "compliantDevice"]}),
            "other",
        ),
        (
            policy("p", grant={"operator": "AND", "builtInControls": ["mfa", "compliantDevice"]}),
            "mfa_all",
        ),
        (policy("p", grant={"authenticationStrength": {"id": "x"}}), "mfa_all"),
        (policy("p", grant={"builtInControls": ["block"]}), "block"),
        (policy("p", grant={"builtInControls": ["mfa", "block"]}), "block"),
        (policy("p", grant=None), "other"),
        (policy("p", apps=["00000003-0000-0ff1-ce00-000000000000"]), "mfa_partial"),
        (policy("p", client_apps=["browser"]), "mfa_partial"),
        (policy("p", client_apps=[]), "mfa_all"),
        (policy("p", conditions={"locations": {"includeLocations": ["All"]}}), "mfa_partial"),
        (policy("p", conditions={"platforms": None, "signInRiskLevels": []}), "mfa_all"),
        (policy("p", conditions={"insiderRiskLevels": "minor"}), "mfa_partial"),
        (policy("p", conditions={"devices": {"deviceFilter": {"rule": "x"}}}), "mfa_partial"),
        (
            policy("p", conditions={"authenticationFlows": {"transferMethods": "deviceCodeFlow"}}),
            "mfa_partial",
        ),
        ({"id": "p", "state": "enabled", "conditions": None, "grantControls": None}, "other"),
        ({"id": "p", "state": "enabled"}, "other"),  # no conditions, no grant at all
    ],
)
def test_each_policy_is_of_the_kind_the_contract_says(document: dict[str, Any], kind: str) -> None:
    assert parse_policy(document, 0).kind == kind


def test_a_disabled_mfa_policy_is_disabled_mfa_all_and_a_new_state_is_no_mfa_policy() -> None:
    disabled = parse_policy(policy("d", "disabled"), 0)
    assert (disabled.state, disabled.kind, disabled.mfa) == ("disabled", "mfa_all", False)
    future = parse_policy(policy("f", "enabledForRehearsal"), 0)
    assert (future.kind, future.mfa) == ("mfa_all", False)
    policies = EnforcementPolicies(False, (disabled, future))
    counts = policies.counts()
    assert ("disabled", "mfa_all", 1) in counts and ("enabledForRehearsal", "mfa_all", 1) in counts
    assert len(counts) == 16  # 3 known states and the new one, x 4 kinds
    # What a tenant keeps between polls says the same counts.
    assert policies.summary().counts == counts
    known = EnforcementPolicies(True, (disabled,))
    assert known.summary().counts == known.counts() and known.summary().security_defaults


def classes_of(documents: list[dict[str, Any]], users: dict[str, tuple[set[str], bool]],
               defaults: bool = False) -> dict[str, str]:  # fmt: skip
    """Each user's class; ``users``: name -> (the named objects they are in, guest)."""
    policies = EnforcementPolicies(
        defaults, tuple(parse_policy(d, i) for i, d in enumerate(documents))
    )
    sets = []
    for mfa in policies.mfa_policies:
        for side in (mfa.include, mfa.exclude):
            sets.append({name for name, (memberships, _) in users.items()
                         if memberships & ({*side.groups, *side.roles})})  # fmt: skip
    sides = tuple(((2 * i,), (2 * i + 1,)) for i in range(len(policies.mfa_policies)))
    classifier = Classifier(EnforcementContext(policies, (), sides))
    found = {}
    for name, (_, guest) in users.items():
        in_sets = tuple(i for i, members in enumerate(sets) if name in members)
        found[name] = CLASSES[classifier.class_of(in_sets, guest)]
    return found


WORKED = [
    policy("A", users={"includeUsers": ["All"], "excludeGroups": [BREAK_GLASS]}),
    policy("B", users={"includeRoles": [GLOBAL_ADMIN]},
           grant={"operator": "OR", "builtInControls": ["mfa", "compliantDevice"]}),
    policy("C", "enabledForReportingButNotEnforced"),
    policy("D", users={"includeGroups": [FINANCE]}, grant={"authenticationStrength": {"id": "s"}},
           conditions={"platforms": {"includePlatforms": ["iOS"]}}),
]  # fmt: skip
PEOPLE = {
    "Ann": ({FINANCE}, False),
    "Bob": ({BREAK_GLASS}, False),
    "Cat": ({BREAK_GLASS, GLOBAL_ADMIN}, False),
    "Dan": ({FINANCE, BREAK_GLASS}, False),
}


def test_the_worked_example_of_the_docs() -> None:
    assert classes_of(WORKED, PEOPLE) == {
        "Ann": "conditional_access",
        "Bob": "excluded",
        "Cat": "excluded",
        "Dan": "conditional_access_partial",
    }
    without_a = [policy("A", "disabled", users=WORKED[0]["conditions"]["users"]), *WORKED[1:]]
    assert classes_of(without_a, PEOPLE) == {
        "Ann": "conditional_access_partial",
        "Bob": "report_only",
        "Cat": "report_only",
        "Dan": "conditional_access_partial",
    }
    assert set(classes_of([], PEOPLE, defaults=True).values()) == {"security_defaults"}
    assert set(classes_of([], PEOPLE).values()) == {"none"}


def test_guests_and_external_users() -> None:
    guests = [policy("G", users={"includeUsers": ["GuestsOrExternalUsers"]})]
    users = {"guest": (set(), True), "member": (set(), False)}
    assert classes_of(guests, users) == {"guest": "conditional_access", "member": "none"}
    typed = [
        policy(
            "T",
            users={
                "includeGuestsOrExternalUsers": {
                    "guestOrExternalUserTypes": "b2bCollaborationGuest"
                }
            },
        )
    ]
    assert classes_of(typed, users) == {"guest": "conditional_access", "member": "none"}
    excluded = [
        policy("E", users={"includeUsers": ["All"], "excludeUsers": ["GuestsOrExternalUsers"]})
    ]
    assert classes_of(excluded, users) == {"guest": "excluded", "member": "conditional_access"}


@pytest.mark.parametrize(
    ("item", "refusal"),
    [
        ("x", "value[0] is not an object"),
        ({"state": "enabled"}, "value[0].id is missing"),
        ({"id": "p", "state": None}, "value[0].state is not a usable name"),
        ({"id": "p", "state": "enabled", "conditions": "x"}, "value[0].conditions is not an object"),
        ({"id": "p", "state": "enabled", "conditions": {"users": {"includeUsers": "All"}}},
         "value[0].conditions.users.includeUsers is not a list of strings"),
        ({"id": "p", "state": "enabled", "grantControls": {"builtInControls": [1]}},
         "value[0].grantControls.builtInControls is not a list of strings"),
    ],
)  # fmt: skip
def test_unusable_policies_are_refused_naming_where(item: Any, refusal: str) -> None:
    with pytest.raises(ReportParseError) as refused:
        PolicyListing().add_page({"value": [item]})
    assert str(refused.value) == refusal


def test_listings_count_each_policy_once_and_refuse_past_their_bound() -> None:
    listing = PolicyListing()
    page = {"value": [policy("a"), policy("b"), policy("a")], "@odata.nextLink": "n"}
    assert listing.add_page(json.dumps(page).encode()) == ("n", 3, 2)
    assert listing.add_page({"value": [policy("b")]}) == (None, 1, 0)  # nothing new
    assert [p.id for p in listing.policies()] == ["a", "b"]
    with pytest.raises(ReportParseError, match="not JSON"):
        listing.add_page(b"<html>")
    flood = PolicyListing()
    with pytest.raises(ReportParseError, match=f"more than {MAX_POLICIES}"):
        flood.add_page({"value": [policy(f"p{i}") for i in range(MAX_POLICIES + 1)]})


def test_unknown_ids_and_keywords_name_nobody_and_500_groups_are_kept() -> None:
    groups = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(500)]
    users = {"includeUsers": ["None", "NotAGuid", "All"], "includeGroups": groups}
    parsed = parse_policy(policy("p", users=users, somethingNew={"x": 1}), 0)
    assert parsed.include.everyone and parsed.include.users == frozenset()
    assert len(parsed.include.groups) == 500
    named = EnforcementPolicies(False, (parsed,)).named_groups()
    assert len(named) == 500
