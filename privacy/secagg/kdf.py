"""Every key the protocol derives, via HKDF-SHA256 with a labelled, canonical ``info``.

The ``info`` binds the round (through the round context digest), the ordered pair of silos
and the purpose, so no two uses ever share a key; that is why the PRG and the share cipher
can use a fixed nonce. Callers never pick labels, nonces or lengths.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privacy.secagg import transcript

MASK_KEY_BYTES = 16  # AES-128
SHARE_KEY_BYTES = 32  # AES-256-GCM


def _hkdf(secret: bytes, length: int, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def pairwise_mask_key(shared_secret: bytes, context_digest: bytes, a: str, b: str) -> bytes:
    """The AES key of the mask silos ``a`` and ``b`` share (symmetric in ``a``, ``b``)."""
    low, high = sorted((a, b))
    info = transcript.encode("pairwise-mask", context_digest, low, high)
    return _hkdf(shared_secret, MASK_KEY_BYTES, info)


def self_mask_key(seed: bytes, context_digest: bytes, silo_id: str) -> bytes:
    """The AES key of ``silo_id``'s self-mask, from its secret 32-byte seed."""
    info = transcript.encode("self-mask", context_digest, silo_id)
    return _hkdf(seed, MASK_KEY_BYTES, info)


def share_key(shared_secret: bytes, context_digest: bytes, sender: str, receiver: str) -> bytes:
    """The AEAD key for shares ``sender`` encrypts to ``receiver`` (one per direction)."""
    info = transcript.encode("share-encryption", context_digest, sender, receiver)
    return _hkdf(shared_secret, SHARE_KEY_BYTES, info)
