"""The federation's revocation list: serials the aggregator refuses even though they chain.

gRPC Python cannot load CRLs, so the aggregator's interceptor checks the peer serial against
``revoked.json`` ({"version": 1, "revoked": [{serial, silo_id, revoked_at}]}; serials as
decimal strings because JSON numbers lose precision past 2**53). Short certificate lifetimes
are the second line of defence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from privacy.pki.layout import FederationPaths, read_file, validate_id, write_atomic
from protos.errors import InvalidInput

_VERSION = 1


@dataclass(frozen=True)
class RevokedCertificate:
    serial: int
    silo_id: str
    revoked_at: datetime


@dataclass(frozen=True)
class RevocationList:
    """An immutable snapshot of ``revoked.json``; ``with_revoked`` returns a new one."""

    entries: tuple[RevokedCertificate, ...] = ()

    @classmethod
    def load(cls, path: Path | str) -> RevocationList:
        """Read and validate the list; a missing or malformed file raises (fail closed)."""
        path = Path(path)
        try:
            doc = json.loads(path.read_bytes())
            if doc.get("version") != _VERSION or set(doc) != {"version", "revoked"}:
                raise ValueError(f"expected keys version={_VERSION} and revoked")
            entries = []
            for i, item in enumerate(doc["revoked"]):
                if set(item) != {"serial", "silo_id", "revoked_at"}:
                    raise ValueError(f"entry {i} must have exactly serial, silo_id, revoked_at")
                if not (isinstance(item["serial"], str) and item["serial"].isdigit()):
                    raise ValueError(f"entry {i}: serial must be a decimal string")
                entries.append(
                    RevokedCertificate(
                        serial=int(item["serial"]),
                        silo_id=validate_id(item["silo_id"], "silo id"),
                        revoked_at=datetime.fromisoformat(item["revoked_at"]),
                    )
                )
        except FileNotFoundError:
            raise InvalidInput(f"revocation list {path} not found") from None
        except (ValueError, TypeError, AttributeError, InvalidInput) as exc:
            raise InvalidInput(f"revocation list {path} is malformed: {exc}") from None
        return cls(tuple(entries))

    def save(self, path: Path | str) -> None:
        doc = {
            "version": _VERSION,
            "revoked": [
                {
                    "serial": str(e.serial),
                    "silo_id": e.silo_id,
                    "revoked_at": e.revoked_at.isoformat(),
                }
                for e in self.entries
            ],
        }
        write_atomic(Path(path), (json.dumps(doc, indent=2) + "\n").encode(), secret=False)

    def is_revoked(self, serial: int) -> bool:
        return any(e.serial == serial for e in self.entries)

    def with_revoked(self, entry: RevokedCertificate) -> RevocationList:
        if self.is_revoked(entry.serial):
            return self
        return RevocationList((*self.entries, entry))


def revoke_serial(
    root: Path | str, serial: int, silo_id: str, *, now: datetime | None = None
) -> RevokedCertificate:
    """Add one certificate serial to the federation's list (idempotent)."""
    paths = FederationPaths(root)
    current = RevocationList.load(paths.revocation_list)
    for entry in current.entries:
        if entry.serial == serial:
            return entry
    entry = RevokedCertificate(serial, silo_id, now or datetime.now(UTC))
    current.with_revoked(entry).save(paths.revocation_list)
    return entry


def revoke(root: Path | str, silo_id: str, *, now: datetime | None = None) -> RevokedCertificate:
    """Revoke the silo's current certificate; the aggregator refuses it from the next call."""
    paths = FederationPaths(root)
    pem = read_file(paths.silo_cert(silo_id), f"certificate of silo {silo_id!r}")
    cert = x509.load_pem_x509_certificate(pem)
    return revoke_serial(root, cert.serial_number, silo_id, now=now)
