"""What one hosted federation trusts: its CA bundle and one view of its revocation list.

Built once per federation and shared by everything that checks a silo's certificate: the
silo authentication interceptor (every call), the SecAgg+ sessions (silos' signed key
advertisements) and homomorphic mode (signed commitments, certificates relayed to the key
custodian). The revocation list is re-read only when its file changes, so an operator's
`fedbiscuit pki revoke` takes effect everywhere at once without a restart.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from privacy.pki import RevocationList
from protos.errors import InvalidInput


class RevocationView:
    """The revocation list, re-read whenever the file's inode, size or mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._serials: frozenset[int] = frozenset()
        self.revoked_serials()  # load now: a missing or malformed list stops the server's start

    def revoked_serials(self) -> frozenset[int]:
        """The serials revoked now; raises InvalidInput if the list is missing or malformed."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                raise InvalidInput(f"revocation list {self.path} not found") from None
            signature = (st.st_ino, st.st_size, st.st_mtime_ns)
            if signature != self._signature:
                revoked = RevocationList.load(self.path)
                self._serials = frozenset(e.serial for e in revoked.entries)
                self._signature = signature
            return self._serials

    def is_revoked(self, serial: int) -> bool:
        return serial in self.revoked_serials()


@dataclass(frozen=True)
class FederationTrust:
    """What a silo certificate of one federation is checked against: its CA certificates
    (several while the CA is rotated: a trust bundle) and its revocation list."""

    ca_certs: tuple[x509.Certificate, ...]
    ca_pem: bytes
    revocations: RevocationView = field(compare=False)

    @classmethod
    def from_files(cls, ca_cert: Path | str, revocation_list: Path | str) -> FederationTrust:
        try:
            pem = Path(ca_cert).read_bytes()
            cas = tuple(x509.load_pem_x509_certificates(pem))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{ca_cert}: cannot load the CA certificate: {exc}") from None
        return cls(cas, pem, RevocationView(Path(revocation_list)))

    @property
    def revocation_list(self) -> Path:
        return self.revocations.path

    def revoked_serials(self) -> frozenset[int]:
        return self.revocations.revoked_serials()

    def issued(self, cert: x509.Certificate) -> bool:
        """Whether one of this federation's CAs signed `cert`."""
        for ca in self.ca_certs:
            try:
                cert.verify_directly_issued_by(ca)
            except (InvalidSignature, ValueError, TypeError):
                continue
            return True
        return False
