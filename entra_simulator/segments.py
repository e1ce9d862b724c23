"""Roles and groups of a simulated tenant, and the truth of its segments.

Every tenant gets a small directory on first use (:func:`directory_of`): privileged admins by
direct assignment, by PIM eligibility and through a role-assignable group; a service principal
and a disabled user (one the report does not list) holding roles; a role that is not
privileged; groups with nested groups, devices and a disabled user among their members.
:func:`segments_truth` walks the users and that directory the slow, obvious way, so tests can
compare the exporter's numbers with it exactly.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from entra_simulator.directory import DETAIL_FLAGS, SimTenant, detail_user, tenant_users, user_id

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
SECURITY_ADMIN = "194ae4cb-b126-40b2-bd5b-6091b380977d"
CONDITIONAL_ACCESS_ADMIN = "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9"
EXCHANGE_ADMIN = "29232cdf-9323-42fd-ade2-1d097af3e4de"
HELPDESK_ADMIN = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
REPORTS_READER = "4a5d8f65-41da-4de4-8968-e035b65339cf"  # not a privileged role
USER = "#microsoft.graph.user"
GROUP = "#microsoft.graph.group"
DEVICE = "#microsoft.graph.device"
SERVICE_PRINCIPAL = "#microsoft.graph.servicePrincipal"

# The strength classes of the contract, written out the slow way for the truth.
STRENGTH_ORDER = ("phishing_resistant", "passwordless", "mfa", "phone", "unclassified", "none")
STRENGTH_OF_METHOD = {
    "fido2SecurityKey": "phishing_resistant",
    "windowsHelloForBusiness": "phishing_resistant",
    "passKeyDeviceBound": "phishing_resistant",
    "passKeyDeviceBoundAuthenticator": "phishing_resistant",
    "passKeyDeviceBoundWindowsHello": "phishing_resistant",
    "passKeySynced": "phishing_resistant",
    "macOsSecureEnclaveKey": "phishing_resistant",
    "microsoftAuthenticatorPasswordless": "passwordless",
    "microsoftAuthenticatorPush": "mfa",
    "softwareOneTimePasscode": "mfa",
    "hardwareOneTimePasscode": "mfa",
    "mobilePhone": "phone",
    "alternateMobilePhone": "phone",
    "officePhone": "phone",
    "email": "none",
    "securityQuestion": "none",
    "temporaryAccessPass": "none",
    "appPassword": "none",
}
STATUS_OF_FLAG = {
    "isSsprRegistered": "registered",
    "isSsprEnabled": "enabled",
    "isSsprCapable": "capable",
    "isMfaRegistered": "mfaRegistered",
    "isMfaCapable": "mfaCapable",
    "isPasswordlessCapable": "passwordlessCapable",
}


def object_id(tenant: SimTenant, label: str) -> str:
    """A stable object ID for a named non-user object of the tenant."""
    digest = hashlib.blake2b(f"{tenant.tenant_id}:{label}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


@dataclass(slots=True)
class SimGroup:
    """A group: its direct members as (``@odata.type``, id), nested groups among them."""

    id: str
    name: str
    members: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SimAssignment:
    """A role assignment (``eligible``: a PIM eligibility instance instead)."""

    id: str
    role_id: str
    principal_type: str
    principal_id: str
    eligible: bool = False


@dataclass(slots=True)
class SimDirectory:
    """A tenant's groups (by ID) and role assignments."""

    groups: dict[str, SimGroup] = field(default_factory=dict)
    assignments: list[SimAssignment] = field(default_factory=list)

    def group_named(self, name: str) -> SimGroup:
        return next(group for group in self.groups.values() if group.name == name)

    def transitive_members(self, group_id: str) -> list[tuple[str, str]]:
        """Every member, nested groups and theirs included, each once, in a stable order."""
        seen: set[str] = set()
        found: list[tuple[str, str]] = []
        pending = [group_id]
        while pending:
            for kind, member in self.groups[pending.pop(0)].members:
                if member in seen:
                    continue
                seen.add(member)
                found.append((kind, member))
                if kind == GROUP and member in self.groups:
                    pending.append(member)
        return found


def build_directory(tenant: SimTenant) -> SimDirectory:
    """The default directory of ``tenant`` (see the module doc); sizes scale with its users."""
    users = tenant_users(tenant)
    privileged, group_share = tenant.privileged_admins, 10
    directory = SimDirectory()

    def add_group(name: str, members: list[tuple[str, str]]) -> SimGroup:
        group = SimGroup(object_id(tenant, f"group:{name}"), name, members)
        directory.groups[group.id] = group
        return group

    def assign(role: str, kind: str, principal: str, eligible: bool = False) -> None:
        label = f"assignment:{len(directory.assignments)}"
        directory.assignments.append(
            SimAssignment(object_id(tenant, label), role, kind, principal, eligible)
        )

    admins = list(range(min(privileged, users)))
    direct, through_group = admins[: len(admins) // 2], admins[len(admins) // 2 :]
    for index, user in enumerate(direct):
        role = (GLOBAL_ADMIN, SECURITY_ADMIN, HELPDESK_ADMIN)[index % 3]
        assign(role, USER, user_id(tenant, user), eligible=index % 3 == 2)
    tier0 = add_group("tier0-admins", [(USER, user_id(tenant, u)) for u in through_group])
    assign(CONDITIONAL_ACCESS_ADMIN, GROUP, tier0.id)
    # Global Administrators every way there is: directly (above), through a role-assignable
    # group, and eligible only (PIM) on top of another active role.
    global_admins = add_group(
        "global-admins", [(USER, user_id(tenant, u)) for u in through_group[:2]]
    )
    assign(GLOBAL_ADMIN, GROUP, global_admins.id)
    if len(direct) > 1:
        assign(GLOBAL_ADMIN, USER, user_id(tenant, direct[1]), eligible=True)
    assign(GLOBAL_ADMIN, SERVICE_PRINCIPAL, object_id(tenant, "service-principal"))
    assign(EXCHANGE_ADMIN, USER, object_id(tenant, "disabled-admin"))
    if users > privileged:
        assign(REPORTS_READER, USER, user_id(tenant, privileged))
    tenant.admin_indexes = frozenset(range(min(privileged + 1, users)))
    share = max(1, group_share)
    emea = add_group(
        "finance-emea",
        [(USER, user_id(tenant, i)) for i in range(users) if i % share == 8 % share]
        + [(DEVICE, object_id(tenant, "device:emea"))],
    )
    add_group(
        "finance",
        [(USER, user_id(tenant, i)) for i in range(users) if i % share == 7 % share]
        + [(GROUP, emea.id), (DEVICE, object_id(tenant, "device:finance"))]
        + [(USER, object_id(tenant, "disabled-member"))],
    )
    add_group("devices-only", [(DEVICE, object_id(tenant, "device:lab"))])
    # Left out of the MFA policies (entra_simulator.conditional_access): a few accounts.
    add_group("break-glass", [(USER, user_id(tenant, i)) for i in {1, 2, 3, users - 1} if i >= 0])
    if tenant.group_size is None:
        add_group("rollout-wave-1", [(USER, user_id(tenant, i)) for i in range(0, users, 3)])
        return directory
    size = min(tenant.group_size, users // 2)
    for wave in (1, 2):
        members = range((wave - 1) * size, wave * size)
        add_group(f"rollout-wave-{wave}", [(USER, user_id(tenant, i)) for i in members])
    return directory


def directory_of(tenant: SimTenant) -> SimDirectory:
    """The tenant's directory, built on first use."""
    if tenant.directory is None:
        tenant.directory = build_directory(tenant)
    directory: SimDirectory = tenant.directory
    return directory


def privileged_ids(directory: SimDirectory, roles: set[str], include_eligible: bool) -> set[str]:
    ids: set[str] = set()
    for assignment in directory.assignments:
        if assignment.role_id not in roles or (assignment.eligible and not include_eligible):
            continue
        if assignment.principal_type == USER:
            ids.add(assignment.principal_id)
        elif assignment.principal_type == GROUP:
            ids |= {
                member
                for kind, member in directory.transitive_members(assignment.principal_id)
                if kind == USER
            }
    return ids


def _strength(methods: list[str]) -> str:
    classes = {STRENGTH_OF_METHOD.get(method, "unclassified") for method in methods}
    return next((name for name in STRENGTH_ORDER if name in classes), "none")


def _empty_counts() -> dict[str, Any]:
    return {
        "users": 0,
        "statuses": dict.fromkeys(STATUS_OF_FLAG.values(), 0),
        "strengths": dict.fromkeys(STRENGTH_ORDER, 0),
    }


def _add(counts: dict[str, Any], user: dict[str, Any]) -> None:
    counts["users"] += 1
    for flag in DETAIL_FLAGS:
        counts["statuses"][STATUS_OF_FLAG[flag]] += user[flag] is True
    counts["strengths"][_strength(user["methodsRegistered"])] += 1


RETIREMENT_GENERAL, RETIREMENT_LATE = "2027-02-01", "2027-07-01"


def segments_truth(
    tenant: SimTenant,
    privileged_roles: tuple[str, ...] = (),
    include_eligible: bool = False,
    groups: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What the exporter must count for ``tenant`` with these segment settings.

    ``phone_only``: users whose strongest method is a phone, by the date their cohort loses
    SMS and voice — Global Administrators (active, or eligible with ``include_eligible``;
    directly or through a group) and #EXT# accounts on the later date.
    """
    directory = directory_of(tenant)
    privileged = privileged_ids(directory, set(privileged_roles), include_eligible)
    global_admins = privileged_ids(directory, {GLOBAL_ADMIN}, include_eligible)
    members = {
        name: {m for kind, m in directory.transitive_members(group_id) if kind == USER}
        for name, group_id in (groups or {}).items()
    }
    truth: dict[str, Any] = {
        "segments": {},
        "groups": {name: _empty_counts() for name in members},
        "system_preferred": {},
        "data_timestamp": None,
        "phone_only": {RETIREMENT_GENERAL: 0, RETIREMENT_LATE: 0},
    }
    for index in range(tenant_users(tenant)):
        user = detail_user(tenant, index)
        role = (
            "privileged_admin"
            if user["id"] in privileged
            else ("admin" if user["isAdmin"] else "user")
        )
        key = (user["userType"] or "unknown", role)
        _add(truth["segments"].setdefault(key, _empty_counts()), user)
        for name, ids in members.items():
            if user["id"] in ids:
                _add(truth["groups"][name], user)
        if _strength(user["methodsRegistered"]) == "phone":
            late = user["id"] in global_admins or "#EXT#" in user["userPrincipalName"]
            truth["phone_only"][RETIREMENT_LATE if late else RETIREMENT_GENERAL] += 1
        first = (user["systemPreferredAuthenticationMethods"] or ["none"])[0]
        truth["system_preferred"][first] = truth["system_preferred"].get(first, 0) + 1
        stamp = user["lastUpdatedDateTime"]
        if truth["data_timestamp"] is None or stamp > truth["data_timestamp"]:
            truth["data_timestamp"] = stamp
    return truth


def _filtered_role(params: dict[str, str]) -> str | None:
    """The role of ``$filter=roleDefinitionId eq '…'`` (None: no filter)."""
    text = params.get("$filter")
    if not text:
        return None
    prefix, quote = "roleDefinitionId eq '", "'"
    if not (text.startswith(prefix) and text.endswith(quote)):
        raise ValueError(f"Invalid filter clause: {text}")
    return text[len(prefix) : -len(quote)]


def role_page(
    tenant: SimTenant, eligible: bool, params: dict[str, str]
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of roleAssignments (or roleEligibilityScheduleInstances): items, next offset."""
    role = _filtered_role(params)
    expand = params.get("$expand") == "principal"
    matching = [
        a
        for a in directory_of(tenant).assignments
        if a.eligible == eligible and (role is None or a.role_id == role)
    ]
    offset = int(params.get("$skiptoken", "0"))
    size = max(1, tenant.role_page_size)
    items = []
    for a in matching[offset : offset + size]:
        item: dict[str, Any] = {
            "id": a.id,
            "roleDefinitionId": a.role_id,
            "principalId": a.principal_id,
            "directoryScopeId": "/",
        }
        if expand:
            item["principal"] = {"@odata.type": a.principal_type, "id": a.principal_id}
        items.append(item)
    following = offset + size
    return items, following if following < len(matching) else None


def members_page(
    tenant: SimTenant, group_id: str, params: dict[str, str]
) -> tuple[list[dict[str, Any]], int | None, int] | None:
    """One page of a group's transitiveMembers: items, next offset, page number (None: 404)."""
    directory = directory_of(tenant)
    if group_id not in directory.groups:
        return None
    top = int(params.get("$top", "100"))
    if not 1 <= top <= 999:
        raise ValueError("$top must be between 1 and 999")
    offset = int(params.get("$skiptoken", "0"))
    members = directory.transitive_members(group_id)
    select = [name for name in params.get("$select", "").split(",") if name]
    items = []
    for kind, member in members[offset : offset + top]:
        item: dict[str, Any] = {"@odata.type": kind, "id": member}
        if not select or "displayName" in select:
            item["displayName"] = f"object {member[:8]}"
        items.append(item)
    following = offset + top
    return items, following if following < len(members) else None, offset // top
