"""Silo certificates relayed by the aggregator, checked before their keys are trusted.

Why: the aggregator relays every certificate this package uses (recipients of the secret
context, signers of contributions) and may be compromised. A certificate is only used if
the federation CA signed it, it is valid at ``now``, it is not revoked and it names a silo
of this federation; otherwise the aggregator could slip in its own key.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from privacy.pki.identity import silo_id_from_cert
from protos.errors import InvalidInput, NotAuthenticated


def load_ca(ca_cert_pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError:
        raise InvalidInput("the federation CA certificate could not be parsed") from None


def verified_silo_key(
    cert_pem: bytes,
    *,
    ca_cert: x509.Certificate,
    federation_id: str,
    now: datetime,
    revoked_serials: Collection[int],
) -> tuple[str, ec.EllipticCurvePublicKey]:
    """The silo id and P-256 public key of a CA-issued, current, unrevoked silo certificate."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise NotAuthenticated("a silo certificate could not be parsed") from None
    try:
        cert.verify_directly_issued_by(ca_cert)
    except Exception:  # InvalidSignature, ValueError, TypeError: all mean "not our CA"
        raise NotAuthenticated(
            f"certificate (serial {cert.serial_number}) was not issued by the federation CA"
        ) from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise NotAuthenticated(f"certificate (serial {cert.serial_number}) is not valid at {now}")
    if cert.serial_number in revoked_serials:
        raise NotAuthenticated(f"certificate (serial {cert.serial_number}) is revoked")
    silo_id = silo_id_from_cert(cert, federation_id)
    key = cert.public_key()
    if not (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"):
        raise NotAuthenticated(f"certificate of silo {silo_id!r} does not hold a P-256 key")
    return silo_id, key
