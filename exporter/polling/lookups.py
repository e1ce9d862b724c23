"""The directory look-ups of one poll, each made once: a role's assignments (active or
PIM-eligible) and a group's transitive members. Segments, retirement readiness and the MFA
policies share them: a group both configured and named by a policy is read once.

Also the two helpers every Graph call of the collectors uses: :func:`graph_url` and
:func:`naming_permission` (a 403 says which application permission to grant).
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from types import MappingProxyType

from exporter.config.model import TenantConfig
from exporter.config.permissions import GROUP_MEMBERS, ROLES
from exporter.graph.answers import GraphError
from exporter.graph.client import DIRECTORY, GraphClient, GraphRequest
from exporter.reports.directory import DirectoryIdCollector

log = logging.getLogger("exporter.polling")

ASSIGNMENTS_PATH = "/v1.0/roleManagement/directory/roleAssignments"
ELIGIBILITIES_PATH = "/v1.0/roleManagement/directory/roleEligibilityScheduleInstances"
MEMBERS_QUERY = MappingProxyType({"$select": "id", "$top": "999"})


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


class DirectoryLookups:
    """One poll's role and group look-ups, each made once."""

    def __init__(
        self,
        graph: GraphClient,
        tenant: TenantConfig,
        request: GraphRequest,
    ) -> None:
        self._graph, self._tenant, self._request = graph, tenant, request
        # (path, role) -> (users, groups) of its assignments; group id -> its users.
        self._assignments: dict[tuple[str, str], tuple[frozenset[int], frozenset[int]]] = {}
        self._groups: dict[str, frozenset[int]] = {}

    async def role_holders(self, roles: tuple[str, ...], eligible: bool) -> frozenset[int]:
        """Users holding one of ``roles``: directly, or through a (role-assignable) group.

        Active assignments, and with ``eligible`` PIM-eligible ones too; service principals
        are skipped, and users the report does not list never match anything.
        """
        users: set[int] = set()
        groups: set[int] = set()
        for path in (ASSIGNMENTS_PATH, ELIGIBILITIES_PATH) if eligible else (ASSIGNMENTS_PATH,):
            for role in roles:
                found_users, found_groups = await self._role(path, role)
                users |= found_users
                groups |= found_groups
        for group in sorted(groups):
            group_id = str(uuid.UUID(int=group))
            users |= await self.group_members(group_id, f"role group {group_id}")
        return frozenset(users)

    async def _role(self, path: str, role: str) -> tuple[frozenset[int], frozenset[int]]:
        key = (path, role.lower())
        if key not in self._assignments:
            collector = DirectoryIdCollector()
            query = {"$filter": f"roleDefinitionId eq '{role}'", "$expand": "principal"}
            with naming_permission(ROLES):
                await self._graph.get_pages(
                    self._tenant,
                    graph_url(self._tenant, path, query),
                    self._request,
                    lambda page: collector.add_page(page, principals=True),
                    f"role assignments of {role}",
                    DIRECTORY,
                )
            self._assignments[key] = (frozenset(collector.users), frozenset(collector.groups))
        return self._assignments[key]

    async def group_members(
        self, group_id: str, what: str, missing_ok: bool = False
    ) -> frozenset[int]:
        """The IDs of a group's transitive members (users and untyped objects). A group Graph
        no longer has (404) fails the poll, or with ``missing_ok`` is empty, logged once."""
        key = group_id.lower()
        if key in self._groups:
            return self._groups[key]
        collector = DirectoryIdCollector()
        url = graph_url(self._tenant, f"/v1.0/groups/{group_id}/transitiveMembers", MEMBERS_QUERY)
        try:
            with naming_permission(GROUP_MEMBERS):
                await self._graph.get_pages(
                    self._tenant,
                    url,
                    self._request,
                    lambda page: collector.add_page(page, principals=False),
                    what,
                    DIRECTORY,
                )
        except GraphError as err:
            failure = err.failure
            if not (missing_ok and failure.http_status == 404):
                raise GraphError(replace(failure, message=f"{what}: {failure.message}")) from None
            (self._request.log or log).warning(
                f"{what}: Graph has no such group (404): counted as empty",
                extra={"tenant": self._tenant.name, "group_id": group_id},
            )
        self._groups[key] = frozenset(collector.users)
        return self._groups[key]
