"""Unambiguous byte encodings of what is signed, authenticated or fed to HKDF.

Every field is tagged with its type and prefixed with its length, and every encoding starts
with a purpose label, so no two different tuples of fields (or purposes) encode to the
same bytes. Decided here once; callers never build these byte strings themselves.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

Field = bytes | str | int | Sequence[str]

_PREFIX = b"fedbiscuit/secagg/v1/"


def _field(value: Field) -> bytes:
    if isinstance(value, bytes):
        return b"B" + struct.pack(">I", len(value)) + value
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return b"S" + struct.pack(">I", len(raw)) + raw
    if isinstance(value, bool):  # bool is an int; refuse the ambiguity
        raise TypeError("booleans are not transcript fields")
    if isinstance(value, int):
        if not 0 <= value < 2**64:
            raise ValueError(f"integer transcript field out of range: {value}")
        return b"I" + struct.pack(">Q", value)
    items = list(value)
    return b"L" + struct.pack(">I", len(items)) + b"".join(_field(str(item)) for item in items)


def encode(purpose: str, *fields: Field) -> bytes:
    """The canonical encoding of ``fields`` for ``purpose`` (e.g. ``"pairwise-mask"``)."""
    return _field(_PREFIX.decode() + purpose) + b"".join(_field(f) for f in fields)


def digest(purpose: str, *fields: Field) -> bytes:
    """SHA-256 of :func:`encode` (32 bytes)."""
    return hashlib.sha256(encode(purpose, *fields)).digest()
