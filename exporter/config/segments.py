"""The ``segments`` keys (under ``defaults`` and per tenant) → :class:`SegmentsConfig`.

A tenant's ``segments`` keys override those under ``defaults`` one by one; ``groups`` exist per
tenant only (group object IDs differ between tenants).
"""

from __future__ import annotations

from typing import Any

from exporter.config.credentials import MAX_NAME_LENGTH, is_guid
from exporter.config.model import DEFAULT_PRIVILEGED_ROLES, DEFAULT_SOURCE, SegmentsConfig
from exporter.config.problems import Problems, join

DEFAULTS_SEGMENT_KEYS = frozenset({"privileged_roles", "include_eligible"})
TENANT_SEGMENT_KEYS = frozenset({*DEFAULTS_SEGMENT_KEYS, "groups"})
MAX_GROUPS = 100


def check_default_segments(node: Any, problems: Problems) -> dict[str, Any]:
    """``defaults.segments`` as a mapping of known keys ({} when absent or refused)."""
    if node is None:
        return {}
    if not isinstance(node, dict):
        problems.add("defaults.segments", "must be a mapping")
        return {}
    if "groups" in node:
        problems.add(
            "defaults.segments.groups", "groups are set per tenant (group IDs differ per tenant)"
        )
    problems.check_keys(node, DEFAULTS_SEGMENT_KEYS | {"groups"}, "defaults.segments")
    return {key: node[key] for key in DEFAULTS_SEGMENT_KEYS if key in node}


def parse_segments(
    defaults: dict[str, Any], node: Any, path: str, source: str | None, problems: Problems
) -> SegmentsConfig | None:
    """A tenant's segments: its own ``segments`` keys over ``defaults.segments``."""
    own: dict[str, Any] = {}
    if node is not None:
        if not isinstance(node, dict):
            problems.add(path, "must be a mapping")
            return None
        problems.check_keys(node, TENANT_SEGMENT_KEYS, path)
        own = node
    before = len(problems.lines)
    roles = _privileged_roles(own, defaults, path, problems)
    eligible = _include_eligible(own, defaults, path, problems)
    groups = _groups(own.get("groups"), join(path, "groups"), problems)
    if groups and source == DEFAULT_SOURCE:
        problems.add(
            join(path, "groups"),
            "needs source userRegistrationDetails or auto: the seed's report "
            "(credentialUserRegistrationCount) has no per-user rows to count groups from",
        )
    if len(problems.lines) > before:
        return None
    if roles and "privileged_roles" in own and source == DEFAULT_SOURCE:
        # Said once per tenant that asks for it itself (defaults may serve other sources).
        problems.warnings.append(
            f"{join(path, 'privileged_roles')}: does nothing with source "
            "credentialUserRegistrationCount (the seed's report has no per-user rows): use "
            "userRegistrationDetails or auto"
        )
    return SegmentsConfig(privileged_roles=roles, include_eligible=eligible, groups=groups)


def _privileged_roles(
    own: dict[str, Any], defaults: dict[str, Any], path: str, problems: Problems
) -> tuple[str, ...]:
    if "privileged_roles" in own:
        value, where = own["privileged_roles"], join(path, "privileged_roles")
    else:
        value, where = defaults.get("privileged_roles", False), "defaults.segments.privileged_roles"
    if value is True:
        return DEFAULT_PRIVILEGED_ROLES
    if value is False or value is None:
        return ()
    if not isinstance(value, list) or not value:
        problems.add(where, "must be true, false or a list of role template IDs")
        return ()
    roles: list[str] = []
    for index, role in enumerate(value):
        if not isinstance(role, str) or not is_guid(role.strip()):
            problems.add(f"{where}[{index}]", f"{role!r} is not a role template ID (a GUID)")
        elif role.strip().lower() not in roles:
            roles.append(role.strip().lower())
    return tuple(roles)


def _include_eligible(
    own: dict[str, Any], defaults: dict[str, Any], path: str, problems: Problems
) -> bool:
    if "include_eligible" in own:
        value, where = own["include_eligible"], join(path, "include_eligible")
    else:
        value, where = defaults.get("include_eligible", False), "defaults.segments.include_eligible"
    if not isinstance(value, bool):
        problems.add(where, "must be true or false")
        return False
    return value


def _groups(node: Any, path: str, problems: Problems) -> tuple[tuple[str, str], ...]:
    """``name: group ID`` pairs; names become label values, so they are checked as such."""
    if node is None:
        return ()
    if not isinstance(node, dict) or not node:
        problems.add(path, "must be a mapping of group names to group object IDs")
        return ()
    if len(node) > MAX_GROUPS:
        problems.add(path, f"at most {MAX_GROUPS} groups per tenant")
        return ()
    groups: list[tuple[str, str]] = []
    for name, group_id in node.items():
        where = join(path, str(name))
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
            problems.add(where, f"a group name must be 1 to {MAX_NAME_LENGTH} characters")
        elif not name.isprintable():
            problems.add(where, "a group name must be printable (no control characters)")
        elif not isinstance(group_id, str) or not is_guid(group_id.strip()):
            problems.add(where, f"{group_id!r} is not a group object ID (a GUID)")
        else:
            groups.append((name, group_id.strip().lower()))
    return tuple(groups)
