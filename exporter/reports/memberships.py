"""Which ID sets each listed user is in, numbered: one dict look-up a row in the report's pass.

The sets: privileged admins, each configured group, Global Administrators (readiness), and each
MFA policy's included and excluded users (enforcement). A user's *membership* is where they
are in all of them at once; memberships are numbered, and every ID maps to its number (0: in
no set), so a row's key holds one small int, quicker to hash than the tuple.
"""

from __future__ import annotations

from collections.abc import Iterable

# A user's membership: (privileged admin, configured groups, Global Administrator, enforcement
# ID sets), the last two as indices.
Membership = tuple[bool, tuple[int, ...], bool, tuple[int, ...]]
NOT_LISTED: Membership = (False, (), False, ())


def _with(membership: Membership, kind: str, index: int) -> Membership:
    privileged, groups, late, sets = membership
    if kind == "group":
        return privileged, (*groups, index), late, sets
    if kind == "privileged":
        return True, groups, late, sets
    if kind == "global_admin":
        return privileged, groups, True, sets
    return privileged, groups, late, (*sets, index)


def listed_ids(
    privileged: Iterable[int],
    groups: Iterable[Iterable[int]],
    global_admins: Iterable[int],
    policy_sets: Iterable[Iterable[int]],
) -> tuple[dict[int, int], list[Membership]]:
    """Every ID of the sets → the number of its membership in the list returned beside it."""
    memberships = [NOT_LISTED]
    numbers = {NOT_LISTED: 0}
    listed: dict[int, int] = {}

    def mark(ids: Iterable[int], kind: str, index: int = 0) -> None:
        for user_id in ids:
            membership = _with(memberships[listed.get(user_id, 0)], kind, index)
            number = numbers.get(membership)
            if number is None:
                number = numbers[membership] = len(memberships)
                memberships.append(membership)
            listed[user_id] = number

    for group, members in enumerate(groups):
        mark(members, "group", group)
    mark(privileged, "privileged")
    mark(global_admins, "global_admin")
    for index, ids in enumerate(policy_sets):
        mark(ids, "policy", index)
    return listed, memberships
