"""Where a federation's PKI files live, which ids are allowed, and how files are written.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``)
so a crash never leaves half a key or half a revocation list. Private keys are created with
mode 0600 from the first byte (``O_CREAT | O_EXCL``), never chmod-ed afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from protos.errors import FailedPrecondition, InvalidInput

_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def validate_id(value: str, what: str) -> str:
    """Return ``value`` if it is a safe id (it ends up in file names and URIs), else raise."""
    if not _ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"invalid {what} {value!r}: use 1-63 characters a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class FederationPaths:
    """The layout of one federation's PKI folder (``fedbiscuit pki --dir``)."""

    root: Path

    def __init__(self, root: Path | str) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def revocation_list(self) -> Path:
        return self.root / "revoked.json"

    @property
    def aggregator_cert(self) -> Path:
        return self.root / "aggregator.pem"

    @property
    def aggregator_key(self) -> Path:
        return self.root / "aggregator.key"

    @property
    def silos_dir(self) -> Path:
        return self.root / "silos"

    def silo_cert(self, silo_id: str) -> Path:
        return self.silos_dir / f"{validate_id(silo_id, 'silo id')}.pem"

    def silo_key(self, silo_id: str) -> Path:
        return self.silos_dir / f"{validate_id(silo_id, 'silo id')}.key"


def refuse_existing(*paths: Path, hint: str) -> None:
    """Fail before writing anything if one of ``paths`` exists (keys are never clobbered)."""
    for path in paths:
        if path.exists():
            raise FailedPrecondition(f"{path} already exists; {hint}")


def write_atomic(path: Path, data: bytes, *, secret: bool) -> None:
    """Write ``data`` to ``path`` all-or-nothing; secret files are 0600 from creation."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    mode = 0o600 if secret else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_file(path: Path, what: str) -> bytes:
    """Read a PKI file, turning a missing file into an error that says what to run."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FailedPrecondition(
            f"{what} {path} not found; run `fedbiscuit pki init` / `issue` first"
        ) from None
