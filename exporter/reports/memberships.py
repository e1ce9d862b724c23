"""Which ID sets each listed user is in, numbered: one dict look-up a row in the report's pass.

The sets: privileged admins, each configured group, Global Administrators (readiness), and each
MFA policy's included and excluded users (enforcement). A user's *membership* is where they
are in all of them at once; memberships are numbered, and every ID maps to its number (0: in
no set), so a row's key holds one small int, quicker to hash than the tuple.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from itertools import repeat

# A user's membership: (privileged admin, configured groups, Global Administrator, enforcement
# ID sets as indices, or once reduced their classes: member's, guest's).
Membership = tuple[bool, tuple[int, ...], bool, tuple[int, ...]]
NOT_LISTED: Membership = (False, (), False, ())


def listed_ids(
    privileged: Iterable[int],
    groups: Iterable[Iterable[int]],
    global_admins: Iterable[int],
    policy_sets: Iterable[Iterable[int]],
    reduce: Callable[[tuple[int, ...]], tuple[int, ...]] | None = None,
) -> tuple[dict[int, int], list[Membership]]:
    """Every ID of the sets → the number of its membership in the list returned beside it.

    ``reduce`` turns a membership's policy sets into what is counted of them (its enforcement
    classes): memberships that differ only in sets of the same classes become one, so the
    report's pass sees fewer distinct row shapes. Number 0 is then the unlisted users'.
    """
    memberships = [NOT_LISTED]
    numbers = {NOT_LISTED: 0}
    listed: dict[int, int] = {}

    def mark(ids: Iterable[int], change: Callable[[Membership], Membership]) -> None:
        """Move every ID of ``ids`` to its membership changed by ``change``: the IDs' look-ups
        and stores in C, ``change`` once per membership they were in (sets run to 100,000s of
        IDs, their memberships to dozens)."""
        ids = ids if isinstance(ids, Collection) else list(ids)
        olds = list(map(listed.get, ids, repeat(0)))
        moves = {}
        for old in set(olds):
            membership = change(memberships[old])
            number = numbers.get(membership)
            if number is None:
                number = numbers[membership] = len(memberships)
                memberships.append(membership)
            moves[old] = number
        listed.update(zip(ids, map(moves.__getitem__, olds), strict=True))

    for group, members in enumerate(groups):
        mark(members, _in_group(group))
    mark(privileged, lambda m: (True, m[1], m[2], m[3]))
    mark(global_admins, lambda m: (m[0], m[1], True, m[3]))
    for index, ids in enumerate(policy_sets):
        mark(ids, _in_policy_set(index))
    if reduce is None:
        return listed, memberships
    return _reduced(listed, memberships, reduce)


def _in_group(group: int) -> Callable[[Membership], Membership]:
    return lambda m: (m[0], (*m[1], group), m[2], m[3])


def _in_policy_set(index: int) -> Callable[[Membership], Membership]:
    return lambda m: (m[0], m[1], m[2], (*m[3], index))


def _reduced(
    listed: dict[int, int],
    memberships: list[Membership],
    reduce: Callable[[tuple[int, ...]], tuple[int, ...]],
) -> tuple[dict[int, int], list[Membership]]:
    """The memberships with their sets reduced, equal ones merged, and the IDs renumbered."""
    merged: list[Membership] = []
    numbers: dict[Membership, int] = {}
    renumber = []
    for privileged, groups, late, sets in memberships:
        membership = (privileged, groups, late, reduce(sets))
        if membership not in numbers:
            numbers[membership] = len(merged)
            merged.append(membership)
        renumber.append(numbers[membership])
    return dict(zip(listed, map(renumber.__getitem__, listed.values()), strict=True)), merged
