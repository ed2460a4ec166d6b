"""The shared sealing recipe: one purpose's blob never opens as another, nor for another key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from privacy.sealing import SealingPurpose, open_sealed, read_header, seal_to
from protos.errors import InvalidInput, NotAuthenticated

A = SealingPurpose(b"FBTESTAA\x01", b"test/a", frozenset({"to", "ephemeral_public_key"}), "blob a")
B = SealingPurpose(b"FBTESTBB\x01", b"test/b", frozenset({"to", "ephemeral_public_key"}), "blob b")
B_SAME_MAGIC = SealingPurpose(A.magic, b"test/b", A.header_keys, "blob b")


def test_a_blob_opens_for_its_recipient_and_purpose_only() -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    blob = seal_to(key.public_key(), b"secret", A, {"to": "silo-1"})
    assert read_header(blob, A)["to"] == "silo-1"
    assert open_sealed(key, blob, A) == b"secret"
    assert b"secret" not in blob
    with pytest.raises(NotAuthenticated, match="does not open"):
        open_sealed(other, blob, A)
    with pytest.raises(InvalidInput, match="not a blob b"):
        open_sealed(key, blob, B)
    with pytest.raises(NotAuthenticated, match="does not open"):  # same magic, other salt
        open_sealed(key, blob, B_SAME_MAGIC)
    relabelled = blob.replace(b"silo-1", b"silo-2")
    with pytest.raises(NotAuthenticated, match="does not open"):
        open_sealed(key, relabelled, A)


def test_a_header_with_unexpected_fields_is_refused_on_both_sides() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidInput, match="header fields"):
        seal_to(key.public_key(), b"x", A, {"to": "silo-1", "extra": 1})
    wider = SealingPurpose(A.magic, A.salt, A.header_keys | {"extra"}, "blob a")
    with pytest.raises(InvalidInput, match="malformed header"):
        open_sealed(key, seal_to(key.public_key(), b"x", wider, {"to": "s", "extra": 1}), A)
