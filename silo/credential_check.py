"""The silo's own TLS material, checked before it dials: a refusal should name its cause.

A TLS handshake that fails for a reason on the silo's side (a certificate from another CA,
an expired one, a key from another certificate) reaches gRPC as a dropped connection, which
looks like a network outage. Everything the silo can check about its own files is checked
here first, with the file and what to do in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from privacy.pki import federation_id_of_ca, load_private_key, silo_id_from_cert
from protos.errors import FedbiscuitError, InvalidInput
from silo.config import SiloPki

_REISSUE = "ask the federation operator for a new one (`fedbiscuit pki issue {silo} --force`)"


@dataclass(frozen=True)
class CredentialSummary:
    """What the checked certificate says, for `silo check-config`."""

    federation_id: str
    silo_id: str
    issuer: str
    not_after: datetime


def check_credentials(
    pki: SiloPki, federation_id: str, silo_id: str, now: datetime | None = None
) -> CredentialSummary:
    """Raise InvalidInput naming the file and the fault, else summarise the certificate.

    Checks: the CA file holds certificates of `federation_id`; the silo's certificate is
    issued directly by one of them, current, a client certificate naming `silo_id` in that
    federation; the key is an unencrypted PEM key, not readable by others, and matches it.
    """
    now = now or datetime.now(UTC)
    reissue = _REISSUE.format(silo=silo_id)
    cas = _certificates(pki.ca_cert, "CA certificate")
    federations = {_federation(ca, pki.ca_cert) for ca in cas}
    if federation_id not in federations:
        raise InvalidInput(
            f"{pki.ca_cert}: CA of federation {', '.join(sorted(federations))}, but "
            f"federation_id is {federation_id!r}: use the ca.pem of {federation_id!r}"
        )
    cert = _certificates(pki.cert, "certificate")[0]
    issuer = next((ca for ca in cas if _issued_by(cert, ca)), None)
    if issuer is None:
        namesake = any(ca.subject == cert.issuer for ca in cas)
        by = "another CA of the same name (another `pki init`)" if namesake else "issuer"
        raise InvalidInput(
            f"{pki.cert}: not issued by the federation CA in {pki.ca_cert} ({by} "
            f"{cert.issuer.rfc4514_string()}): the aggregator will refuse it; {reissue}"
        )
    if now < cert.not_valid_before_utc:
        raise InvalidInput(
            f"{pki.cert}: not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
            f"(now {now:%Y-%m-%d %H:%M} UTC): check this host's clock"
        )
    if now > cert.not_valid_after_utc:
        raise InvalidInput(
            f"{pki.cert}: expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; {reissue}"
        )
    try:
        named = silo_id_from_cert(cert, federation_id)
    except FedbiscuitError as exc:
        raise InvalidInput(f"{pki.cert}: {exc}; {reissue}") from None
    if named != silo_id:
        raise InvalidInput(
            f"{pki.cert}: certificate of silo {named!r}, but silo_id is {silo_id!r}: use this "
            "silo's own certificate or fix silo_id"
        )
    _check_key(pki.key, cert, pki.cert)
    return CredentialSummary(
        federation_id=federation_id,
        silo_id=silo_id,
        issuer=issuer.subject.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
    )


def _certificates(path: Path, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise InvalidInput(f"{what} {path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InvalidInput(f"{path}: not a PEM {what}: {exc}") from None
    return certs


def _federation(ca: x509.Certificate, path: Path) -> str:
    try:
        return federation_id_of_ca(ca)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: not a fedbiscuit federation CA ({exc})") from None


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _check_key(path: Path, cert: x509.Certificate, cert_path: Path) -> None:
    try:
        key = load_private_key(path)
    except OSError as exc:
        raise InvalidInput(f"key {path}: cannot read ({exc.strerror or exc})") from None
    if key.public_key() != cert.public_key():
        raise InvalidInput(
            f"{path}: this key does not belong to the certificate {cert_path}: the two files "
            "must come from the same `fedbiscuit pki issue`"
        )
