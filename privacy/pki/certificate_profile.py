"""The shape a silo's identity certificate must have: an end-entity client certificate.

Why: the federation CA signs whatever its operator asks, and the chain check alone accepts a
leaf that is itself a CA (it could mint more "silos") or whose key is meant for certificate
signing rather than for the signatures a silo makes (TLS handshakes, ledger entries, SecAgg
key advertisements, HE commitments). Every place that trusts a silo certificate calls
:func:`check_silo_profile` (through :func:`privacy.pki.identity.silo_id_from_cert`), so the
rule is the same at the aggregator's interceptor, the SecAgg key checks, HE key sealing,
ledger verification and the audit.
"""

from __future__ import annotations

from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from protos.errors import NotAuthenticated

_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


def check_silo_profile(cert: x509.Certificate) -> None:
    """Raise NotAuthenticated unless `cert` is an end-entity certificate for client
    authentication: BasicConstraints CA:FALSE, KeyUsage with digitalSignature and without
    keyCertSign or cRLSign, ExtendedKeyUsage with clientAuth. Each extension must be present
    (fail closed: a certificate that does not say what it is for is not a silo's)."""
    at = f"certificate (serial {cert.serial_number})"
    if _extension(cert, x509.BasicConstraints, at).ca:
        raise NotAuthenticated(f"{at} is a CA certificate (CA:TRUE), not a silo's end-entity one")
    usage = _extension(cert, x509.KeyUsage, at)
    if usage.key_cert_sign or usage.crl_sign:
        raise NotAuthenticated(f"{at} may sign certificates or CRLs; a silo certificate may not")
    if not usage.digital_signature:
        raise NotAuthenticated(f"{at} lacks the digitalSignature key usage a silo needs")
    if ExtendedKeyUsageOID.CLIENT_AUTH not in _extension(cert, x509.ExtendedKeyUsage, at):
        raise NotAuthenticated(f"{at} is not for client authentication (no clientAuth)")


def _extension(cert: x509.Certificate, kind: type[_Ext], at: str) -> _Ext:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        raise NotAuthenticated(f"{at} lacks {kind.__name__}; not a silo certificate") from None
    except ValueError:  # a duplicated or undecodable extension
        raise NotAuthenticated(f"{at} has malformed extensions; not a silo certificate") from None
