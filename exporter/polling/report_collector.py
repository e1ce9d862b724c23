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

import contextlib
import logging
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from types import MappingProxyType

from exporter.config.model import AUTO_SOURCE, DEFAULT_SOURCE, DETAILS_SOURCE, TenantConfig
from exporter.config.permissions import GROUP_MEMBERS, ROLES, report_permission
from exporter.graph.answers import GraphError, RequestTally
from exporter.graph.auth import AccessToken
from exporter.graph.client import DIRECTORY, GraphClient
from exporter.graph.failures import PollFailure
from exporter.metrics.snapshots import REPORT_COLLECTOR
from exporter.polling.collectors import Collected, CollectorRun
from exporter.reports.details import (
    DETAIL_FIELDS,
    IDS_HELD,
    RegistrationDetailsCounter,
    SegmentContext,
)
from exporter.reports.directory import DirectoryIdCollector
from exporter.reports.registration import RegistrationReport
from exporter.reports.strengths import GLOBAL_ADMINISTRATOR

log = logging.getLogger("exporter.poller")

# One object per user (application permission AuditLog.Read.All); only counted fields selected.
DETAILS_PATH = "/v1.0/reports/authenticationMethods/userRegistrationDetails"
DETAILS_QUERY = MappingProxyType({"$select": ",".join(DETAIL_FIELDS), "$top": "999"})
# With retirement readiness, userPrincipalName too (it marks external accounts with #EXT#).
READINESS_QUERY = MappingProxyType(
    {"$select": ",".join((*DETAIL_FIELDS, "userPrincipalName")), "$top": "999"}
)
ASSIGNMENTS_PATH = "/v1.0/roleManagement/directory/roleAssignments"
ELIGIBILITIES_PATH = "/v1.0/roleManagement/directory/roleEligibilityScheduleInstances"
MEMBERS_QUERY = MappingProxyType({"$select": "id", "$top": "999"})
# What Graph answers for a report it no longer serves (with one of its error codes).
GONE_STATUSES = (400, 404, 410)


@contextlib.contextmanager
def naming_permission(permission: str | Callable[[str | None], str]) -> Iterator[None]:
    """A Graph 403 inside says which application permission to grant (the one story of
    :mod:`exporter.config.permissions`); ``permission`` may depend on Graph's error code."""
    try:
        yield
    except GraphError as err:
        failure = err.failure
        if failure.http_status != 403:
            raise
        name = permission if isinstance(permission, str) else permission(failure.error_code)
        message = f"{failure.message}: grant the application permission {name}, with admin consent"
        raise GraphError(replace(failure, message=message)) from None


def graph_url(tenant: TenantConfig, path: str, query: Mapping[str, str]) -> str:
    """``path`` on the tenant's Graph with ``query`` encoded as Graph's examples write it."""
    encoded = urllib.parse.urlencode(query, safe="$,'()", quote_via=urllib.parse.quote)
    return f"{tenant.endpoints.graph_host}{path}?{encoded}"


async def _group_users(
    graph: GraphClient,
    tenant: TenantConfig,
    group_id: str,
    request: tuple[AccessToken, float, RequestTally],
    what: str,
) -> set[int]:
    """The IDs of a group's transitive members (users and untyped objects)."""
    collector = DirectoryIdCollector()
    url = graph_url(tenant, f"/v1.0/groups/{group_id}/transitiveMembers", MEMBERS_QUERY)
    try:
        with naming_permission(GROUP_MEMBERS):
            await graph.get_pages(
                tenant,
                url,
                request,
                lambda page: collector.add_page(page, principals=False),
                what,
                DIRECTORY,
            )
    except GraphError as err:
        failure = err.failure
        raise GraphError(replace(failure, message=f"{what}: {failure.message}")) from None
    return collector.users


async def fetch_role_holders(
    graph: GraphClient,
    tenant: TenantConfig,
    request: tuple[AccessToken, float, RequestTally],
    roles: tuple[str, ...],
) -> frozenset[int]:
    """Users holding one of ``roles``: directly, or through a (role-assignable) group.

    Active assignments, and with ``include_eligible`` PIM-eligible ones too; service
    principals are skipped, and users the report does not list never match anything.
    """
    segments = tenant.segments
    collector = DirectoryIdCollector()
    paths = (
        (ASSIGNMENTS_PATH, ELIGIBILITIES_PATH) if segments.include_eligible else (ASSIGNMENTS_PATH,)
    )
    for path in paths:
        for role in roles:
            query = {"$filter": f"roleDefinitionId eq '{role}'", "$expand": "principal"}
            with naming_permission(ROLES):
                await graph.get_pages(
                    tenant,
                    graph_url(tenant, path, query),
                    request,
                    lambda page: collector.add_page(page, principals=True),
                    f"role assignments of {role}",
                    DIRECTORY,
                )
    users = set(collector.users)
    for group in sorted(collector.groups):
        group_id = str(uuid.UUID(int=group))
        users |= await _group_users(graph, tenant, group_id, request, f"role group {group_id}")
    return frozenset(users)


async def fetch_segment_context(
    graph: GraphClient, tenant: TenantConfig, request: tuple[AccessToken, float, RequestTally]
) -> SegmentContext:
    """The ID sets the tenant's segments need (empty when none are configured).

    With retirement readiness on, Global Administrators are looked up on their own, even when
    ``privileged_roles`` leaves that role out (they count as privileged only if listed).
    """
    segments = tenant.segments
    readiness = tenant.readiness_off(DETAILS_SOURCE) is None
    roles = segments.privileged_roles
    others = tuple(role for role in roles if role != GLOBAL_ADMINISTRATOR)
    privileged: frozenset[int] = frozenset()
    if others:
        privileged = await fetch_role_holders(graph, tenant, request, others)
    global_admins: frozenset[int] | None = None
    if readiness or GLOBAL_ADMINISTRATOR in roles:
        global_admins = await fetch_role_holders(graph, tenant, request, (GLOBAL_ADMINISTRATOR,))
        if GLOBAL_ADMINISTRATOR in roles:
            privileged |= global_admins
    groups = []
    for name, group_id in segments.groups:
        members = await _group_users(graph, tenant, group_id, request, f"group {name}")
        groups.append((name, frozenset(members)))
    return SegmentContext(
        privileged=privileged,
        groups=tuple(groups),
        global_admins=global_admins if readiness else None,
    )


async def fetch_registration_details(
    graph: GraphClient,
    tenant: TenantConfig,
    token: AccessToken,
    deadline: float,
    tally: RequestTally,
) -> RegistrationReport:
    """Count users over every page of userRegistrationDetails, with the tenant's segments."""
    request = (token, deadline, tally)
    # The context's ID sets are not kept beside the counter's own index of them.
    counter = RegistrationDetailsCounter(await fetch_segment_context(graph, tenant, request))
    url = graph_url(tenant, DETAILS_PATH, READINESS_QUERY if counter.readiness else DETAILS_QUERY)
    with naming_permission(lambda code: report_permission(DETAILS_SOURCE, code)):
        await graph.get_pages(tenant, url, request, counter.add_page, "userRegistrationDetails")
    if counter.repeated:
        log.warning(
            f"Graph sent {counter.repeated} rows of userRegistrationDetails for users it had "
            "already sent in this poll: each user is counted once",
            extra={"tenant": tenant.name, "repeated_rows": counter.repeated},
        )
    if counter.unheld:
        log.warning(
            f"userRegistrationDetails sent over {IDS_HELD:,} users in this poll: the "
            f"{counter.unheld:,} past that were counted without remembering their IDs "
            "(a repeat of one of them would count twice)",
            extra={"tenant": tenant.name, "unheld_users": counter.unheld},
        )
    return counter.report()


def seed_report_is_gone(failure: PollFailure) -> bool:
    """True when Graph says the seed's report no longer exists or is unsupported."""
    return failure.http_status in GONE_STATUSES and bool(failure.error_code)


async def fetch_from_source(
    graph: GraphClient,
    tenant: TenantConfig,
    source: str,
    token: AccessToken,
    deadline: float,
    tally: RequestTally,
) -> tuple[RegistrationReport, str]:
    """The report from ``source``; ``auto`` falls back to the successor when the seed is gone."""
    if source == DETAILS_SOURCE:
        return await fetch_registration_details(graph, tenant, token, deadline, tally), source
    try:
        with naming_permission(lambda code: report_permission(DEFAULT_SOURCE, code)):
            report = await graph.fetch_registration_report(tenant, token, deadline, tally)
    except GraphError as err:
        if source != AUTO_SOURCE or not seed_report_is_gone(err.failure):
            raise
        report = await fetch_registration_details(graph, tenant, token, deadline, tally)
        return report, DETAILS_SOURCE
    return report, DEFAULT_SOURCE


class ReportCollector:
    """The registration report of the tenant's (settled) source, with its segments."""

    name = REPORT_COLLECTOR

    async def collect(self, run: CollectorRun) -> Collected:
        """One report; a failed page fails it whole (GraphError)."""
        report, source = await fetch_from_source(
            run.graph, run.tenant, run.source, run.token, run.deadline, run.tally
        )
        run.graph.note_tenant_size(run.tenant, report.total_users)
        return Collected(report, source)
