"""The Graph paths the simulator serves."""

from __future__ import annotations

DETAILS_PATHS = (
    "/v1.0/reports/authenticationMethods/userRegistrationDetails",
    "/beta/reports/authenticationMethods/userRegistrationDetails",
)
ROLE_PATHS = (
    "/v1.0/roleManagement/directory/roleAssignments",
    "/v1.0/roleManagement/directory/roleEligibilityScheduleInstances",
)
GROUPS_PREFIX = "/v1.0/groups/"
MEMBERS = "/transitiveMembers"
POLICY_PATH = "/beta/policies/authenticationMethodsPolicy"
REPORT_PATHS = (
    "/beta/reports/getCredentialUserRegistrationCount()",
    "/beta/reports/getCredentialUserRegistrationCount",
)
SECURITY_DEFAULTS_PATH = "/v1.0/policies/identitySecurityDefaultsEnforcementPolicy"
CA_POLICIES_PATH = "/v1.0/identity/conditionalAccess/policies"
