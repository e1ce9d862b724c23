"""Security defaults and Conditional Access policies of a simulated tenant, and the truth of who
must use MFA there.

Each tenant has a ``ca_variant`` (:data:`VARIANTS`): no policy at all; break-glass exclusions
(all users, all apps, a break-glass group left out; a legacy-authentication block, a disabled
policy, a group Graph no longer has, a state Microsoft adds later); admins by role with a
report-only all-users policy and ``mfa OR compliantDevice``; partial scopes (some apps, a
platform condition), an authentication strength for a group, guests and external users;
security defaults on; and one (:data:`FORBIDDEN`) that answers 403. :func:`enforcement_truth`
classes every user the slow, obvious way, written apart from the exporter, for the tests.
"""

from __future__ import annotations

from typing import Any

from entra_simulator.directory import SimTenant, detail_user, tenant_users
from entra_simulator.segments import (
    GLOBAL_ADMIN,
    SECURITY_ADMIN,
    USER,
    directory_of,
    object_id,
    privileged_ids,
)

NONE, EXCLUSIONS, ADMINS_REPORT_ONLY, PARTIAL, SECURITY_DEFAULTS, FORBIDDEN, BENCH = range(7)
VARIANTS = 7
CLASSES = (
    "conditional_access",
    "security_defaults",
    "conditional_access_partial",
    "excluded",
    "report_only",
    "none",
)
PAGE_SIZE = 4  # Graph pages these as it likes: small pages exercise the walk (5 policies: 2)
FORBIDDEN_BODY = {
    "error": {
        "code": "Authorization_RequestDenied",
        "message": "Insufficient privileges to complete the operation.",
    }
}


def _policy(
    tenant: SimTenant, name: str, state: str, users: dict[str, Any], **parts: Any
) -> dict[str, Any]:
    """A policy as Graph sends it: every list present (empty when unset), nulls where Graph
    sends null."""
    conditions = {
        "userRiskLevels": [],
        "signInRiskLevels": [],
        "clientAppTypes": parts.get("client_apps", ["all"]),
        "servicePrincipalRiskLevels": [],
        "insiderRiskLevels": None,
        "platforms": parts.get("platforms"),
        "locations": None,
        "devices": None,
        "clientApplications": None,
        "authenticationFlows": None,
        "applications": {
            "includeApplications": parts.get("apps", ["All"]),
            "excludeApplications": [],
            "includeUserActions": [],
            "includeAuthenticationContextClassReferences": [],
            "applicationFilter": None,
        },
        "users": {
            "includeUsers": [],
            "excludeUsers": [],
            "includeGroups": [],
            "excludeGroups": [],
            "includeRoles": [],
            "excludeRoles": [],
            "includeGuestsOrExternalUsers": None,
            "excludeGuestsOrExternalUsers": None,
            **users,
        },
    }
    grant = parts.get("grant", {"operator": "OR", "builtInControls": ["mfa"]})
    return {
        "id": object_id(tenant, f"ca:{name}"),
        "displayName": name,
        "createdDateTime": "2026-01-10T09:00:00Z",
        "state": state,
        "conditions": conditions,
        "grantControls": None
        if grant is None
        else {
            "operator": grant.get("operator", "OR"),
            "builtInControls": grant.get("builtInControls", []),
            "customAuthenticationFactors": [],
            "termsOfUse": [],
            "authenticationStrength": grant.get("authenticationStrength"),
        },
        "sessionControls": None,
        "someFieldMicrosoftAddsLater": {"x": 1},
    }


def break_glass_group(tenant: SimTenant) -> str:
    """The break-glass group's ID (users 1, 2, 3 and the last)."""
    return directory_of(tenant).group_named("break-glass").id


def policies_of(tenant: SimTenant) -> list[dict[str, Any]]:
    """Every Conditional Access policy of the tenant's variant."""
    directory = directory_of(tenant)
    finance = directory.group_named("finance").id
    rollout = directory.group_named("rollout-wave-1").id
    strength = {"id": "00000000-0000-0000-0000-000000000004", "displayName": "Phishing-resistant"}
    every, p = {"includeUsers": ["All"]}, _policy
    variant = tenant.ca_variant
    if variant == EXCLUSIONS:
        stale, glass = object_id(tenant, "group:deleted"), break_glass_group(tenant)
        return [
            p(tenant, "all users", "enabled", {**every, "excludeGroups": [glass]}),
            p(tenant, "block legacy authentication", "enabled", every,
              client_apps=["exchangeActiveSync", "other"], grant={"builtInControls": ["block"]}),
            p(tenant, "old pilot", "disabled", every),
            p(tenant, "stale group", "enabled", {"includeGroups": [stale]}),
            p(tenant, "rehearsal", "enabledForRehearsal", every),
        ]  # fmt: skip
    if variant == ADMINS_REPORT_ONLY:
        return [
            p(tenant, "admins", "enabled", {"includeRoles": [GLOBAL_ADMIN, SECURITY_ADMIN]}),
            p(tenant, "everyone, report-only", "enabledForReportingButNotEnforced", every),
            p(tenant, "mfa or compliant", "enabled", every,
              grant={"operator": "OR", "builtInControls": ["mfa", "compliantDevice"]}),
        ]  # fmt: skip
    if variant == PARTIAL:
        sharepoint = "00000003-0000-0ff1-ce00-000000000000"
        return [
            p(tenant, "some apps", "enabled", every, apps=[sharepoint]),
            p(tenant, "finance strength", "enabled", {"includeGroups": [finance]},
              grant={"authenticationStrength": strength}),
            p(tenant, "guests", "enabled", {"includeUsers": ["GuestsOrExternalUsers"]}),
            p(tenant, "rollout on mobile", "enabled", {"includeGroups": [rollout]},
              platforms={"includePlatforms": ["android", "iOS"], "excludePlatforms": []},
              grant={"operator": "AND", "builtInControls": ["mfa", "compliantDevice"]}),
        ]  # fmt: skip
    if variant == BENCH:
        return _bench_policies(tenant)
    return []


def _bench_policies(tenant: SimTenant) -> list[dict[str, Any]]:
    """20 policies naming 10 groups (the tenant's, and two Graph no longer has), for the
    benchmark of the classification's cost."""
    groups = sorted(group.id for group in directory_of(tenant).groups.values())
    named = [*groups, object_id(tenant, "group:gone-1"), object_id(tenant, "group:gone-2")][-10:]
    found = []
    for index in range(20):
        include, exclude = named[index % 10], named[(index + 3) % 10]
        users = {"includeGroups": [include], "excludeGroups": [exclude]}
        if index % 4 == 0:
            users = {"includeUsers": ["All"], "excludeGroups": [exclude]}
        state = "enabledForReportingButNotEnforced" if index % 5 == 4 else "enabled"
        apps = ["All"] if index % 3 else ["00000003-0000-0ff1-ce00-000000000000"]
        found.append(_policy(tenant, f"bench {index}", state, users, apps=apps))
    return found


# ----------------------------------------------------------------------------- the truth


def _members(tenant: SimTenant, group_id: str) -> set[str]:
    directory = directory_of(tenant)
    if group_id not in directory.groups:
        return set()
    return {m for kind, m in directory.transitive_members(group_id) if kind == USER}


def _side(tenant: SimTenant, users: dict[str, Any], side: str, user: dict[str, Any]) -> bool:
    named = users[f"{side}Users"]
    guest = user["userType"] == "guest" or "#EXT#" in user["userPrincipalName"]
    if "All" in named or user["id"] in named:
        return True
    if guest and ("GuestsOrExternalUsers" in named or users[f"{side}GuestsOrExternalUsers"]):
        return True
    if any(user["id"] in _members(tenant, g) for g in users[f"{side}Groups"]):
        return True
    roles = set(users[f"{side}Roles"])
    return bool(roles) and user["id"] in privileged_ids(directory_of(tenant), roles, False)


def _mfa_scope(policy: dict[str, Any]) -> str | None:
    """``all`` or ``partial`` for an MFA policy (enabled or report-only), else None."""
    grant = policy["grantControls"]
    if policy["state"] not in ("enabled", "enabledForReportingButNotEnforced") or grant is None:
        return None
    controls = grant["builtInControls"]
    mfa = "mfa" in controls or grant["authenticationStrength"] is not None
    others = [c for c in controls if c != "mfa"]
    if "block" in controls or not mfa or (others and grant["operator"] != "AND"):
        return None
    conditions = policy["conditions"]
    narrowed = conditions["platforms"] or conditions["locations"] or conditions["devices"]
    everything = conditions["applications"]["includeApplications"] == ["All"]
    all_clients = conditions["clientAppTypes"] in ([], ["all"])
    return "all" if everything and all_clients and not narrowed else "partial"


def user_class(tenant: SimTenant, user: dict[str, Any], policies: list[dict[str, Any]]) -> str:
    """The contract's class of one user, the first that holds."""
    covered, included_enabled = set(), False
    for policy in policies:
        scope = _mfa_scope(policy)
        users = policy["conditions"]["users"]
        if scope is None or not _side(tenant, users, "include", user):
            continue
        excluded = _side(tenant, users, "exclude", user)
        if policy["state"] == "enabled":
            included_enabled = True
            if not excluded:
                covered.add(scope)
        elif not excluded:
            covered.add("report_only")
    if "all" in covered:
        return "conditional_access"
    if tenant.ca_variant == SECURITY_DEFAULTS:
        return "security_defaults"
    if "partial" in covered:
        return "conditional_access_partial"
    if included_enabled:
        return "excluded"
    return "report_only" if "report_only" in covered else "none"


def enforcement_truth(
    tenant: SimTenant, privileged_roles: tuple[str, ...] = ()
) -> dict[tuple[str, str, str, str], int]:
    """Users per (user_type, role, class, mfa_registered "true"/"false")."""
    policies = policies_of(tenant)
    privileged = privileged_ids(directory_of(tenant), set(privileged_roles), False)
    truth: dict[tuple[str, str, str, str], int] = {}
    for index in range(tenant_users(tenant)):
        user = detail_user(tenant, index)
        role = (
            "privileged_admin"
            if user["id"] in privileged
            else "admin"
            if user["isAdmin"]
            else "user"
        )
        key = (user["userType"] or "unknown", role, user_class(tenant, user, policies),
               "true" if user["isMfaRegistered"] is True else "false")  # fmt: skip
        truth[key] = truth.get(key, 0) + 1
    return truth


def policy_counts_truth(tenant: SimTenant) -> dict[tuple[str, str], int]:
    """Policies per (state, kind), as the contract counts them."""
    counts: dict[tuple[str, str], int] = {}
    for policy in policies_of(tenant):
        grant = policy["grantControls"]
        scope = None
        if grant is not None and "block" in grant["builtInControls"]:
            kind = "block"
        else:
            scope = _mfa_scope({**policy, "state": "enabled"})
            kind = f"mfa_{scope}" if scope else "other"
        counts[(policy["state"], kind)] = counts.get((policy["state"], kind), 0) + 1
    return counts


class ConditionalAccessHandler:
    """The handler's part for ``identitySecurityDefaultsEnforcementPolicy`` and
    ``identity/conditionalAccess/policies`` (mixed into the simulator's request handler)."""

    def _tenant_policies(self, path: str, query: str) -> None:
        """Security defaults, Conditional Access, or a partner's customer listing."""
        if path.startswith("/v1.0/tenantRelationships/"):
            handler: Any = self
            handler._partner_listing(path, query)
        elif path.endswith("/identitySecurityDefaultsEnforcementPolicy"):
            self._security_defaults(query)
        else:
            self._ca_policies(path, query)

    def _security_defaults(self, query: str) -> None:
        handler: Any = self
        call = handler._graph_call(query, units=1)
        if call is None:
            return
        tenant = call[0]
        handler._record("security_defaults", tenant)
        if tenant.ca_variant == FORBIDDEN:
            handler._json(403, FORBIDDEN_BODY)
            return
        handler._json(200, {"id": "00000000-0000-0000-0000-000000000001",
                            "isEnabled": tenant.ca_variant == SECURITY_DEFAULTS})  # fmt: skip

    def _ca_policies(self, path: str, query: str) -> None:
        handler: Any = self
        call = handler._graph_call(query)
        if call is None:
            return
        tenant, params = call
        if handler.sim.ca_limits is not None and not handler.sim.ca_limits.admit(tenant.tenant_id):
            # Graph's "identity protection and conditional access" limit: no Retry-After.
            handler._graph_error(429, "TooManyRequests", "Too many requests.")
            return
        handler._record("ca_policies", tenant)
        if tenant.ca_variant == FORBIDDEN:
            handler._json(403, FORBIDDEN_BODY)
            return
        policies = policies_of(tenant)
        offset = int(params.get("$skiptoken", "0"))
        # Small pages exercise the walk; the benchmark's tenant pages as Graph would, at 100.
        following = offset + (100 if tenant.ca_variant == BENCH else PAGE_SIZE)
        handler._send_page(path, params, policies[offset:following],
                           following if following < len(policies) else None)  # fmt: skip
