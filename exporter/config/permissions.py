"""The one permissions story: which application permission (Microsoft Graph) each Graph call
needs, and what a tenant's configuration therefore needs.

``--check-config``, the 403 messages of the collectors, the landing page's hints, the alert
descriptions, the README and docs/configuration.md all tell this table (a test holds the README
and the docs to it). Every permission is an *application* permission, granted with admin consent
in each tenant.
"""

from __future__ import annotations

from typing import NamedTuple

from exporter.config.model import AUTO_SOURCE, DEFAULT_SOURCE, DETAILS_SOURCE, TenantConfig

REPORTS = "Reports.Read.All"
AUDIT_LOG = "AuditLog.Read.All"
ROLES = "RoleManagement.Read.Directory"
GROUP_MEMBERS = "GroupMember.Read.All"
METHODS_POLICY = "Policy.Read.AuthenticationMethod"
POLICIES = "Policy.Read.All"
# Graph's code when the registration reports want AuditLog.Read.All (seen for the seed's report
# too, though Microsoft's page names Reports.Read.All only): grant it when Graph names it.
NO_AUDIT_LOG_ACCESS = "Authentication_ApplicationHasNoReadAuditLogDataAccess"


class Permission(NamedTuple):
    """One application permission, the Graph call that needs it, and when it is needed."""

    name: str
    call: str
    needed_for: str


PERMISSIONS = (
    Permission(
        AUDIT_LOG,
        "GET /v1.0/reports/authenticationMethods/userRegistrationDetails",
        "source: userRegistrationDetails (recommended) and auto; also when Graph asks for it on "
        f"getCredentialUserRegistrationCount (error {NO_AUDIT_LOG_ACCESS})",
    ),
    Permission(
        REPORTS,
        "GET /beta/reports/getCredentialUserRegistrationCount()",
        "source: credentialUserRegistrationCount (the default) and auto",
    ),
    Permission(
        ROLES,
        "GET /v1.0/roleManagement/directory/roleAssignments (and roleEligibilityScheduleInstances)",
        "segments.privileged_roles, SMS/voice retirement readiness, and enforcement: true "
        "(the roles MFA policies name)",
    ),
    Permission(
        GROUP_MEMBERS,
        "GET /v1.0/groups/{id}/transitiveMembers",
        "segments.groups, privileged roles held through role-assignable groups, and "
        "enforcement: true (the groups MFA policies name)",
    ),
    Permission(
        METHODS_POLICY,
        "GET /beta/policies/authenticationMethodsPolicy",
        "policy: true (the authentication methods policy)",
    ),
    Permission(
        POLICIES,
        "GET /v1.0/identity/conditionalAccess/policies and "
        "/v1.0/policies/identitySecurityDefaultsEnforcementPolicy",
        "enforcement: true (who must use MFA: Conditional Access, security defaults)",
    ),
)


def permissions_needed(tenant: TenantConfig) -> list[str]:
    """The application permissions the tenant's configuration needs, in the table's order."""
    needed = set()
    if tenant.source in (DEFAULT_SOURCE, AUTO_SOURCE):
        needed.add(REPORTS)
    if tenant.source in (DETAILS_SOURCE, AUTO_SOURCE):
        needed.add(AUDIT_LOG)
    segments = tenant.segments
    if segments.privileged_roles or tenant.readiness_off(DETAILS_SOURCE) is None:
        needed.add(ROLES)
    if segments.groups or segments.privileged_roles:
        needed.add(GROUP_MEMBERS)  # configured groups, role-assignable groups
    if tenant.policy:
        needed.add(METHODS_POLICY)
    if tenant.enforcement:  # and the groups and roles its MFA policies name
        needed.update((POLICIES, ROLES, GROUP_MEMBERS))
    order = [p.name for p in PERMISSIONS]
    return sorted(needed, key=order.index)


def report_permission(source: str, error_code: str | None) -> str:
    """The permission a refused registration report needs: the one Graph's code names, else
    the one Microsoft documents for ``source``."""
    if error_code == NO_AUDIT_LOG_ACCESS or source == DETAILS_SOURCE:
        return AUDIT_LOG
    return REPORTS
