"""Federation PKI: a CA per federation, short-lived silo and aggregator certificates, a
revocation list the aggregator checks on every call, and mTLS credentials for gRPC.

Layout of a PKI folder: ``ca.pem``, ``ca.key``, ``revoked.json``, ``aggregator.pem/.key``,
``silos/<id>.pem/.key``. Private keys are written 0600 and are never logged or shown.
"""

from privacy.pki.ca import CA_VALID_DAYS, CERT_VALID_DAYS, init_ca, issue_aggregator, issue_silo
from privacy.pki.certificate_profile import check_silo_profile
from privacy.pki.credentials import (
    channel_credentials,
    hosting_credentials,
    server_credentials,
)
from privacy.pki.identity import federation_id_of_ca, silo_id_from_cert, silo_id_from_cert_pem
from privacy.pki.inventory import CertInfo, show
from privacy.pki.layout import FederationPaths, validate_id
from privacy.pki.private_key import load_private_key
from privacy.pki.revocation import RevocationList, RevokedCertificate, revoke

__all__ = [
    "CA_VALID_DAYS",
    "CERT_VALID_DAYS",
    "CertInfo",
    "FederationPaths",
    "RevocationList",
    "RevokedCertificate",
    "channel_credentials",
    "check_silo_profile",
    "federation_id_of_ca",
    "hosting_credentials",
    "init_ca",
    "issue_aggregator",
    "issue_silo",
    "load_private_key",
    "revoke",
    "server_credentials",
    "show",
    "silo_id_from_cert",
    "silo_id_from_cert_pem",
    "validate_id",
]
