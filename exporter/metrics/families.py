"""The exporter's metric families (name, type, HELP text) and how values are written.

HELP texts say where each value comes from; report values are as of the last poll (cached on
purpose: Graph's reports are slow and throttled).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.utils import floatToGoString


@dataclass(frozen=True, slots=True)
class Family:
    """A metric family: its exposition name, type and HELP text."""

    name: str
    kind: str
    help: str

    def header(self, openmetrics: bool) -> str:
        name = self.name
        if openmetrics and self.kind == "counter" and name.endswith("_total"):
            name = name[: -len("_total")]
        return f"# HELP {name} {self.help}\n# TYPE {name} {self.kind}\n"


REGISTRATION_USERS = Family(
    "entra_credential_registration_users",
    "gauge",
    "Users per credential registration status, from Graph getCredentialUserRegistrationCount "
    "(or counted from userRegistrationDetails), as of the last successful poll.",
)
METHOD_USERS = Family(
    "entra_authentication_method_users",
    "gauge",
    "Users per registered authentication method, counted from Graph userRegistrationDetails "
    "methodsRegistered, as of the last successful poll.",
)
TENANT_USERS = Family(
    "entra_tenant_users",
    "gauge",
    "Users in the tenant (Graph totalUserCount), as of the last successful poll.",
)
TENANT_INFO = Family(
    "entra_tenant_info",
    "gauge",
    "Configured tenant: its ID, cloud and report source (always 1), from the config file.",
)
TENANT_UP = Family(
    "entra_exporter_tenant_up", "gauge", "1 if the last poll of the tenant succeeded, else 0."
)
LAST_SUCCESS = Family(
    "entra_exporter_last_success_timestamp_seconds",
    "gauge",
    "Unix time of the tenant's last successful poll.",
)
LAST_DURATION = Family(
    "entra_exporter_last_poll_duration_seconds",
    "gauge",
    "Wall time of the tenant's last poll (token and Graph request).",
)
POLLS = Family("entra_exporter_polls_total", "counter", "Polls of the tenant by result class.")
TOKEN_REQUESTS = Family(
    "entra_exporter_token_requests_total",
    "counter",
    "Token requests sent to the identity provider for the tenant (cache hits not counted).",
)
GRAPH_REQUESTS = Family(
    "entra_exporter_graph_requests_total",
    "counter",
    "Requests sent to Graph for the tenant, retries included.",
)
THROTTLED_RESPONSES = Family(
    "entra_exporter_graph_throttled_responses_total",
    "counter",
    "Graph answers for the tenant that asked to slow down (429 or 503), retried or not.",
)
COLLECTOR_UP = Family(
    "entra_exporter_collector_up",
    "gauge",
    "1 if the collector's last run for the tenant succeeded, else 0.",
)
COLLECTOR_LAST_SUCCESS = Family(
    "entra_exporter_collector_last_success_timestamp_seconds",
    "gauge",
    "Unix time of the collector's last successful run for the tenant.",
)
COLLECTOR_POLLS = Family(
    "entra_exporter_collector_polls_total",
    "counter",
    "Runs of the collector for the tenant by result class.",
)
LABELS_DROPPED = Family(
    "entra_exporter_label_values_dropped",
    "gauge",
    "Distinct label values Graph sent for the tenant past the exporter's cap for the family "
    "(their users are in the totals; the values have no series of their own), as of the last "
    "successful collection; absent when none were.",
)
SEGMENT_USERS = Family(
    "entra_segment_users",
    "gauge",
    "Users per user type and role, counted from Graph userRegistrationDetails (role from "
    "roleManagement assignments and isAdmin), as of the last successful poll.",
)
SEGMENT_REGISTRATION = Family(
    "entra_segment_registration_users",
    "gauge",
    "Users per user type, role and registration status, counted from Graph "
    "userRegistrationDetails, as of the last successful poll.",
)
SEGMENT_STRENGTH = Family(
    "entra_segment_strength_users",
    "gauge",
    "Users per user type, role and strongest registered method class, counted from Graph "
    "userRegistrationDetails methodsRegistered, as of the last successful poll.",
)
GROUP_USERS = Family(
    "entra_group_users",
    "gauge",
    "Transitive members of the configured group that Graph userRegistrationDetails lists, "
    "as of the last successful poll.",
)
GROUP_REGISTRATION = Family(
    "entra_group_registration_users",
    "gauge",
    "Members of the configured group per registration status, counted from Graph "
    "userRegistrationDetails, as of the last successful poll.",
)
GROUP_STRENGTH = Family(
    "entra_group_strength_users",
    "gauge",
    "Members of the configured group per strongest registered method class, counted from "
    "Graph userRegistrationDetails, as of the last successful poll.",
)
SYSTEM_PREFERRED = Family(
    "entra_system_preferred_method_users",
    "gauge",
    "Users by their first system-preferred authentication method (none when empty), from "
    "Graph userRegistrationDetails, as of the last successful poll.",
)
DATA_TIMESTAMP = Family(
    "entra_registration_data_timestamp_seconds",
    "gauge",
    "Newest lastUpdatedDateTime in Graph userRegistrationDetails (Microsoft refreshes the "
    "report every few hours), as of the last successful poll.",
)
PHONE_ONLY = Family(
    "entra_phone_only_users",
    "gauge",
    "Users whose strongest registered method is a phone, by the date their cohort loses "
    "Microsoft-provided SMS and voice (2027-07-01: Global Administrators and external users; "
    "2027-02-01: everyone else), counted from Graph userRegistrationDetails and role "
    "assignments, as of the last successful poll.",
)
SEGMENT_FAMILIES = (
    SEGMENT_USERS,
    SEGMENT_REGISTRATION,
    SEGMENT_STRENGTH,
    GROUP_USERS,
    GROUP_REGISTRATION,
    GROUP_STRENGTH,
    SYSTEM_PREFERRED,
    DATA_TIMESTAMP,
    PHONE_ONLY,
)
METHOD_ENABLED = Family(
    "entra_authentication_method_enabled",
    "gauge",
    "1 when the method configuration's state is enabled in the tenant's authentication methods "
    "policy (Graph beta policies/authenticationMethodsPolicy), else 0, as of the last "
    "successful poll.",
)
CAMPAIGN_STATE = Family(
    "entra_registration_campaign_state",
    "gauge",
    "The registration campaign's state (1 for the current one, 0 for the other known ones), "
    "from the authentication methods policy, as of the last successful poll.",
)
CAMPAIGN_TARGET = Family(
    "entra_registration_campaign_target_info",
    "gauge",
    "Each method the registration campaign nudges users to register (always 1), from the "
    "authentication methods policy, as of the last successful poll.",
)
CAMPAIGN_SNOOZE = Family(
    "entra_registration_campaign_snooze_seconds",
    "gauge",
    "Seconds a user may postpone the registration campaign (snoozeDurationInDays x 86400), "
    "from the authentication methods policy, as of the last successful poll.",
)
PASSKEY_OPT_OUT = Family(
    "entra_passkey_migration_opted_out",
    "gauge",
    "1 when the tenant opted out of Microsoft's passkey migration "
    "(optOutSettings.passkeyDynamicMigration), else 0, from the beta authentication methods "
    "policy, as of the last successful poll.",
)
MIGRATION_STATE = Family(
    "entra_authentication_methods_policy_migration_state",
    "gauge",
    "The policy's migration state (policyMigrationState: 1 for the current one, 0 for the other "
    "known ones), from the authentication methods policy, as of the last successful poll.",
)
POLICY_FAMILIES = (
    METHOD_ENABLED,
    CAMPAIGN_STATE,
    CAMPAIGN_TARGET,
    CAMPAIGN_SNOOZE,
    PASSKEY_OPT_OUT,
    MIGRATION_STATE,
)
MFA_ENFORCEMENT_USERS = Family(
    "entra_mfa_enforcement_users",
    "gauge",
    "Users per segment by who must use MFA (enforcement: from Conditional Access and security "
    "defaults) and by isMfaRegistered, from userRegistrationDetails classed against the "
    "tenant's policies, as of the last successful poll.",
)
SECURITY_DEFAULTS = Family(
    "entra_security_defaults_enabled",
    "gauge",
    "1 when the tenant's security defaults are on (Graph "
    "identitySecurityDefaultsEnforcementPolicy isEnabled), else 0, as of the last successful "
    "poll.",
)
CA_POLICIES = Family(
    "entra_conditional_access_policies",
    "gauge",
    "Conditional Access policies by state (as Graph sends it) and kind (block, mfa_all, "
    "mfa_partial, other), as of the last successful poll.",
)
ENFORCEMENT_FAMILIES = (SECURITY_DEFAULTS, CA_POLICIES)
# Families with one or more lines per tenant, in exposition order; those in REPORT_FAMILIES
# are the report's and disappear when the report turns stale.
TENANT_FAMILIES = (
    REGISTRATION_USERS,
    TENANT_USERS,
    METHOD_USERS,
    TENANT_INFO,
    TENANT_UP,
    LAST_SUCCESS,
    LAST_DURATION,
    POLLS,
    TOKEN_REQUESTS,
    GRAPH_REQUESTS,
    THROTTLED_RESPONSES,
    COLLECTOR_UP,
    COLLECTOR_LAST_SUCCESS,
    COLLECTOR_POLLS,
    LABELS_DROPPED,
    *SEGMENT_FAMILIES,
    MFA_ENFORCEMENT_USERS,
    *POLICY_FAMILIES,
    *ENFORCEMENT_FAMILIES,
)
REPORT_FAMILIES = frozenset(
    {REGISTRATION_USERS, TENANT_USERS, METHOD_USERS, *SEGMENT_FAMILIES, MFA_ENFORCEMENT_USERS}
)

RETIREMENT_TIMESTAMP = Family(
    "entra_sms_voice_retirement_timestamp_seconds",
    "gauge",
    "Unix time (00:00 UTC) of each date Microsoft retires its SMS and voice authentication "
    "for a cohort (Microsoft Learn, global cloud), for countdowns; a constant.",
)
RELOAD_OK = Family(
    "entra_exporter_config_last_reload_successful",
    "gauge",
    "1 if the last configuration load succeeded, else 0.",
)
WEB_RELOAD_OK = Family(
    "entra_exporter_web_config_last_reload_successful",
    "gauge",
    "1 if the web config (and the certificates it names) last loaded, at start or after a "
    "change, else 0: the last good one is in force.",
)
RELOAD_TIME = Family(
    "entra_exporter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "Unix time of the last successful configuration load.",
)
BUILD_INFO = Family(
    "entra_exporter_build_info", "gauge", "Exporter version and Python version (always 1)."
)
SCHEDULER_EVENTS = Family(
    "entra_exporter_scheduler_events_total",
    "counter",
    "Scheduler events by kind: missed (a run started too late and was skipped), "
    "max_instances (a poll was still running), error (a job raised).",
)
SCHEDULER_EVENT_KINDS = ("missed", "max_instances", "error")
DISCOVERY_UP = Family(
    "entra_exporter_discovery_up",
    "gauge",
    "1 if the last read of the partner's customer listing (discovery) succeeded, else 0 (the "
    "last good set of customers is kept).",
)
DISCOVERY_TENANTS = Family(
    "entra_exporter_discovery_tenants",
    "gauge",
    "Customer tenants the last good listing found, after exclude (before this replica's shard "
    "and the listed tenants that win over them).",
)
DISCOVERY_LAST_SUCCESS = Family(
    "entra_exporter_discovery_last_success_timestamp_seconds",
    "gauge",
    "Unix time of the last successful read of the customer listing.",
)


def escape_label_value(value: str) -> str:
    """Escape a label value for the text exposition formats."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    """Integers as integers, other numbers the way Go formats floats."""
    if isinstance(value, int):
        return str(value)
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]
