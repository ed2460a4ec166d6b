"""The federation CA: creates itself, issues silo and aggregator certificates (ECDSA P-256).

Lifetimes are short by default (certificates 30 days, CA 2 years) because gRPC Python cannot
check CRLs during the handshake; expiry bounds how long a leaked key is useful.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from privacy.pki.identity import (
    aggregator_uri,
    federation_id_of_ca,
    federation_uri,
    silo_uri,
)
from privacy.pki.layout import (
    FederationPaths,
    read_file,
    refuse_existing,
    validate_id,
    write_atomic,
)
from privacy.pki.revocation import RevocationList, revoke_serial
from protos.errors import InvalidInput

CA_VALID_DAYS = 730
CERT_VALID_DAYS = 30
# Tolerate small clock differences between the CA machine and the peers.
_BACKDATE = timedelta(minutes=5)
_DNS_PATTERN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*$")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _check_days(valid_days: int) -> None:
    if not 1 <= valid_days <= 3650:
        raise InvalidInput(f"valid_days must be between 1 and 3650, got {valid_days}")


def subject_name(federation_id: str, common_name: str) -> x509.Name:
    """The subject every federation certificate carries: O = federation, CN = holder."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation_id),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def key_usage(
    *,
    digital_signature: bool = False,
    key_agreement: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """A KeyUsage granting only the named usages (the rest are always off here)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def init_ca(
    root: Path | str,
    federation_id: str,
    valid_days: int = CA_VALID_DAYS,
    *,
    now: datetime | None = None,
) -> FederationPaths:
    """Create the federation CA and an empty revocation list in ``root``; never overwrites."""
    paths = FederationPaths(root)
    validate_id(federation_id, "federation id")
    _check_days(valid_days)
    refuse_existing(
        paths.ca_key, paths.ca_cert, paths.revocation_list, hint="this folder already has a CA"
    )
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = subject_name(federation_id, f"fedbiscuit CA {federation_id}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            key_usage(key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(federation_uri(federation_id))]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_atomic(paths.ca_key, _key_pem(key), secret=True)
    write_atomic(paths.ca_cert, cert.public_bytes(serialization.Encoding.PEM), secret=False)
    RevocationList().save(paths.revocation_list)
    return paths


def _issue(
    paths: FederationPaths,
    common_name: str,
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    valid_days: int,
    now: datetime | None,
) -> tuple[bytes, bytes]:
    """Sign a fresh leaf certificate with the CA; returns (cert PEM, key PEM)."""
    _check_days(valid_days)
    ca_cert = x509.load_pem_x509_certificate(read_file(paths.ca_cert, "CA certificate"))
    ca_key = serialization.load_pem_private_key(read_file(paths.ca_key, "CA key"), None)
    now = now or datetime.now(UTC)
    not_after = min(now + timedelta(days=valid_days), ca_cert.not_valid_after_utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = subject_name(federation_id_of_ca(ca_cert), common_name)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage(digital_signature=True),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _replace_leaf(
    paths: FederationPaths,
    cert_path: Path,
    key_path: Path,
    issued: tuple[bytes, bytes],
    silo_id: str | None,
) -> None:
    """Write a new leaf; a replaced silo certificate is revoked first so one silo has one cert."""
    if silo_id is not None and cert_path.exists():
        old = x509.load_pem_x509_certificate(cert_path.read_bytes())
        revoke_serial(paths.root, old.serial_number, silo_id)
    cert_pem, key_pem = issued
    write_atomic(key_path, key_pem, secret=True)
    write_atomic(cert_path, cert_pem, secret=False)


def issue_silo(
    root: Path | str,
    silo_id: str,
    valid_days: int = CERT_VALID_DAYS,
    *,
    force: bool = False,
    now: datetime | None = None,
) -> tuple[Path, Path]:
    """Issue a silo's client certificate and key; ``force`` replaces (and revokes) the old one."""
    paths = FederationPaths(root)
    cert_path, key_path = paths.silo_cert(silo_id), paths.silo_key(silo_id)
    if not force:
        refuse_existing(
            cert_path,
            key_path,
            hint=f"re-issue silo {silo_id!r} with --force (force=True); that revokes the old one",
        )
    federation = federation_id_of_ca(
        x509.load_pem_x509_certificate(read_file(paths.ca_cert, "CA certificate"))
    )
    issued = _issue(
        paths,
        silo_id,
        [x509.UniformResourceIdentifier(silo_uri(federation, silo_id))],
        ExtendedKeyUsageOID.CLIENT_AUTH,
        valid_days,
        now,
    )
    _replace_leaf(paths, cert_path, key_path, issued, silo_id)
    return cert_path, key_path


def issue_aggregator(
    root: Path | str,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    valid_days: int = CERT_VALID_DAYS,
    *,
    force: bool = False,
    now: datetime | None = None,
) -> tuple[Path, Path]:
    """Issue the aggregator's server certificate; silos check its DNS/IP SANs when dialling."""
    paths = FederationPaths(root)
    if not dns_names and not ip_addresses:
        raise InvalidInput("the aggregator certificate needs at least one DNS name or IP address")
    for name in dns_names:
        if not _DNS_PATTERN.fullmatch(name):
            raise InvalidInput(f"invalid DNS name {name!r} for the aggregator certificate")
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    for ip in ip_addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise InvalidInput(
                f"invalid IP address {ip!r} for the aggregator certificate"
            ) from None
    if not force:
        refuse_existing(
            paths.aggregator_cert,
            paths.aggregator_key,
            hint="re-issue it with --force (force=True)",
        )
    federation = federation_id_of_ca(
        x509.load_pem_x509_certificate(read_file(paths.ca_cert, "CA certificate"))
    )
    sans.append(x509.UniformResourceIdentifier(aggregator_uri(federation)))
    issued = _issue(paths, "aggregator", sans, ExtendedKeyUsageOID.SERVER_AUTH, valid_days, now)
    _replace_leaf(paths, paths.aggregator_cert, paths.aggregator_key, issued, None)
    return paths.aggregator_cert, paths.aggregator_key
