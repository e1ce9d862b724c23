"""Method strength classes and the SMS and voice retirement dates: what a user's registered
methods are worth, and when Microsoft stops delivering its own SMS and voice codes.

Pure constants and one function; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

# Method strength classes, strongest first; each user counts once, at the strongest.
STRENGTHS = ("phishing_resistant", "passwordless", "mfa", "phone", "unclassified", "none")
_STRENGTH_METHODS = (
    (
        "fido2SecurityKey",
        "windowsHelloForBusiness",
        "passKeyDeviceBound",
        "passKeyDeviceBoundAuthenticator",
        "passKeyDeviceBoundWindowsHello",
        "passKeySynced",
        "macOsSecureEnclaveKey",
    ),
    ("microsoftAuthenticatorPasswordless",),
    ("microsoftAuthenticatorPush", "softwareOneTimePasscode", "hardwareOneTimePasscode"),
    ("mobilePhone", "alternateMobilePhone", "officePhone"),
    (),
    ("email", "securityQuestion", "temporaryAccessPass", "appPassword"),
)
METHOD_STRENGTH = MappingProxyType(
    {m: rank for rank, methods in enumerate(_STRENGTH_METHODS) for m in methods}
)
PHONE = STRENGTHS.index("phone")
UNCLASSIFIED = STRENGTHS.index("unclassified")
NO_STRENGTH = STRENGTHS.index("none")


def strength_of(methods: Iterable[str]) -> int:
    """Index in :data:`STRENGTHS` of the strongest of ``methods``."""
    best = NO_STRENGTH
    for method in methods:
        rank = METHOD_STRENGTH.get(method, UNCLASSIFIED)
        best = min(best, rank)
    return best


# Microsoft retires its own SMS and voice for MFA and SSPR on these dates (00:00 UTC, Unix
# time): everyone on the first, except Global Administrators and external (B2B) users, who
# follow on the second. Microsoft Learn, "Passkeys by default and retirement of
# Microsoft-provided SMS and voice authentication" (FAQ, 2026-09-23); global cloud only.
RETIREMENT_GENERAL = ("2027-02-01", 1_801_440_000)
RETIREMENT_LATE = ("2027-07-01", 1_814_400_000)
RETIREMENTS = (RETIREMENT_GENERAL, RETIREMENT_LATE)
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
EXTERNAL_MARK = "#EXT#"  # in the userPrincipalName of every B2B account
