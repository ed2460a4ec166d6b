"""Authenticated encryption of one silo's Shamir shares to one neighbour (AES-256-GCM).

The key comes from X25519 of the two silos' share keys through HKDF with the sender and
receiver in order, so each key encrypts exactly one message and the nonce can be fixed.
The associated data binds the round context, the roster digest, the sender and the
receiver: a ciphertext replayed from another round, re-addressed, or made by a silo that
saw a different roster fails to open.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privacy.secagg import kdf, transcript
from privacy.secagg.errors import SecAggAborted
from privacy.secagg.shamir import SHARE_BYTES

_NONCE = bytes(12)
CIPHERTEXT_BYTES = 2 * SHARE_BYTES + 16


def _associated_data(context_digest: bytes, roster: bytes, sender: str, receiver: str) -> bytes:
    return transcript.encode("share-ad", context_digest, roster, sender, receiver)


def seal_shares(
    shared_secret: bytes,
    context_digest: bytes,
    roster: bytes,
    sender: str,
    receiver: str,
    self_mask_share: bytes,
    mask_key_share: bytes,
) -> bytes:
    """Encrypt ``sender``'s two shares for ``receiver`` (66 bytes of shares + 16 of tag)."""
    if len(self_mask_share) != SHARE_BYTES or len(mask_key_share) != SHARE_BYTES:
        raise ValueError("shares must be SHARE_BYTES long")
    key = kdf.share_key(shared_secret, context_digest, sender, receiver)
    aad = _associated_data(context_digest, roster, sender, receiver)
    return AESGCM(key).encrypt(_NONCE, self_mask_share + mask_key_share, aad)


def open_shares(
    shared_secret: bytes,
    context_digest: bytes,
    roster: bytes,
    sender: str,
    receiver: str,
    ciphertext: bytes,
) -> tuple[bytes, bytes]:
    """(self-mask share, mask-key share) from ``sender``; aborts if anything was altered."""
    key = kdf.share_key(shared_secret, context_digest, sender, receiver)
    aad = _associated_data(context_digest, roster, sender, receiver)
    try:
        plain = AESGCM(key).decrypt(_NONCE, ciphertext, aad)
    except InvalidTag:
        raise SecAggAborted(
            f"shares from silo {sender!r} do not authenticate (tampered, replayed or made "
            "for a different roster)"
        ) from None
    if len(plain) != 2 * SHARE_BYTES:
        raise SecAggAborted(f"shares from silo {sender!r} have the wrong length")
    return plain[:SHARE_BYTES], plain[SHARE_BYTES:]
