"""Who a certificate names: the federation of a CA and the silo id of a client certificate.

Identity lives in SAN URIs (``fedbiscuit://<federation>`` on the CA,
``fedbiscuit://<federation>/silo/<id>`` on a silo), which the federation CA alone signs.
These functions only read names; the TLS handshake has already checked the chain.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from privacy.pki.certificate_profile import check_silo_profile
from privacy.pki.layout import validate_id
from protos.errors import InvalidInput, NotAuthenticated

SCHEME = "fedbiscuit://"


def federation_uri(federation_id: str) -> str:
    return f"{SCHEME}{validate_id(federation_id, 'federation id')}"


def silo_uri(federation_id: str, silo_id: str) -> str:
    return f"{federation_uri(federation_id)}/silo/{validate_id(silo_id, 'silo id')}"


def aggregator_uri(federation_id: str) -> str:
    return f"{federation_uri(federation_id)}/aggregator"


def san_uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return san.value.get_values_for_type(x509.UniformResourceIdentifier)


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def federation_id_of_ca(ca_cert: x509.Certificate) -> str:
    """The federation a CA certificate belongs to (its one bare ``fedbiscuit://`` URI)."""
    ids = [
        u[len(SCHEME) :]
        for u in san_uris(ca_cert)
        if u.startswith(SCHEME) and "/" not in u[len(SCHEME) :]
    ]
    if len(ids) != 1:
        raise InvalidInput("the CA certificate does not name exactly one federation (SAN URI)")
    return validate_id(ids[0], "federation id")


def silo_id_from_cert(cert: x509.Certificate, federation_id: str) -> str:
    """The silo id a client certificate proves for ``federation_id``; fails closed.

    Requires exactly one silo URI, of this federation, matching the subject CN, on an
    end-entity certificate for client authentication (:func:`check_silo_profile`).
    """
    prefix = f"{federation_uri(federation_id)}/silo/"
    ids = [u[len(prefix) :] for u in san_uris(cert) if u.startswith(prefix)]
    if len(ids) != 1:
        raise NotAuthenticated(
            f"certificate (serial {cert.serial_number}) names no silo of federation "
            f"{federation_id!r}"
        )
    silo_id = ids[0]
    try:
        validate_id(silo_id, "silo id")
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (InvalidInput, x509.ExtensionNotFound):
        raise NotAuthenticated(
            f"certificate (serial {cert.serial_number}) is not a valid silo certificate"
        ) from None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages or common_name(cert) != silo_id:
        raise NotAuthenticated(
            f"certificate (serial {cert.serial_number}) is not a client certificate for "
            f"silo {silo_id!r}"
        )
    check_silo_profile(cert)
    return silo_id


def silo_id_from_cert_pem(pem: bytes, federation_id: str) -> str:
    """Like :func:`silo_id_from_cert` for PEM bytes (as gRPC's ``x509_pem_cert`` gives them)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise NotAuthenticated("the peer certificate could not be parsed") from None
    return silo_id_from_cert(cert, federation_id)
