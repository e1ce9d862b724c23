"""Pure: Conditional Access policies and security defaults → who must use MFA.

The contract's rules ("MFA enforcement"), one place: which policy is an *MFA policy* (state
enabled or report-only, no block, MFA or an authentication strength required with no way
around it), its *scope* (all, or partial when any condition narrows it), who it *includes* and
*excludes*, and the one class each user gets, the first that holds:
``conditional_access``, ``security_defaults``, ``conditional_access_partial``, ``excluded``,
``report_only``, ``none``.

A user's class depends only on the ID sets they are in (each MFA policy's included and
excluded users, groups and roles, resolved by the report collector), whether they are a guest
or external user, and security defaults; so it is decided once per distinct combination
(:class:`Classifier`), not once per user, inside the report's one pass over its rows.
No I/O: everything raises :class:`~exporter.reports.registration.ReportParseError` or returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.reports.directory import Page, decode_listing, parse_object_id
from exporter.reports.registration import ReportParseError, usable_label

CLASSES = (
    "conditional_access",
    "security_defaults",
    "conditional_access_partial",
    "excluded",
    "report_only",
    "none",
)
ENABLED = "enabled"
REPORT_ONLY = "enabledForReportingButNotEnforced"
STATES = (ENABLED, "disabled", REPORT_ONLY)
KINDS = ("block", "mfa_all", "mfa_partial", "other")
# Conditions that narrow a policy to part of the sign-ins: any of them set makes it partial.
NARROWING = (
    "locations",
    "platforms",
    "signInRiskLevels",
    "userRiskLevels",
    "servicePrincipalRiskLevels",
    "insiderRiskLevels",
    "devices",
    "authenticationFlows",
)
ALL = "all"
GUESTS = "GuestsOrExternalUsers"
EXTERNAL_MARK = "#EXT#"
MAX_POLICIES = 5_000  # Graph allows 195 per tenant; past this, a listing is refused
MAX_NAMED = 2_000  # groups plus roles the MFA policies name, looked up each poll
STATE_SERIES = 8  # states Microsoft may add, shown per tenant (past this: counted, not shown)
# A segment's counts: each class, not registered then registered.
SEGMENT_COUNTS = 2 * len(CLASSES)


@dataclass(frozen=True, slots=True)
class Audience:
    """Who one side (include or exclude) of a policy names."""

    everyone: bool = False
    guests: bool = False
    users: frozenset[int] = frozenset()
    groups: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class CaPolicy:
    """One Conditional Access policy as the enforcement classes read it."""

    id: str
    state: str
    kind: str  # one of KINDS, whatever the state
    include: Audience = field(default_factory=Audience)
    exclude: Audience = field(default_factory=Audience)

    @property
    def mfa(self) -> bool:
        """An MFA policy of the contract: it requires MFA and is enabled or report-only."""
        return self.kind in ("mfa_all", "mfa_partial") and self.state in (ENABLED, REPORT_ONLY)


@dataclass(frozen=True, slots=True)
class PolicyCounts:
    """Security defaults and the Conditional Access policies by state and kind: the
    enforcement collector's value, kept until the next poll in place of every policy read
    (each policy's ID sets were some 8 KB a tenant)."""

    security_defaults: bool
    # The states shown (STATES itself, shared, unless Microsoft added some), and the policies
    # of each state and kind in that order (12 small numbers, not 12 tuples a tenant).
    states: tuple[str, ...]
    numbers: tuple[int, ...]

    @property
    def counts(self) -> tuple[tuple[str, str, int], ...]:
        """(state, kind, policies), as :meth:`EnforcementPolicies.counts` says them."""
        pairs = ((state, kind) for state in self.states for kind in KINDS)
        return tuple((state, kind, n) for (state, kind), n in zip(pairs, self.numbers, strict=True))


@dataclass(frozen=True, slots=True)
class EnforcementPolicies:
    """What the ``enforcement`` collector read: security defaults and every CA policy."""

    security_defaults: bool
    policies: tuple[CaPolicy, ...] = ()

    @property
    def mfa_policies(self) -> tuple[CaPolicy, ...]:
        return tuple(p for p in self.policies if p.mfa)

    def named_groups(self) -> tuple[str, ...]:
        """The groups MFA policies name (included or excluded), each once, sorted."""
        named = {g for p in self.mfa_policies for g in (*p.include.groups, *p.exclude.groups)}
        return tuple(sorted(named))

    def named_roles(self) -> tuple[str, ...]:
        """The role templates MFA policies name, each once, sorted."""
        named = {r for p in self.mfa_policies for r in (*p.include.roles, *p.exclude.roles)}
        return tuple(sorted(named))

    def summary(self) -> PolicyCounts:
        """What the exposition shows of these policies (all a tenant keeps between polls)."""
        counts = self.counts()
        states = tuple(dict.fromkeys(state for state, _, _ in counts))
        shown = STATES if states == STATES else states
        return PolicyCounts(self.security_defaults, shown, tuple(n for _, _, n in counts))

    def counts(self) -> tuple[tuple[str, str, int], ...]:
        """(state, kind, policies): the known states x kinds, zeros included, then states
        Microsoft adds (at most :data:`STATE_SERIES` of them)."""
        found = Counter((policy.state, policy.kind) for policy in self.policies)
        extra = sorted({state for state, _ in found if state not in STATES})[:STATE_SERIES]
        return tuple(
            (state, kind, found.get((state, kind), 0))
            for state in (*STATES, *extra)
            for kind in KINDS
        )


def _is_set(value: Any) -> bool:
    """A condition is set unless it is absent, null, or only empty lists and objects."""
    if value is None:
        return False
    if isinstance(value, list | tuple | str):
        return bool(value)
    if isinstance(value, dict):
        return any(_is_set(v) for v in value.values())
    return True


def _strings(node: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = node.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReportParseError(f"{where}.{key} is not a list of strings")
    return tuple(value)


def _ids(values: Iterable[str], where: str) -> frozenset[str]:
    """Object IDs as Graph writes them (lower case); what is not a GUID names nobody."""
    found = set()
    for index, value in enumerate(values):
        try:
            parse_object_id(value, index)
        except ReportParseError:
            continue  # "All", "None", a keyword Microsoft adds: never an object
        found.add(value.lower())
    if len(found) > MAX_NAMED:
        raise ReportParseError(f"{where} names more than {MAX_NAMED} objects")
    return frozenset(found)


def _audience(users: Mapping[str, Any], side: str, where: str) -> Audience:
    """``side`` (include or exclude) of ``conditions.users``."""
    named_users = _strings(users, f"{side}Users", where)
    keywords = {u.lower() for u in named_users}
    return Audience(
        everyone=ALL in keywords,
        guests=GUESTS.lower() in keywords or _is_set(users.get(f"{side}GuestsOrExternalUsers")),
        users=frozenset(parse_object_id(u, 0) for u in _ids(named_users, where)),
        groups=_ids(_strings(users, f"{side}Groups", where), where),
        roles=_ids(_strings(users, f"{side}Roles", where), where),
    )


def _grant_kind(grant: Any, where: str) -> str | None:
    """``block``, ``mfa`` (MFA required with no way around it), or None."""
    if grant is None:
        return None
    if not isinstance(grant, dict):
        raise ReportParseError(f"{where}.grantControls is not an object")
    controls = _strings(grant, "builtInControls", f"{where}.grantControls")
    if "block" in controls:
        return "block"
    strength = _is_set(grant.get("authenticationStrength"))
    others = [c for c in controls if c != "mfa"]
    others += list(_strings(grant, "customAuthenticationFactors", f"{where}.grantControls"))
    others += list(_strings(grant, "termsOfUse", f"{where}.grantControls"))
    if not ("mfa" in controls or strength):
        return None
    operator = grant.get("operator")
    alone = not others
    return "mfa" if alone or (isinstance(operator, str) and operator.upper() == "AND") else None


def _scope_all(conditions: Mapping[str, Any], where: str) -> bool:
    applications = conditions.get("applications") or {}
    if not isinstance(applications, dict):
        raise ReportParseError(f"{where}.conditions.applications is not an object")
    included = {a.lower() for a in _strings(applications, "includeApplications", where)}
    excluded = _strings(applications, "excludeApplications", where)
    client_apps = {c.lower() for c in _strings(conditions, "clientAppTypes", where)}
    return (
        ALL in included
        and not excluded
        and client_apps <= {ALL}
        and not any(_is_set(conditions.get(name)) for name in NARROWING)
    )


def parse_policy(item: Any, index: int) -> CaPolicy:
    """One policy of the listing (``value[index]``); null or missing parts count as absent."""
    where = f"value[{index}]"
    if not isinstance(item, dict):
        raise ReportParseError(f"{where} is not an object")
    policy_id, state = item.get("id"), item.get("state")
    if not isinstance(policy_id, str) or not policy_id:
        raise ReportParseError(f"{where}.id is missing")
    if not usable_label(state):
        raise ReportParseError(f"{where}.state is not a usable name")
    conditions = item.get("conditions") or {}
    if not isinstance(conditions, dict):
        raise ReportParseError(f"{where}.conditions is not an object")
    users = conditions.get("users") or {}
    if not isinstance(users, dict):
        raise ReportParseError(f"{where}.conditions.users is not an object")
    grant = _grant_kind(item.get("grantControls"), where)
    if grant == "block":
        kind = "block"
    elif grant == "mfa":
        kind = "mfa_all" if _scope_all(conditions, where) else "mfa_partial"
    else:
        kind = "other"
    users_where = f"{where}.conditions.users"
    return CaPolicy(
        policy_id, state, kind, _audience(users, "include", users_where),
        _audience(users, "exclude", users_where),
    )  # fmt: skip


class PolicyListing:
    """The pages of ``GET /identity/conditionalAccess/policies``: each policy once (a policy
    repeated across pages counts once), at most :data:`MAX_POLICIES`."""

    def __init__(self) -> None:
        self._policies: dict[str, CaPolicy] = {}

    def add_page(self, document: Any) -> Page:
        """One page (its JSON bytes, or in tests the decoded document); the walk's guard sees
        how many policies were new."""
        rows, link = decode_listing(document, "policies")
        known = len(self._policies)
        for index, item in enumerate(rows):
            policy = parse_policy(item, index)
            self._policies.setdefault(policy.id, policy)
        if len(self._policies) > MAX_POLICIES:
            raise ReportParseError(f"more than {MAX_POLICIES} Conditional Access policies")
        return Page(link, len(rows), len(self._policies) - known)

    def policies(self) -> tuple[CaPolicy, ...]:
        return tuple(self._policies.values())


def parse_security_defaults(document: Any) -> bool:
    """``isEnabled`` of identitySecurityDefaultsEnforcementPolicy."""
    enabled = document.get("isEnabled") if isinstance(document, dict) else None
    if not isinstance(enabled, bool):
        raise ReportParseError("isEnabled is not true or false")
    return enabled


# ----------------------------------------------------------------------------- classes


@dataclass(frozen=True, slots=True)
class EnforcementContext:
    """What the report's pass needs to classify users: the policies, the distinct ID sets their
    sides name (each group's members, each side's role holders, each side's named users; a set
    named by many policies is one set), and for each MFA policy the indices of the sets of its
    included and of its excluded side."""

    policies: EnforcementPolicies
    id_sets: tuple[frozenset[int], ...] = ()
    sides: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()


class Classifier:
    """A user's class from the ID sets they are in and whether they are a guest or external;
    decided once per distinct combination."""

    def __init__(self, context: EnforcementContext) -> None:
        self._policies = context.policies.mfa_policies
        self._sides = context.sides or tuple(((), ()) for _ in self._policies)
        self._defaults = context.policies.security_defaults
        self._known: dict[tuple[tuple[int, ...], bool], int] = {}

    def class_of(self, in_sets: tuple[int, ...], guest: bool) -> int:
        """The index in :data:`CLASSES` of a user in ``in_sets`` (``guest``: a guest or an
        external user)."""
        key = (in_sets, guest)
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = self._decide(frozenset(in_sets), guest)
        return found

    def _decide(self, in_sets: frozenset[int], guest: bool) -> int:
        covered: set[str] = set()  # "all", "partial", "report_only"
        included_enabled = False
        for policy, (ins, outs) in zip(self._policies, self._sides, strict=True):
            include, exclude = policy.include, policy.exclude
            included = include.everyone or (include.guests and guest) or not in_sets.isdisjoint(ins)
            excluded = (
                exclude.everyone or (exclude.guests and guest) or not in_sets.isdisjoint(outs)
            )
            if not included:
                continue
            if policy.state == ENABLED:
                included_enabled = True
                if not excluded:
                    covered.add("all" if policy.kind == "mfa_all" else "partial")
            elif not excluded:
                covered.add("report_only")
        if "all" in covered:
            return 0
        if self._defaults:
            return 1
        if "partial" in covered:
            return 2
        if included_enabled:
            return 3
        return 4 if "report_only" in covered else 5


def is_guest(user_type: str | None, external: bool) -> bool:
    """A guest or external user, as ``GuestsOrExternalUsers`` takes them."""
    return user_type == "guest" or external


class EnforcementTally:
    """Users per segment (user type, role), class and ``isMfaRegistered``."""

    def __init__(self, context: EnforcementContext) -> None:
        self.classifier = Classifier(context)
        self._counts: dict[tuple[str, str], list[int]] = {}

    def classes_of(self, in_sets: tuple[int, ...]) -> tuple[int, ...]:
        """(class of a member, class of a guest or external user) in ``in_sets``."""
        return self.classifier.class_of(in_sets, False), self.classifier.class_of(in_sets, True)

    def add(
        self, segment: tuple[str, str], classes: tuple[int, ...], guest: bool, mfa: bool, users: int
    ) -> None:
        """``users`` of ``segment`` whose :meth:`classes_of` are ``classes``."""
        row = self._counts.get(segment)
        if row is None:
            row = self._counts[segment] = [0] * SEGMENT_COUNTS
        row[2 * classes[1 if guest else 0] + (1 if mfa else 0)] += users

    def report(
        self, shown: Iterable[tuple[str, str]]
    ) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
        """(user_type, role, counts) for the segments ``shown``: counts are (class, not
        registered), (class, registered) in :data:`CLASSES` order."""
        return tuple(
            (user_type, role, tuple(self._counts.get((user_type, role), [0] * SEGMENT_COUNTS)))
            for user_type, role in shown
        )
