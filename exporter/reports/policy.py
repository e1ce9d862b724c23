"""Pure parsing: Graph's beta ``authenticationMethodsPolicy`` → :class:`MethodsPolicy`.

What users may register (each method configuration's ``state``) and what they are nudged to
register (the registration campaign), beside what they did register. Microsoft adds methods
and states: any id or state that is a usable label is taken as sent. ``optOutSettings`` and
``policyMigrationState`` may be absent; then so are their values. No I/O: everything raises
:class:`~exporter.reports.registration.ReportParseError` or returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exporter.reports.registration import ReportParseError, capped, usable_label

CAMPAIGN_STATES = ("default", "enabled", "disabled")
MIGRATION_STATES = ("preMigration", "migrationInProgress", "migrationComplete")
MAX_METHODS = 1000  # method configurations in one policy: more is not a policy
# Series of their own per tenant, at most (Graph has about fifteen methods): past these, values
# are counted in ``MethodsPolicy.dropped_labels``, not shown.
METHOD_SERIES = 64
TARGET_SERIES = 32


@dataclass(frozen=True, slots=True)
class MethodsPolicy:
    """The tenant's authentication methods policy, as the exporter shows it."""

    # (configuration id as Graph sends it, enabled), in Graph's order.
    methods: tuple[tuple[str, bool], ...]
    campaign_state: str | None = None
    # Distinct targetedAuthenticationMethod values of the campaign's includeTargets, sorted.
    campaign_targets: tuple[str, ...] = ()
    snooze_days: int | None = None
    # optOutSettings.passkeyDynamicMigration (None: Graph did not send it).
    passkey_migration_opted_out: bool | None = None
    migration_state: str | None = None
    # ("method" or "campaign_target", distinct values past the cap, given no series).
    dropped_labels: tuple[tuple[str, int], ...] = ()

    def enabled(self, method: str) -> bool | None:
        """Whether ``method`` (a configuration id, case-insensitive) is enabled; None if absent."""
        return next((on for name, on in self.methods if name.lower() == method.lower()), None)


def _label(value: Any, where: str) -> str:
    if not usable_label(value):
        raise ReportParseError(f"{where} is not a usable name")
    return value


def _methods(document: dict[str, Any]) -> tuple[tuple[str, bool], ...]:
    configurations = document.get("authenticationMethodConfigurations", [])
    if not isinstance(configurations, list) or len(configurations) > MAX_METHODS:
        raise ReportParseError("authenticationMethodConfigurations is not a list of methods")
    methods: dict[str, bool] = {}
    for index, item in enumerate(configurations):
        where = f"authenticationMethodConfigurations[{index}]"
        if not isinstance(item, dict):
            raise ReportParseError(f"{where} is not an object")
        method = _label(item.get("id"), f"{where}.id")
        state = _label(item.get("state"), f"{where}.state")
        if method in methods:  # two states for one method: which one holds is unknowable
            raise ReportParseError(f"{where}.id {method!r} appears twice in the policy")
        methods[method] = state == "enabled"
    return tuple(methods.items())


def _campaign(document: dict[str, Any]) -> tuple[str | None, tuple[str, ...], int | None]:
    enforcement = document.get("registrationEnforcement") or {}
    campaign = (
        enforcement.get("authenticationMethodsRegistrationCampaign")
        if isinstance(enforcement, dict)
        else None
    )
    if campaign is None:
        return None, (), None
    if not isinstance(campaign, dict):
        raise ReportParseError("the registration campaign is not an object")
    where = "registrationEnforcement.authenticationMethodsRegistrationCampaign"
    state = _label(campaign.get("state"), f"{where}.state")
    targets = campaign.get("includeTargets") or []
    if not isinstance(targets, list):
        raise ReportParseError(f"{where}.includeTargets is not a list")
    methods = {
        _label(target.get("targetedAuthenticationMethod"), f"{where}.includeTargets[{i}]")
        for i, target in enumerate(targets)
        if isinstance(target, dict)
    }
    snooze = campaign.get("snoozeDurationInDays")
    if snooze is not None and (type(snooze) is not int or not 0 <= snooze <= 10_000):
        raise ReportParseError(f"{where}.snoozeDurationInDays is not a number of days")
    return state, tuple(sorted(methods)), snooze


def _opted_out(document: dict[str, Any]) -> bool | None:
    settings = document.get("optOutSettings")
    if not isinstance(settings, dict):
        return None
    value = settings.get("passkeyDynamicMigration")
    return value if isinstance(value, bool) else None


def parse_methods_policy(document: Any) -> MethodsPolicy:
    """The policy in ``document`` (decoded JSON); ReportParseError when it is not one."""
    if not isinstance(document, dict):
        raise ReportParseError("the policy is not a JSON object")
    state, targets, snooze = _campaign(document)
    migration = document.get("policyMigrationState")
    methods, dropped_methods = capped(_methods(document), METHOD_SERIES)
    kept_targets, dropped_targets = capped(tuple((t, t) for t in targets), TARGET_SERIES)
    dropped = (("method", dropped_methods), ("campaign_target", dropped_targets))
    return MethodsPolicy(
        methods=methods,
        campaign_state=state,
        campaign_targets=tuple(t for t, _ in kept_targets),
        snooze_days=snooze,
        passkey_migration_opted_out=_opted_out(document),
        migration_state=None if migration is None else _label(migration, "policyMigrationState"),
        dropped_labels=tuple(pair for pair in dropped if pair[1]),
    )
