"""What a PKI folder holds, for `fedbiscuit pki show`: public data only, never key material."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from privacy.pki.layout import FederationPaths
from privacy.pki.revocation import RevocationList
from protos.errors import FailedPrecondition


@dataclass(frozen=True)
class CertInfo:
    subject: str
    role: str  # "ca", "aggregator" or "silo"
    serial: int
    not_after: datetime
    revoked: bool
    path: Path


def show(root: Path | str) -> list[CertInfo]:
    """The CA, aggregator and silo certificates in ``root`` (silos sorted by id)."""
    paths = FederationPaths(root)
    if not paths.ca_cert.exists():
        raise FailedPrecondition(f"no CA in {paths.root}; run `fedbiscuit pki init` first")
    revoked = RevocationList.load(paths.revocation_list)
    found = [("ca", paths.ca_cert), ("aggregator", paths.aggregator_cert)]
    found += [("silo", p) for p in sorted(paths.silos_dir.glob("*.pem"))]
    infos = []
    for role, path in found:
        if not path.exists():
            continue
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        infos.append(
            CertInfo(
                subject=cert.subject.rfc4514_string(),
                role=role,
                serial=cert.serial_number,
                not_after=cert.not_valid_after_utc,
                revoked=revoked.is_revoked(cert.serial_number),
                path=path,
            )
        )
    return infos
