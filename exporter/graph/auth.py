"""Tenant credentials → MSAL confidential client apps → app-only access tokens.

One ``msal.ConfidentialClientApplication`` per tenant, built on first use in a worker thread
(building it performs OpenID discovery over the network) and then reused, so MSAL's in-memory
token cache answers every poll until the token is close to expiry.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any, Protocol

import msal
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from msal.exceptions import MsalServiceError

from exporter.config.credentials import credential_files, reread_credential
from exporter.config.files import FileStamp, file_stamp, read_text
from exporter.config.model import (
    CertificateCredential,
    ClientSecretCredential,
    Credential,
    ManagedIdentityCredential,
    TenantConfig,
    WorkloadIdentityCredential,
)
from exporter.config.problems import ConfigError
from exporter.graph.failures import (
    AUTH_ERROR,
    CONSENT_CODES,
    CONSENT_REQUIRED,
    HTTP_ERROR,
    PARSE_ERROR,
    PollFailure,
    admin_consent_url,
    classify_oauth_error,
    describe_error,
    unexpected_failure,
)
from exporter.graph.transport import MsalHttpAdapter, Transport

log = logging.getLogger("exporter.auth")


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token for Graph; ``repr`` hides the value."""

    value: str

    def __repr__(self) -> str:
        return "AccessToken('********')"


class TokenError(Exception):
    """A token could not be acquired; ``failure`` says why, without secrets."""

    def __init__(self, failure: PollFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def read_federated_token(token_file: str) -> str:
    """Read the projected service-account token; called for every token request."""
    return read_text(token_file).strip()


def msal_client_credential(
    tenant: TenantConfig, credential: Credential | None = None
) -> str | dict[str, Any]:
    """The ``client_credential`` argument MSAL wants for this tenant's credential (or for
    ``credential``, the same re-read from its files)."""
    credential = credential or tenant.credential
    if isinstance(credential, ClientSecretCredential):
        return credential.secret.reveal()
    if isinstance(credential, CertificateCredential):
        value: dict[str, Any] = {"private_key": credential.private_key_pem.reveal()}
        if credential.send_x5c:
            # MSAL (1.35+) signs with the certificate's SHA-256 thumbprint and sends the
            # certificate chain (x5c), which subject name + issuer auth needs.
            value["public_certificate"] = credential.certificate_pem
        else:
            # Only the (SHA-1) thumbprint, as Entra's certificate credentials accept it.
            certificate = x509.load_pem_x509_certificate(credential.certificate_pem.encode())
            value["thumbprint"] = certificate.fingerprint(hashes.SHA1()).hex()  # noqa: S303
        if credential.passphrase is not None:
            value["passphrase"] = credential.passphrase.reveal()
        return value
    if isinstance(credential, WorkloadIdentityCredential):
        token_file = credential.token_file
        return {"client_assertion": lambda: read_federated_token(token_file)}
    raise TypeError(f"unknown credential type {type(credential).__name__}")


def reuse_margin(expires_in: float) -> float:
    """How long before expiry a token stops being reused.

    MSAL treats a token with under 5 minutes left as expired, so it would fetch a new token
    for every poll when the identity provider issues short-lived ones; we reuse a token until
    5 % of its lifetime (at most 5 minutes) is left. Should Graph still refuse it, the poll
    drops it and retries once with a new one.
    """
    return min(300.0, expires_in * 0.05)


class Hold(Protocol):
    """Where a token source's values go to be redacted (the runtime's SecretRedactor.hold):
    its secrets in every encoding, its tokens as sent."""

    def __call__(
        self, owner: object, secrets: tuple[str, ...], tokens: tuple[str, ...] = (), /
    ) -> None: ...


def _no_hold(_owner: object, _secrets: tuple[str, ...], _tokens: tuple[str, ...] = ()) -> None:
    """Where held values go when nobody redacts (tests of this module alone)."""


class RotatingCredential:
    """A tenant's credential, re-read from its files when they change.

    The config watcher's rule: a file's device, inode, change time and size (through the
    symbolic link a mounted Kubernetes Secret swaps). New files that do not make a credential
    (a key without its certificate, an empty secret) are logged and the last good one kept.
    """

    def __init__(
        self, credential: Credential, tenant_log: logging.LoggerAdapter[logging.Logger]
    ) -> None:
        self.credential = credential
        self._log = tenant_log
        self._files = credential_files(credential)
        self._stamps = self._stamp()

    def _stamp(self) -> tuple[FileStamp | None, ...]:
        return tuple(file_stamp(name) for name in self._files)

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the files if they changed (or ``force``); True when the credential did."""
        if not self._files:
            return False
        stamps = self._stamp()
        if stamps == self._stamps and not force:
            return False
        self._stamps = stamps
        try:
            fresh = reread_credential(self.credential)
        except ConfigError as err:
            self._log.warning(
                "credential files changed but cannot be used: the last good credential is kept",
                extra={"problems": "; ".join(err.problems)},
            )
            return False
        if fresh == self.credential:
            return False
        self.credential = fresh
        self._log.info(
            "credential files changed: the new credential is used from this token request on",
            extra={"files": ",".join(self._files)},
        )
        return True

    def secrets(self) -> tuple[str, ...]:
        """The secret values of the credential in use (for redaction)."""
        credential = self.credential
        if isinstance(credential, ClientSecretCredential):
            return (credential.secret.reveal(),)
        if isinstance(credential, CertificateCredential):
            phrase = credential.passphrase
            return (credential.private_key_pem.reveal(), *([phrase.reveal()] if phrase else []))
        return ()


class DiscoveryFailedError(Exception):
    """MSAL could not read the identity provider's OpenID configuration."""


# MSAL answers a token request from its own cache for a while after a 5xx (its throttling),
# raising MsalServiceError("HTTP Error: 500") without a request this exporter sees.
_REPLAYED_STATUS = re.compile(r"HTTP Error: (5\d\d)\b")


def replayed_server_error(error: BaseException) -> int | None:
    """The 5xx status of an identity-provider answer MSAL replays from its cache, if that is
    what ``error`` is."""
    if isinstance(error, MsalServiceError):
        found = _REPLAYED_STATUS.search(str(error))
        if found:
            return int(found.group(1))
    return None


class TokenEndpointStatusError(Exception):
    """The identity provider answered a token request with a 5xx."""

    def __init__(self, status: int, request_id: object = None) -> None:
        super().__init__(f"the identity provider answered HTTP {status}")
        self.status = status
        self.request_id = request_id if isinstance(request_id, str) else None


def usable_token(value: object) -> str:
    """The access token as sent, if an ``Authorization`` header can carry it; else the
    identity provider's answer is unusable (never a network error, never retried)."""
    header_safe = isinstance(value, str) and value.isascii() and value.isprintable()
    if header_safe and isinstance(value, str) and value and " " not in value:
        return value
    raise TokenError(
        PollFailure(
            PARSE_ERROR,
            "the identity provider answered an access token that is empty or holds "
            "characters a request header cannot carry",
        )
    )


class TenantTokenSource:
    """Access tokens for one tenant, from one lazily built MSAL app."""

    def __init__(
        self,
        tenant: TenantConfig,
        transport: Transport,
        executor: Executor,
        hold: Hold = _no_hold,
        tenant_log: logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        """``tenant_log``: where lines about the tenant go (its own logger; by default this
        module's, the tenant named in each line)."""
        self.tenant = tenant
        self._executor = executor
        # Told every value this source holds (tokens, a re-read secret), to redact them all.
        self._hold = hold
        self._credential = RotatingCredential(
            tenant.credential,
            tenant_log or logging.LoggerAdapter(log, {"tenant": tenant.name}),
        )
        self._http = MsalHttpAdapter(
            transport,
            timeout=tenant.timeout,
            counted_method="GET"
            if isinstance(tenant.credential, ManagedIdentityCredential)
            else "POST",
        )
        self._app: msal.ConfidentialClientApplication | None = None
        # MSAL's http_cache (its public parameter), kept across the apps built for each token:
        # the tenant's OpenID discovery is not asked again for every token, and MSAL's memory
        # of a throttled or failing token endpoint outlives the app as it did when the app did.
        self._http_cache: dict[Any, Any] = {}
        self._managed: Any = None
        self._build_lock = threading.Lock()
        # The last token and the monotonic time until which it is reused without asking MSAL.
        self._reusable: tuple[AccessToken, float] | None = None
        self._token_requests_taken = 0

    def take_token_requests(self) -> int:
        """Requests sent to the token endpoint since the last call (cache hits send none).

        A delta, not a running total: the exporter's counter adds it up, so a new token source
        (a changed credential) never makes the counter go backwards.
        """
        total = self._http.token_requests
        new, self._token_requests_taken = total - self._token_requests_taken, total
        return new

    def _build_managed_identity(self, credential: ManagedIdentityCredential) -> Any:
        with self._build_lock:
            if self._managed is None:
                identity: Any = (
                    msal.UserAssignedManagedIdentity(client_id=credential.client_id)
                    if credential.client_id
                    else msal.SystemAssignedManagedIdentity()
                )
                self._managed = msal.ManagedIdentityClient(identity, http_client=self._http)
            return self._managed

    def _build_app(self) -> msal.ConfidentialClientApplication:
        with self._build_lock:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self.tenant.client_id,
                    client_credential=msal_client_credential(
                        self.tenant, self._credential.credential
                    ),
                    authority=self.tenant.authority,
                    http_client=self._http,
                    http_cache=self._http_cache,
                    # Known clouds need no instance discovery; a custom host cannot have it.
                    instance_discovery=False if self.tenant.cloud == "custom" else None,
                )
            return self._app

    def _acquire(self) -> dict[str, Any]:
        """MSAL's answer; the identity provider's 5xx is ``http_error`` with its status, whether
        MSAL raised on its body or handed back its error."""
        self._http.begin()
        try:
            result = self._acquire_once()
        except DiscoveryFailedError:
            raise
        except Exception as err:
            status = self._http.server_error() or replayed_server_error(err)
            if status is None:
                raise
            raise TokenEndpointStatusError(status) from err
        status = self._http.server_error()
        if "access_token" not in result and status is not None:
            raise TokenEndpointStatusError(status, result.get("correlation_id"))
        return result

    def _acquire_once(self) -> dict[str, Any]:
        credential = self.tenant.credential
        result: dict[str, Any]
        if isinstance(credential, ManagedIdentityCredential):
            # The identity endpoint (IMDS) answers GETs; the token is for Graph as a resource.
            client = self._build_managed_identity(credential)
            result = client.acquire_token_for_client(resource=self.tenant.endpoints.graph_host)
            return result
        if self._credential.refresh():
            self._use_new_credential()
        result = self._acquire_for_client()
        if (
            "access_token" not in result
            and classify_oauth_error(result.get("error")) == AUTH_ERROR
            and self._credential.refresh(force=True)
        ):
            # Refused: the files may hold a rotated credential their stamps did not show yet.
            self._use_new_credential()
            result = self._acquire_for_client()
        return result

    def _acquire_for_client(self) -> dict[str, Any]:
        try:
            app = self._build_app()
        except (ValueError, KeyError) as err:
            # MSAL raises ValueError when OpenID discovery is refused (e.g. unknown tenant).
            raise DiscoveryFailedError(describe_error(err)) from err
        result: dict[str, Any] = app.acquire_token_for_client(scopes=[self.tenant.graph_scope])
        return result

    def _use_new_credential(self) -> None:
        """Build the next MSAL app with the re-read credential (its cache goes with the old)."""
        self._hold(self, self._credential.secrets())
        with self._build_lock:
            self._app = None
            self._reusable = None

    async def get_token(self) -> AccessToken:
        """A valid access token, reused while it is fresh; raise :class:`TokenError`."""
        reusable = self._reusable
        if reusable is not None and time.monotonic() < reusable[1]:
            return reusable[0]
        return await self._fetch_token()

    async def _fetch_token(self) -> AccessToken:
        loop = asyncio.get_running_loop()
        asked_at = time.monotonic()
        try:
            result = await loop.run_in_executor(self._executor, self._acquire)
        except DiscoveryFailedError as err:
            raise TokenError(
                PollFailure(AUTH_ERROR, f"identity provider discovery failed: {err}")
            ) from None
        except TokenEndpointStatusError as err:
            raise TokenError(
                PollFailure(
                    HTTP_ERROR,
                    f"token request failed: {err}",
                    http_status=err.status,
                    request_id=err.request_id,
                )
            ) from None
        except Exception as err:  # noqa: BLE001 - transport errors arrive wrapped by MSAL's thread
            # Connection trouble is network_error; anything else (MSAL choking on an answer,
            # e.g. "expires_in": null) is an answer we could not use.
            failure = unexpected_failure(err, otherwise=PARSE_ERROR)
            raise TokenError(
                replace(failure, message=f"token request failed: {describe_error(err)}")
            ) from None
        if "access_token" in result:
            token = AccessToken(usable_token(result["access_token"]))
            # Opaque to us (not always a JWT): redacted as the exact value, wherever it shows.
            self._hold(self, self._credential.secrets(), (token.value,))
            expires_in = result.get("expires_in")
            if isinstance(expires_in, int | float) and expires_in > 0:
                self._reusable = (token, asked_at + expires_in - reuse_margin(expires_in))
                # The token is reused from here, not from MSAL's cache: the app (its caches,
                # its authority's discovery, its closures: some 12 KB a tenant) is built again
                # for the next token, in an hour, rather than held for nothing until then.
                with self._build_lock:
                    self._app = None
            return token
        error = result.get("error")
        text = str(result.get("error_description") or "")
        description = text.splitlines()
        result_class = classify_oauth_error(error, text, result.get("error_codes"))
        reason = description[0] if description else error
        if result_class == CONSENT_REQUIRED:
            url = admin_consent_url(
                self.tenant.endpoints.authority_host, self.tenant.tenant_id, self.tenant.client_id
            )
            code = next((c for c in CONSENT_CODES if c in text), "AADSTS65001")
            reason = (
                f"the app is not consented in this tenant ({code}): an administrator opens {url}"
            )
        raise TokenError(
            PollFailure(
                result_class,
                f"token request refused: {reason}",
                error_code=error,
                request_id=result.get("correlation_id"),
            )
        )

    def forget_tokens(self) -> None:
        """Drop cached access tokens (Graph refused one), so the next poll fetches a new one."""
        self._reusable = None
        app = self._app
        if app is None:
            return
        cache = app.token_cache
        tokens = list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN))
        for item in tokens:
            cache.remove_at(item)
