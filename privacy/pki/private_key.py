"""Reading a private key file the way both ends check it before they serve or dial."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from protos.errors import InvalidInput


def load_private_key(path: Path) -> PrivateKeyTypes:
    """The unencrypted PEM key at `path`, refused (InvalidInput) if it is not one or is
    readable by others. An unreadable file raises its OSError for the caller to word."""
    mode = path.stat().st_mode
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(
            f"{path}: the private key is readable by others (mode {stat.S_IMODE(mode):o}); "
            "chmod 600 it"
        )
    return key
