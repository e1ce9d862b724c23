"""Which ID sets each listed user is in, numbered: one dict look-up a row in the report's pass.

The sets: privileged admins, each configured group, Global Administrators (readiness), and each
MFA policy's included and excluded users (enforcement). A user's *membership* is where they
are in all of them at once; memberships are numbered, and every ID maps to its number (0: in
no set), so a row's key holds one small int, quicker to hash than the tuple.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
    get = listed.get

    def number_of(membership: Membership) -> int:
        number = numbers.get(membership)
        if number is None:
            number = numbers[membership] = len(memberships)
            memberships.append(membership)
        return number

    for group, members in enumerate(groups):
        for user_id in members:
            privileged_, groups_, late, sets = memberships[get(user_id, 0)]
            listed[user_id] = number_of((privileged_, (*groups_, group), late, sets))
    for user_id in privileged:
        _, groups_, late, sets = memberships[get(user_id, 0)]
        listed[user_id] = number_of((True, groups_, late, sets))
    for user_id in global_admins:
        privileged_, groups_, _, sets = memberships[get(user_id, 0)]
        listed[user_id] = number_of((privileged_, groups_, True, sets))
    for index, ids in enumerate(policy_sets):
        for user_id in ids:
            privileged_, groups_, late, sets = memberships[get(user_id, 0)]
            listed[user_id] = number_of((privileged_, groups_, late, (*sets, index)))
    if reduce is None:
        return listed, memberships
    return _reduced(listed, memberships, reduce)


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
