"""The simulator's TLS material (a throw-away CA and a loopback server certificate) and the
certificate checks of client assertions, as Entra makes them."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from entra_simulator.directory import SimTenant


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """A throw-away CA and a server certificate for 127.0.0.1, ::1 and localhost."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


_VALIDITY = dt.timedelta(days=30)


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> Any:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def make_tls_material() -> TlsMaterial:
    """Generate a CA and a loopback server certificate signed by it."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "entra simulator test CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), ca_name, key)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return TlsMaterial(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _assertion_certificate(header: dict[str, Any], tenant: SimTenant) -> x509.Certificate | str:
    """The certificate an assertion is signed with, or why it is not acceptable.

    Either the app registration holds the certificate (matched by its SHA-256 or SHA-1
    thumbprint), or it trusts an issuer and the assertion carries the chain (x5c) for
    subject name + issuer authentication.
    """
    if tenant.certificate_pem is not None:
        cert = x509.load_pem_x509_certificate(tenant.certificate_pem.encode())
        sha256 = _b64url(cert.fingerprint(hashes.SHA256()))
        sha1 = _b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - what x5t is
        # MSAL keeps the base64 padding.
        if str(header.get("x5t#S256", "")).rstrip("=") == sha256:
            return cert
        if str(header.get("x5t", "")).rstrip("=") == sha1:
            return cert
        return "AADSTS700027: The certificate with thumbprint was not registered on the app."
    assert tenant.trusted_issuer_pem is not None
    chain = header.get("x5c")
    if not isinstance(chain, list) or not chain:
        return "AADSTS700027: Subject name + issuer auth needs the certificate chain (x5c)."
    try:
        leaf = x509.load_der_x509_certificate(base64.b64decode(chain[0]))
        issuer = x509.load_pem_x509_certificate(tenant.trusted_issuer_pem.encode())
        leaf.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return "AADSTS700027: The certificate is not issued by the trusted issuer."
    return leaf


def check_certificate_assertion(assertion: str, tenant: SimTenant, token_url: str) -> str | None:
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        return "AADSTS50027: JWT token is invalid or malformed."
    cert = _assertion_certificate(header, tenant)
    if isinstance(cert, str):
        return cert
    try:
        jwt.decode(
            assertion,
            cert.public_key(),  # type: ignore[arg-type]
            algorithms=["PS256", "RS256", "ES256"],
            audience=token_url,
            issuer=tenant.client_id,
        )
    except jwt.PyJWTError as err:
        return f"AADSTS700027: Client assertion failed signature validation ({type(err).__name__})."
    return None
