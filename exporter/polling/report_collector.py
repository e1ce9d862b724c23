"""The ``report`` collector: the registration report with its segments.

From the seed's ``getCredentialUserRegistrationCount``, or from its successor
``userRegistrationDetails``, read page by page after the ID sets its segments need (privileged
admins, configured groups); ``source: auto`` asks the seed's report and reads the successor when
Graph says the seed is gone.

The ID sets are fetched first, in the same poll, so one poll's numbers always come from one
look at roles, groups and report; a failed page anywhere fails the poll and nothing partial is
published. Permissions (:mod:`exporter.config.permissions`): a 403 names the one to grant.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from exporter.config.model import AUTO_SOURCE, DEFAULT_SOURCE, DETAILS_SOURCE, TenantConfig
from exporter.config.permissions import report_permission
from exporter.graph.answers import GraphError
from exporter.graph.failures import PollFailure
from exporter.metrics.snapshots import REPORT_COLLECTOR
from exporter.polling.collectors import Collected, CollectorRun
from exporter.polling.lookups import DirectoryLookups, graph_url, naming_permission
from exporter.reports.details import (
    DETAIL_FIELDS,
    IDS_HELD,
    RegistrationDetailsCounter,
    SegmentContext,
)
from exporter.reports.enforcement import EnforcementContext, EnforcementPolicies
from exporter.reports.registration import RegistrationReport
from exporter.reports.strengths import GLOBAL_ADMINISTRATOR

# One object per user (application permission AuditLog.Read.All); only counted fields selected.
DETAILS_PATH = "/v1.0/reports/authenticationMethods/userRegistrationDetails"
DETAILS_QUERY = MappingProxyType({"$select": ",".join(DETAIL_FIELDS), "$top": "999"})
# With retirement readiness, userPrincipalName too (it marks external accounts with #EXT#).
READINESS_QUERY = MappingProxyType(
    {"$select": ",".join((*DETAIL_FIELDS, "userPrincipalName")), "$top": "999"}
)
# What Graph answers for a report it no longer serves (with one of its error codes).
GONE_STATUSES = (400, 404, 410)


async def fetch_segment_context(lookups: DirectoryLookups, tenant: TenantConfig) -> SegmentContext:
    """The ID sets the tenant's segments need (empty when none are configured).

    With retirement readiness on, Global Administrators are looked up on their own, even when
    ``privileged_roles`` leaves that role out (they count as privileged only if listed).
    """
    segments = tenant.segments
    readiness = tenant.readiness_off(DETAILS_SOURCE) is None
    roles, eligible = segments.privileged_roles, segments.include_eligible
    others = tuple(role for role in roles if role != GLOBAL_ADMINISTRATOR)
    privileged: frozenset[int] = frozenset()
    if others:
        privileged = await lookups.role_holders(others, eligible)
    global_admins: frozenset[int] | None = None
    if readiness or GLOBAL_ADMINISTRATOR in roles:
        global_admins = await lookups.role_holders((GLOBAL_ADMINISTRATOR,), eligible)
        if GLOBAL_ADMINISTRATOR in roles:
            privileged |= global_admins
    groups = []
    for name, group_id in segments.groups:
        groups.append((name, await lookups.group_members(group_id, f"group {name}")))
    return SegmentContext(
        privileged=privileged,
        groups=tuple(groups),
        global_admins=global_admins if readiness else None,
    )


async def enforcement_context(
    lookups: DirectoryLookups, policies: EnforcementPolicies
) -> EnforcementContext:
    """The ID sets of the MFA policies' sides: users named, transitive members of each group
    (a group Graph no longer has is empty), active holders of the roles (directly or through a
    role-assignable group); each distinct set once, however many policies name it."""
    sets: list[frozenset[int]] = []
    numbers: dict[frozenset[int], int] = {}

    def number(ids: frozenset[int]) -> tuple[int, ...]:
        if not ids:
            return ()  # nobody is in it: nothing to look up per row
        if ids not in numbers:
            numbers[ids] = len(sets)
            sets.append(ids)
        return (numbers[ids],)

    sides = []
    for policy in policies.mfa_policies:
        pair = []
        for side in (policy.include, policy.exclude):
            found = number(side.users)
            for group_id in sorted(side.groups):
                what = f"group {group_id} named by Conditional Access policy {policy.id}"
                found += number(await lookups.group_members(group_id, what, missing_ok=True))
            if side.roles:
                found += number(await lookups.role_holders(tuple(sorted(side.roles)), False))
            pair.append(found)
        sides.append((pair[0], pair[1]))
    return EnforcementContext(policies, tuple(sets), tuple(sides))


async def fetch_registration_details(run: CollectorRun) -> RegistrationReport:
    """Count users over every page of userRegistrationDetails, with the tenant's segments and,
    when this poll read them, its MFA policies (each user classified in the same pass)."""
    graph, tenant = run.graph, run.tenant
    request = run.request
    lookups = DirectoryLookups(graph, tenant, request)
    # The segments' look-ups go on while the enforcement collector reads the policies (1 page
    # a second); then the groups and roles the policies name, sharing what was looked up.
    context = await fetch_segment_context(lookups, tenant)
    policies = await run.exchange.policies() if run.exchange is not None else None
    if policies is not None:
        context = replace(context, enforcement=await enforcement_context(lookups, policies))
    # The context's ID sets (and the look-ups' copies of them) are not kept beside the
    # counter's own index of them while the pages are counted.
    counter = RegistrationDetailsCounter(context)
    del context, lookups
    with_upn = counter.readiness or policies is not None  # #EXT# marks external users
    url = graph_url(tenant, DETAILS_PATH, READINESS_QUERY if with_upn else DETAILS_QUERY)
    with naming_permission(lambda code: report_permission(DETAILS_SOURCE, code)):
        await graph.get_pages(tenant, url, request, counter.add_page, "userRegistrationDetails")
    if counter.repeated:
        run.log.warning(
            f"Graph sent {counter.repeated} rows of userRegistrationDetails for users it had "
            "already sent in this poll: each user is counted once",
            extra={"repeated_rows": counter.repeated},
        )
    if counter.unheld:
        run.log.warning(
            f"userRegistrationDetails sent over {IDS_HELD:,} users in this poll: the "
            f"{counter.unheld:,} past that were counted without remembering their IDs "
            "(a repeat of one of them would count twice)",
            extra={"unheld_users": counter.unheld},
        )
    return counter.report()


def seed_report_is_gone(failure: PollFailure) -> bool:
    """True when Graph says the seed's report no longer exists or is unsupported."""
    return failure.http_status in GONE_STATUSES and bool(failure.error_code)


async def fetch_from_source(run: CollectorRun) -> tuple[RegistrationReport, str]:
    """The report from the run's source; ``auto`` falls back to the successor when the seed is
    gone."""
    if run.source == DETAILS_SOURCE:
        return await fetch_registration_details(run), run.source
    try:
        with naming_permission(lambda code: report_permission(DEFAULT_SOURCE, code)):
            report = await run.graph.fetch_registration_report(
                run.tenant, run.token, run.deadline, run.tally
            )
    except GraphError as err:
        if run.source != AUTO_SOURCE or not seed_report_is_gone(err.failure):
            raise
        return await fetch_registration_details(run), DETAILS_SOURCE
    return report, DEFAULT_SOURCE


class ReportCollector:
    """The registration report of the tenant's (settled) source, with its segments."""

    name = REPORT_COLLECTOR

    async def collect(self, run: CollectorRun) -> Collected:
        """One report; a failed page fails it whole (GraphError)."""
        report, source = await fetch_from_source(run)
        run.graph.note_tenant_size(run.tenant, report.total_users)
        return Collected(report, source)
