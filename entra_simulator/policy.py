"""The authentication methods policy of a simulated tenant, in one of a few variants.

Variants differ where the exporter must tell them apart: the registration campaign default,
enabled or disabled and targeting Microsoft Authenticator or another method; Sms and Voice on
and off; the passkey opt-out true, false or absent; a method id and a migration state Graph
never sent before; and one variant (:data:`FORBIDDEN`) answering 403 as Graph does when the app
lacks the permission.
"""

from __future__ import annotations

from typing import Any

FORBIDDEN = 5
VARIANTS = 6
FORBIDDEN_BODY = {
    "error": {
        "code": "Authorization_RequestDenied",
        "message": "Insufficient privileges to complete the operation.",
        "innerError": {"date": "2026-12-05T10:00:00", "request-id": "0", "client-request-id": "0"},
    }
}
_BASE_METHODS = ("Fido2", "MicrosoftAuthenticator", "TemporaryAccessPass", "Email", "SoftwareOath")


def _configuration(method: str, enabled: bool) -> dict[str, Any]:
    return {
        "@odata.type": (
            f"#microsoft.graph.{method[0].lower()}{method[1:]}AuthenticationMethodConfiguration"
        ),
        "id": method,
        "state": "enabled" if enabled else "disabled",
        "includeTargets": [{"targetType": "group", "id": "all_users"}],
    }


def policy_document(variant: int) -> dict[str, Any]:
    """The policy of ``variant`` (0 to :data:`VARIANTS` - 1, but :data:`FORBIDDEN`)."""
    campaign_state = ("default", "enabled", "disabled", "enabled", "default")[variant]
    target = "fido2" if variant == 3 else "microsoftAuthenticator"
    methods = {name: True for name in _BASE_METHODS}
    methods["Fido2"] = variant != 2
    methods["Sms"] = variant in (0, 1, 4)
    methods["Voice"] = variant in (1, 3)
    if variant == 4:
        methods["QrCodePin"] = True  # a method id Graph never sent before
    document: dict[str, Any] = {
        "@odata.context": "https://graph.microsoft.com/beta/$metadata#authenticationMethodsPolicy",
        "id": "authenticationMethodsPolicy",
        "policyVersion": "1.5",
        "policyMigrationState": ("migrationComplete", "preMigration", "migrationInProgress")[
            variant % 3
        ]
        if variant != 4
        else "migrationPaused",  # a state Graph never sent before
        "registrationEnforcement": {
            "authenticationMethodsRegistrationCampaign": {
                "snoozeDurationInDays": variant + 1,
                "state": campaign_state,
                "excludeTargets": [],
                "includeTargets": [
                    {
                        "id": "all_users",
                        "targetType": "group",
                        "targetedAuthenticationMethod": target,
                    }
                ],
            }
        },
        "authenticationMethodConfigurations": [
            _configuration(name, on) for name, on in methods.items()
        ],
    }
    if variant in (0, 1):
        document["optOutSettings"] = {"passkeyDynamicMigration": variant == 1}
    return document


def policy_truth(variant: int) -> dict[str, Any] | None:
    """What the exporter must show for ``variant`` (None: Graph refuses it)."""
    if variant == FORBIDDEN:
        return None
    document = policy_document(variant)
    campaign = document["registrationEnforcement"]["authenticationMethodsRegistrationCampaign"]
    return {
        "methods": {
            c["id"]: c["state"] == "enabled" for c in document["authenticationMethodConfigurations"]
        },
        "campaign_state": campaign["state"],
        "targets": sorted({t["targetedAuthenticationMethod"] for t in campaign["includeTargets"]}),
        "snooze_days": campaign["snoozeDurationInDays"],
        "opted_out": document.get("optOutSettings", {}).get("passkeyDynamicMigration"),
        "migration_state": document["policyMigrationState"],
    }
