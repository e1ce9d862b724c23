"""A tenant's snapshot → its sample lines, by metric family (no HELP/TYPE: the store adds those).

:func:`render_tenant_block` returns a mapping family → lines; a family with nothing to show is
absent. Example (``tenant="contoso"``, one poll)::

    {TENANT_UP: 'entra_exporter_tenant_up{tenant="contoso"} 1\\n',
     COLLECTOR_UP: 'entra_exporter_collector_up{tenant="contoso",collector="report"} 1\\n',
     POLLS: 'entra_exporter_polls_total{tenant="contoso",result="success"} 1\\n...', ...}
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

from exporter.graph.failures import RESULTS
from exporter.metrics.families import (
    CA_POLICIES,
    CAMPAIGN_SNOOZE,
    CAMPAIGN_STATE,
    CAMPAIGN_TARGET,
    COLLECTOR_LAST_SUCCESS,
    COLLECTOR_POLLS,
    COLLECTOR_UP,
    DATA_TIMESTAMP,
    GRAPH_REQUESTS,
    GROUP_REGISTRATION,
    GROUP_STRENGTH,
    GROUP_USERS,
    LABELS_DROPPED,
    LAST_DURATION,
    LAST_SUCCESS,
    METHOD_ENABLED,
    METHOD_USERS,
    MFA_ENFORCEMENT_USERS,
    MIGRATION_STATE,
    PASSKEY_OPT_OUT,
    PHONE_ONLY,
    POLLS,
    REGISTRATION_USERS,
    RETIREMENT_TIMESTAMP,
    SECURITY_DEFAULTS,
    SEGMENT_REGISTRATION,
    SEGMENT_STRENGTH,
    SEGMENT_USERS,
    SYSTEM_PREFERRED,
    TENANT_INFO,
    TENANT_UP,
    TENANT_USERS,
    THROTTLED_RESPONSES,
    TOKEN_REQUESTS,
    Family,
    escape_label_value,
    format_value,
)
from exporter.metrics.snapshots import (
    ENFORCEMENT_COLLECTOR,
    POLICY_COLLECTOR,
    CollectorSnapshot,
    TenantSnapshot,
)
from exporter.reports.details import SEGMENT_STATUSES
from exporter.reports.enforcement import CLASSES, PolicyCounts
from exporter.reports.policy import CAMPAIGN_STATES, MIGRATION_STATES, MethodsPolicy
from exporter.reports.registration import CoverageCounts, RegistrationReport, SegmentReport
from exporter.reports.strengths import RETIREMENTS, STRENGTHS

Lines = dict[Family, str]
SECONDS_PER_DAY = 86_400
# The report's and the policy's capped labels → the family whose series they would have been.
REPORT_LABEL_FAMILIES = MappingProxyType(
    {
        "registrationStatus": REGISTRATION_USERS,
        "method": METHOD_USERS,
        "user_type": SEGMENT_USERS,
        "system_preferred": SYSTEM_PREFERRED,
    }
)
POLICY_LABEL_FAMILIES = MappingProxyType(
    {"method": METHOD_ENABLED, "campaign_target": CAMPAIGN_TARGET}
)


def labelled(family: Family, tenant: str, label: str, values: Iterable[tuple[str, int]]) -> str:
    """One line per (value, count): the tenant's samples of a family with one more label."""
    return "".join(
        f'{family.name}{{{tenant},{label}="{escape_label_value(value)}"}} {count}\n'
        for value, count in values
    )


def render_tenant_block(snapshot: TenantSnapshot) -> Lines:
    """The tenant's sample lines per family (report families only while it has a report)."""
    tenant = f'tenant="{escape_label_value(snapshot.name)}"'
    lines: Lines = {}
    if snapshot.report is not None:
        lines.update(render_report(tenant, snapshot.report))
    lines[TENANT_INFO] = (
        f'{TENANT_INFO.name}{{{tenant},tenant_id="{escape_label_value(snapshot.tenant_id)}",'
        f'cloud="{escape_label_value(snapshot.cloud)}",'
        f'source="{escape_label_value(snapshot.source)}"'
        + "".join(f',{name}="{escape_label_value(value)}"' for name, value in snapshot.labels)
        + "} 1\n"
    )
    lines[TENANT_UP] = f"{TENANT_UP.name}{{{tenant}}} {1 if snapshot.up else 0}\n"
    if snapshot.last_success is not None:
        lines[LAST_SUCCESS] = (
            f"{LAST_SUCCESS.name}{{{tenant}}} {format_value(snapshot.last_success)}\n"
        )
    if snapshot.last_poll_duration is not None:
        lines[LAST_DURATION] = (
            f"{LAST_DURATION.name}{{{tenant}}} {format_value(snapshot.last_poll_duration)}\n"
        )
    lines[POLLS] = _by_result(POLLS, tenant, snapshot.polls)
    lines[TOKEN_REQUESTS] = f"{TOKEN_REQUESTS.name}{{{tenant}}} {snapshot.token_requests}\n"
    lines[GRAPH_REQUESTS] = f"{GRAPH_REQUESTS.name}{{{tenant}}} {snapshot.graph_requests}\n"
    lines[THROTTLED_RESPONSES] = (
        f"{THROTTLED_RESPONSES.name}{{{tenant}}} {snapshot.throttled_responses}\n"
    )
    lines.update(render_collectors(tenant, snapshot.collectors))
    policy = snapshot.collector(POLICY_COLLECTOR)
    dropped = dropped_label_values(snapshot)
    if dropped:
        lines[LABELS_DROPPED] = labelled(LABELS_DROPPED, tenant, "family", dropped)
    if policy is not None and isinstance(policy.value, MethodsPolicy):
        lines.update(render_policy(tenant, policy.value))
    enforcement = snapshot.collector(ENFORCEMENT_COLLECTOR)
    if enforcement is not None and isinstance(enforcement.value, PolicyCounts):
        lines.update(render_enforcement(tenant, enforcement.value))
    return lines


def render_enforcement(tenant: str, policies: PolicyCounts) -> Lines:
    """Security defaults and the Conditional Access policies by state and kind."""
    defaults = 1 if policies.security_defaults else 0
    return {
        SECURITY_DEFAULTS: f"{SECURITY_DEFAULTS.name}{{{tenant}}} {defaults}\n",
        CA_POLICIES: "".join(
            f'{CA_POLICIES.name}{{{tenant},state="{escape_label_value(state)}",kind="{kind}"}} '
            f"{count}\n"
            for state, kind, count in policies.counts
        ),
    }


def _enforcement_lines(tenant: str, report: SegmentReport) -> str:
    """Each segment's users by class and isMfaRegistered, every class and both values."""
    return "".join(
        f'{MFA_ENFORCEMENT_USERS.name}{{{tenant},user_type="{escape_label_value(user_type)}",'
        f'role="{role}",enforcement="{name}",mfa_registered="{registered}"}} '
        f"{counts[2 * index + (1 if registered == 'true' else 0)]}\n"
        for user_type, role, counts in report.enforcement or ()
        for index, name in enumerate(CLASSES)
        for registered in ("false", "true")
    )


def dropped_label_values(snapshot: TenantSnapshot) -> tuple[tuple[str, int], ...]:
    """(family name, distinct values past its cap) of the tenant's last report and policy."""
    dropped = []
    if snapshot.report is not None:
        for label, count in snapshot.report.dropped_labels:
            dropped.append((REPORT_LABEL_FAMILIES[label].name, count))
    policy = snapshot.collector(POLICY_COLLECTOR)
    if policy is not None and isinstance(policy.value, MethodsPolicy):
        for label, count in policy.value.dropped_labels:
            dropped.append((POLICY_LABEL_FAMILIES[label].name, count))
    return tuple(dropped)


def _state_set(family: Family, tenant: str, current: str, known: tuple[str, ...]) -> str:
    """A state set: 1 for ``current``, 0 for the other known states (a new state shows as 1)."""
    states = known if current in known else (*known, current)
    return labelled(family, tenant, "state", ((s, 1 if s == current else 0) for s in states))


def render_policy(tenant: str, policy: MethodsPolicy) -> Lines:
    """The authentication methods policy's families (absent values leave theirs absent)."""
    lines: Lines = {
        METHOD_ENABLED: labelled(
            METHOD_ENABLED, tenant, "method", ((m, 1 if on else 0) for m, on in policy.methods)
        ),
        CAMPAIGN_TARGET: labelled(
            CAMPAIGN_TARGET, tenant, "method", ((m, 1) for m in policy.campaign_targets)
        ),
    }
    if policy.campaign_state is not None:
        lines[CAMPAIGN_STATE] = _state_set(
            CAMPAIGN_STATE, tenant, policy.campaign_state, CAMPAIGN_STATES
        )
    if policy.snooze_days is not None:
        seconds = policy.snooze_days * SECONDS_PER_DAY  # Prometheus' base unit
        lines[CAMPAIGN_SNOOZE] = f"{CAMPAIGN_SNOOZE.name}{{{tenant}}} {seconds}\n"
    if policy.passkey_migration_opted_out is not None:
        opted = 1 if policy.passkey_migration_opted_out else 0
        lines[PASSKEY_OPT_OUT] = f"{PASSKEY_OPT_OUT.name}{{{tenant}}} {opted}\n"
    if policy.migration_state is not None:
        lines[MIGRATION_STATE] = _state_set(
            MIGRATION_STATE, tenant, policy.migration_state, MIGRATION_STATES
        )
    return lines


def _by_result(family: Family, labels: str, polls: tuple[int, ...]) -> str:
    pairs = zip(RESULTS, polls, strict=True)  # pragma: no mutate (equal lengths)
    return "".join(f'{family.name}{{{labels},result="{name}"}} {count}\n' for name, count in pairs)


def render_collectors(tenant: str, collectors: tuple[CollectorSnapshot, ...]) -> Lines:
    """Each collector's up gauge, last success (once it had one) and runs by result
    (``tenant`` is the escaped label)."""
    if not collectors:
        return {}
    up, succeeded, polls = [], [], []
    for collector in collectors:
        labels = f'{tenant},collector="{escape_label_value(collector.name)}"'
        up.append(f"{COLLECTOR_UP.name}{{{labels}}} {1 if collector.up else 0}\n")
        if collector.last_success is not None:
            stamp = format_value(collector.last_success)
            succeeded.append(f"{COLLECTOR_LAST_SUCCESS.name}{{{labels}}} {stamp}\n")
        polls.append(_by_result(COLLECTOR_POLLS, labels, collector.polls))
    lines = {COLLECTOR_UP: "".join(up), COLLECTOR_POLLS: "".join(polls)}
    if succeeded:
        lines[COLLECTOR_LAST_SUCCESS] = "".join(succeeded)
    return lines


def render_report(tenant: str, report: RegistrationReport) -> Lines:
    """The report's families: counts per status, users, methods, and its segments."""
    lines: Lines = {
        REGISTRATION_USERS: labelled(
            REGISTRATION_USERS, tenant, "registrationStatus", report.users_by_status
        ),
        TENANT_USERS: f"{TENANT_USERS.name}{{{tenant}}} {report.total_users}\n",
        METHOD_USERS: labelled(METHOD_USERS, tenant, "method", report.users_by_method),
    }
    if report.segments is not None:
        lines.update(render_segments(tenant, report.segments))
    return lines


def _coverage_lines(
    labels: str, counts: CoverageCounts, families: tuple[Family, Family, Family]
) -> Lines:
    """Users, per-status and per-strength lines of one segment or group (``labels`` escaped)."""
    users_family, status_family, strength_family = families
    lines = {users_family: f"{users_family.name}{{{labels}}} {counts.users}\n"}
    if not counts.users:
        return lines
    by_status = zip(SEGMENT_STATUSES, counts.statuses, strict=True)  # pragma: no mutate
    by_strength = zip(STRENGTHS, counts.strengths, strict=True)  # pragma: no mutate
    lines[status_family] = "".join(
        f'{status_family.name}{{{labels},registrationStatus="{status}"}} {value}\n'
        for status, value in by_status
    )
    lines[strength_family] = "".join(
        f'{strength_family.name}{{{labels},strength="{strength}"}} {value}\n'
        for strength, value in by_strength
    )
    return lines


def _join(parts: list[Lines]) -> Lines:
    """Each family's lines from every part, in the parts' order."""
    joined: Lines = {}
    for part in parts:
        for family, text in part.items():
            joined[family] = joined.get(family, "") + text
    return joined


def render_segments(tenant: str, report: SegmentReport) -> Lines:
    """The segment families' lines (``tenant`` is the escaped tenant label)."""
    segment_families = (SEGMENT_USERS, SEGMENT_REGISTRATION, SEGMENT_STRENGTH)
    group_families = (GROUP_USERS, GROUP_REGISTRATION, GROUP_STRENGTH)
    lines = _join(
        [
            _coverage_lines(
                f'{tenant},user_type="{escape_label_value(user_type)}",role="{role}"',
                counts,
                segment_families,
            )
            for user_type, role, counts in report.segments
        ]
        + [
            _coverage_lines(f'{tenant},group="{escape_label_value(name)}"', counts, group_families)
            for name, counts in report.groups
        ]
    )
    lines[SYSTEM_PREFERRED] = labelled(SYSTEM_PREFERRED, tenant, "method", report.system_preferred)
    if report.data_timestamp is not None:
        lines[DATA_TIMESTAMP] = (
            f"{DATA_TIMESTAMP.name}{{{tenant}}} {format_value(report.data_timestamp)}\n"
        )
    if report.phone_only is not None:
        lines[PHONE_ONLY] = labelled(PHONE_ONLY, tenant, "retirement", report.phone_only)
    if report.enforcement is not None:
        lines[MFA_ENFORCEMENT_USERS] = _enforcement_lines(tenant, report)
    return lines


def render_retirement_dates() -> str:
    """The retirement dates' sample lines (shown while any tenant has phone-only counts)."""
    return "".join(
        f'{RETIREMENT_TIMESTAMP.name}{{retirement="{date}"}} {stamp}\n'
        for date, stamp in RETIREMENTS
    )
