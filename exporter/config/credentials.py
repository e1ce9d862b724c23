"""Who a tenant is and how it signs in: its ``tenant_id``, ``client_id`` and ``name`` keys, and
its credential keys → one :class:`~exporter.config.model.Credential`.

Secret files and certificates are read and checked here, at load time, so a wrong path, a key
that does not match its certificate or a wrong passphrase is a config error with its path, not
a failed poll later. Messages never quote key material.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exporter.config.model import (
    CertificateCredential,
    ClientSecretCredential,
    Credential,
    ManagedIdentityCredential,
    Secret,
    WorkloadIdentityCredential,
)
from exporter.config.problems import Problems, join

CREDENTIAL_KEYS = (
    "client_secret",
    "client_secret_file",
    "certificate",
    "workload_identity",
    "managed_identity",
)
SYSTEM_MANAGED_IDENTITY = "system"
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
MAX_NAME_LENGTH = 128
_CERTIFICATE_KEYS = frozenset({"private_key_file", "certificate_file", "passphrase", "send_x5c"})


def is_managed_identity(node: dict[str, Any]) -> bool:
    """True when the tenant authenticates as an Azure managed identity."""
    return node.get("managed_identity") not in (None, False)


def parse_credential(
    node: dict[str, Any], path: str, environ: Mapping[str, str], problems: Problems
) -> Credential | None:
    """The one credential of tenant ``node``; None (with problems) if none, several or bad."""
    present = [key for key in CREDENTIAL_KEYS if key in node and node[key] not in (None, False)]
    if not present:
        problems.add(
            path,
            "no credential: set exactly one of client_secret, client_secret_file, "
            "certificate, workload_identity, managed_identity",
        )
        return None
    if len(present) > 1:
        problems.add(path, f"more than one credential ({', '.join(present)}): set exactly one")
        return None
    key = present[0]
    key_path, value = join(path, key), node[key]
    if key == "client_secret":
        if not isinstance(value, str) or not value:
            problems.add(
                key_path, "must be a non-empty string (quote a secret that looks like a number)"
            )
            return None
        return ClientSecretCredential(Secret(value))
    if key == "client_secret_file":
        return _parse_secret_file(value, key_path, problems)
    if key == "certificate":
        return _parse_certificate(value, key_path, problems)
    if key == "managed_identity":
        return _parse_managed_identity(value, key_path, problems)
    return _parse_workload_identity(value, key_path, environ, problems)


def _parse_secret_file(value: Any, path: str, problems: Problems) -> Credential | None:
    file_name = problems.string(value, path)
    if file_name is None:
        return None
    text = problems.read_text_file(file_name, path)
    if text is None:
        return None
    secret = text.strip()
    if not secret:
        problems.add(path, f"{file_name} is empty")
        return None
    return ClientSecretCredential(Secret(secret), secret_file=file_name)


def _parse_workload_identity(
    value: Any, path: str, environ: Mapping[str, str], problems: Problems
) -> Credential | None:
    if value is not True:
        problems.add(path, "must be true (or absent)")
        return None
    token_file = environ.get("AZURE_FEDERATED_TOKEN_FILE", "")
    if not token_file:
        problems.add(path, "environment variable AZURE_FEDERATED_TOKEN_FILE is not set")
        return None
    if not os.access(token_file, os.R_OK):
        problems.add(path, f"cannot read AZURE_FEDERATED_TOKEN_FILE {token_file}")
        return None
    return WorkloadIdentityCredential(token_file)


def _parse_managed_identity(
    value: Any, path: str, problems: Problems
) -> ManagedIdentityCredential | None:
    if value == SYSTEM_MANAGED_IDENTITY:
        return ManagedIdentityCredential(None)
    if isinstance(value, dict):
        problems.check_keys(value, {"client_id"}, path)
        client_id = problems.string(value.get("client_id"), join(path, "client_id"))
        if client_id and not is_guid(client_id):
            problems.add(join(path, "client_id"), f"{client_id!r} is not a GUID")
            return None
        return ManagedIdentityCredential(client_id) if client_id else None
    problems.add(
        path, "must be 'system' or a mapping with the client_id of a user-assigned identity"
    )
    return None


def _parse_certificate(value: Any, path: str, problems: Problems) -> CertificateCredential | None:
    if not isinstance(value, dict):
        problems.add(path, "must be a mapping with private_key_file and certificate_file")
        return None
    problems.check_keys(value, _CERTIFICATE_KEYS, path)
    send_x5c = value.get("send_x5c", True)
    if not isinstance(send_x5c, bool):
        problems.add(join(path, "send_x5c"), "must be true or false")
        return None
    key_file = problems.string(value.get("private_key_file"), join(path, "private_key_file"))
    cert_file = problems.string(value.get("certificate_file"), join(path, "certificate_file"))
    passphrase = value.get("passphrase")
    if passphrase is not None and not isinstance(passphrase, str):
        problems.add(join(path, "passphrase"), "must be a string")
        return None
    if key_file is None or cert_file is None:
        return None
    key_pem = problems.read_text_file(key_file, join(path, "private_key_file"))
    cert_pem = problems.read_text_file(cert_file, join(path, "certificate_file"))
    if key_pem is None or cert_pem is None:
        return None
    if not _key_matches_certificate(
        key_pem, cert_pem, passphrase, (path, key_file, cert_file), problems
    ):
        return None
    return CertificateCredential(
        private_key_pem=Secret(key_pem),
        certificate_pem=cert_pem,
        private_key_file=key_file,
        certificate_file=cert_file,
        passphrase=Secret(passphrase) if passphrase else None,
        send_x5c=send_x5c,
    )


def _key_matches_certificate(
    key_pem: str,
    cert_pem: str,
    passphrase: str | None,
    where: tuple[str, str, str],
    problems: Problems,
) -> bool:
    """True if the key opens (with the passphrase) and belongs to the certificate.

    ``where``: the certificate's key path, then the key file and the certificate file names.
    """
    path, key_file, cert_file = where
    key_path, cert_path = join(path, "private_key_file"), join(path, "certificate_file")
    try:
        private_key = serialization.load_pem_private_key(
            key_pem.encode(), password=passphrase.encode() if passphrase else None
        )
    except (ValueError, TypeError):
        # The library's message may quote key material; say only what the user must fix.
        problems.add(key_path, f"{key_file} is not a PEM private key (or the passphrase is wrong)")
        return False
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        problems.add(cert_path, f"{cert_file} is not a PEM certificate")
        return False
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if certificate.public_key().public_bytes(*spki) != private_key.public_key().public_bytes(*spki):
        problems.add(path, f"{key_file} does not belong to the certificate in {cert_file}")
        return False
    return True


def is_guid(text: str) -> bool:
    """True for a GUID such as ``5f1c3d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f``."""
    return bool(_GUID_RE.match(text))


def is_domain(text: str) -> bool:
    """True for a DNS domain such as ``contoso.onmicrosoft.com``."""
    return bool(_DOMAIN_RE.match(text))


def parse_identity(
    node: dict[str, Any], path: str, problems: Problems
) -> tuple[str | None, str | None, str | None]:
    """(tenant_id, client_id, name) of a tenant, each None where it has a problem."""
    tenant_id = problems.string(node.get("tenant_id"), f"{path}.tenant_id")
    if tenant_id and not (is_guid(tenant_id) or is_domain(tenant_id)):
        problems.add(f"{path}.tenant_id", f"{tenant_id!r} is neither a GUID nor a domain name")
    managed = is_managed_identity(node)
    # A managed identity is its own application: client_id is only a rate-limit key then.
    client_id = problems.string(node.get("client_id"), f"{path}.client_id", required=not managed)
    if managed and client_id is None:
        identity = node.get("managed_identity")
        client_id = (
            str(identity.get("client_id"))
            if isinstance(identity, dict) and identity.get("client_id")
            else f"managed-identity:{node.get('tenant_id')}"
        )
    elif client_id and not is_guid(client_id):
        problems.add(f"{path}.client_id", f"{client_id!r} is not a GUID (the application ID)")
    name: str | None = tenant_id
    if "name" in node:
        name = problems.string(node["name"], f"{path}.name")
        if name and (len(name) > MAX_NAME_LENGTH or not name.isprintable()):
            problems.add(f"{path}.name", f"must be at most {MAX_NAME_LENGTH} printable characters")
    return tenant_id, client_id, name


# --------------------------------------------------------------------------- one app, many tenants

SHARED_APP_KEYS = frozenset({"client_id", *CREDENTIAL_KEYS})


@dataclass(frozen=True, slots=True)
class SharedApp:
    """``client_id`` and one credential under ``defaults``: a multi-tenant app consented in
    every tenant, so a tenant entry may be just ``tenant_id`` and ``name``."""

    node: Mapping[str, Any]  # the keys as written under defaults
    credential: Credential | None = None  # parsed once (None: none given, or refused)

    def has_credential(self) -> bool:
        return any(key in self.node for key in CREDENTIAL_KEYS)


def parse_shared_app(
    defaults: dict[str, Any], environ: Mapping[str, str], problems: Problems
) -> SharedApp:
    """The shared app under ``defaults``; its problems are reported once, at ``defaults``."""
    node = {key: value for key, value in defaults.items() if key in SHARED_APP_KEYS}
    if "client_id" in node:
        client_id = problems.string(node["client_id"], "defaults.client_id")
        if client_id and not is_guid(client_id):
            problems.add("defaults.client_id", f"{client_id!r} is not a GUID (the application ID)")
    shared = SharedApp(node)
    if shared.has_credential():
        shared = SharedApp(node, parse_credential(node, "defaults", environ, problems))
    return shared


def has_own_credential(node: Mapping[str, Any]) -> bool:
    """True when a tenant entry names a credential (which then replaces the shared one whole)."""
    return any(node.get(key) not in (None, False) for key in CREDENTIAL_KEYS)


def with_shared_app(node: dict[str, Any], shared: SharedApp) -> tuple[dict[str, Any], bool]:
    """The tenant's keys with the shared app's filled in where the tenant has none of its own
    (the credential as a whole: never a mix of two), and whether any was used."""
    merged = dict(node)
    used = False
    if "client_id" not in node and "client_id" in shared.node:
        merged["client_id"] = shared.node["client_id"]
        used = True
    if not has_own_credential(node) and shared.has_credential():
        merged.update({k: v for k, v in shared.node.items() if k in CREDENTIAL_KEYS})
        used = True
    return merged, used


# --------------------------------------------------------------------------- rotation


def credential_files(credential: Credential) -> tuple[str, ...]:
    """The files a credential was read from (re-read when they change); none for the others."""
    if isinstance(credential, ClientSecretCredential) and credential.secret_file:
        return (credential.secret_file,)
    if isinstance(credential, CertificateCredential):
        return (credential.private_key_file, credential.certificate_file)
    return ()


def reread_credential(credential: Credential) -> Credential:
    """``credential`` as its files hold it now (itself when it has none); checked as at load
    (a key that does not match its certificate is refused): :class:`ConfigError` otherwise."""
    problems = Problems()
    fresh: Credential | None = credential
    if isinstance(credential, ClientSecretCredential) and credential.secret_file:
        fresh = _parse_secret_file(credential.secret_file, "client_secret_file", problems)
    elif isinstance(credential, CertificateCredential):
        node: dict[str, Any] = {
            "private_key_file": credential.private_key_file,
            "certificate_file": credential.certificate_file,
            "send_x5c": credential.send_x5c,
        }
        if credential.passphrase is not None:
            node["passphrase"] = credential.passphrase.reveal()
        fresh = _parse_certificate(node, "certificate", problems)
    problems.raise_if_any()
    assert fresh is not None  # every None above came with a problem
    return fresh
