"""Seal bytes to one silo's certificate key, readable by that silo only (ECIES over P-256).

Why: several secrets travel silo to silo through the aggregator, which must not read or
redirect them (the CKKS secret context, FedBiscuit loss reports in membership-hiding mode).
One recipe for all: an ephemeral key agreed (ECDH) with the recipient's P-256 key,
HKDF-SHA256 into an AES-256-GCM key and nonce (fresh per blob, so callers never choose
nonces), and the whole header as associated data, so the fields a caller binds (federation,
recipient, epoch, grouping…) cannot be changed without the blob failing to open. Each use
has its own magic and HKDF salt, so a blob made for one purpose never opens as another.

Wire form: ``magic | u32 header length | header (canonical JSON) | AES-GCM ciphertext``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protos.errors import InvalidInput, NotAuthenticated

__all__ = ["SealingPurpose", "open_sealed", "read_header", "seal_to"]

_MAX_HEADER = 4096
_EPHEMERAL = "ephemeral_public_key"
HeaderValue = str | int


@dataclass(frozen=True)
class SealingPurpose:
    """What a kind of blob is: its magic, HKDF salt, header fields and a name for errors."""

    magic: bytes
    salt: bytes
    header_keys: frozenset[str]
    what: str


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _derive(
    shared: bytes, salt: bytes, prefix: bytes, recipient: ec.EllipticCurvePublicKey
) -> tuple[AESGCM, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(), length=44, salt=salt, info=prefix + _point(recipient)
    ).derive(shared)
    return AESGCM(okm[:32]), okm[32:]


def seal_to(
    recipient_key: ec.EllipticCurvePublicKey,
    plaintext: bytes,
    purpose: SealingPurpose,
    header: Mapping[str, HeaderValue],
) -> bytes:
    """Seal ``plaintext`` to ``recipient_key`` (a key the caller has already verified)."""
    if set(header) != purpose.header_keys - {_EPHEMERAL}:
        raise InvalidInput(f"{purpose.what}: header fields {sorted(header)} are not the expected")
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    encoded = json.dumps(
        {**header, _EPHEMERAL: _point(ephemeral.public_key()).hex()},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    prefix = purpose.magic + struct.pack(">I", len(encoded)) + encoded
    shared = ephemeral.exchange(ec.ECDH(), recipient_key)
    aead, nonce = _derive(shared, purpose.salt, prefix, recipient_key)
    return prefix + aead.encrypt(nonce, plaintext, prefix)


def read_header(sealed: bytes, purpose: SealingPurpose) -> dict[str, HeaderValue]:
    """The (not yet authenticated) header of a blob; :class:`InvalidInput` if malformed."""
    return _parse(sealed, purpose)[0]


def _parse(sealed: bytes, purpose: SealingPurpose) -> tuple[dict[str, HeaderValue], int]:
    """The header and the length of the prefix (magic, length, header) it ends."""
    magic = purpose.magic
    if not sealed.startswith(magic) or len(sealed) < len(magic) + 4:
        raise InvalidInput(f"not a {purpose.what} (bad magic or version)")
    (header_len,) = struct.unpack(">I", sealed[len(magic) : len(magic) + 4])
    if header_len > _MAX_HEADER or len(sealed) < len(magic) + 4 + header_len + 16:
        raise InvalidInput(f"{purpose.what} is truncated or its header is malformed")
    try:
        header = json.loads(sealed[len(magic) + 4 : len(magic) + 4 + header_len])
        if not isinstance(header, dict) or set(header) != purpose.header_keys:
            raise ValueError("unexpected header fields")
        ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), bytes.fromhex(header[_EPHEMERAL])
        )
    except (ValueError, TypeError):
        raise InvalidInput(f"{purpose.what} has a malformed header") from None
    return header, len(magic) + 4 + header_len


def open_sealed(
    own_private_key: ec.EllipticCurvePrivateKey, sealed: bytes, purpose: SealingPurpose
) -> bytes:
    """The plaintext of a blob sealed to this key; fails closed.

    Callers check the header's binding fields (:func:`read_header`) against what they
    expect *before* trusting the plaintext; the AEAD guarantees the header is the one that
    was sealed. Sealed to another key or altered in any byte: :class:`NotAuthenticated`.
    """
    if not isinstance(own_private_key, ec.EllipticCurvePrivateKey) or (
        own_private_key.curve.name != "secp256r1"
    ):
        raise InvalidInput(f"opening a {purpose.what} needs the silo's P-256 private key")
    header, prefix_len = _parse(sealed, purpose)
    prefix = sealed[:prefix_len]
    ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), bytes.fromhex(str(header[_EPHEMERAL]))
    )
    own_public = own_private_key.public_key()
    shared = own_private_key.exchange(ec.ECDH(), ephemeral)
    aead, nonce = _derive(shared, purpose.salt, prefix, own_public)
    try:
        return aead.decrypt(nonce, sealed[prefix_len:], prefix)
    except InvalidTag:
        raise NotAuthenticated(
            f"{purpose.what} does not open with this silo's key (sealed to another key, "
            "or altered in transit)"
        ) from None
