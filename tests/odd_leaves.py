"""Silo certificates the federation CA signed but that are not end-entity client certificates
(CA:TRUE, keyCertSign, no digitalSignature): what a careless or hostile CA operator could
issue. Built in code with the CA's own key, so only the profile check can refuse them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from privacy.pki import FederationPaths
from privacy.pki.ca import key_usage, subject_name
from privacy.pki.identity import silo_uri

# name -> (BasicConstraints CA, keyCertSign, digitalSignature)
ODD_PROFILES: dict[str, tuple[bool, bool, bool]] = {
    "ca_true": (True, False, True),
    "key_cert_sign": (False, True, True),
    "no_digital_signature": (False, False, False),
}


def issue_odd_leaf(
    paths: FederationPaths,
    federation_id: str,
    silo_id: str,
    profile: str,
    out_dir: Path,
    now: datetime | None = None,
) -> tuple[Path, Path]:
    """A CA-signed certificate for `silo_id` (valid SAN URI, CN and clientAuth) with one of
    :data:`ODD_PROFILES`; returns (cert path, key path) under `out_dir`."""
    ca, key_cert_sign, digital_signature = ODD_PROFILES[profile]
    ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), None)
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = subject_name(federation_id, silo_id)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            key_usage(
                digital_signature=digital_signature,
                key_agreement=not digital_signature,  # a KeyUsage must name some usage
                key_cert_sign=key_cert_sign or ca,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(silo_uri(federation_id, silo_id))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / f"{silo_id}-{profile}.pem", out_dir / f"{silo_id}-{profile}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path
