"""Hand the secret CKKS context to one silo, readable by that silo only.

Why: the key custodian gives every other silo the secret context through the aggregator,
which must not be able to read or redirect it. Each sealed blob is ECIES over P-256: an
ephemeral key agreed (ECDH) with the recipient certificate's key, HKDF-SHA256 into an
AES-256-GCM key and nonce (fresh per blob, so callers never choose nonces), and associated
data binding the federation, the recipient silo, the key epoch and the preset: a blob
replayed to another silo, federation or epoch fails to open.

Wire form: ``MAGIC | u32 header length | header (canonical JSON) | AES-GCM ciphertext``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privacy.he._certs import load_ca, verified_silo_key
from privacy.he._context import SecretContext, load_secret_context
from protos.errors import InvalidInput, NotAuthenticated

MAGIC = b"FBHESEAL\x01"
_SALT = b"fedbiscuit/he/sealed-context/v1"
_MAX_HEADER = 4096
_HEADER_KEYS = {"federation_id", "recipient_id", "key_epoch", "preset", "ephemeral_public_key"}


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _derive(
    shared: bytes, prefix: bytes, recipient: ec.EllipticCurvePublicKey
) -> tuple[AESGCM, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(), length=44, salt=_SALT, info=prefix + _point(recipient)
    ).derive(shared)
    return AESGCM(okm[:32]), okm[32:]


def seal_secret_context_for(
    recipient_cert_pem: bytes,
    secret_context: SecretContext,
    *,
    ca_cert_pem: bytes,
    federation_id: str,
    key_epoch: int,
    now: datetime,
    revoked_serials: Collection[int] = (),
) -> bytes:
    """Seal ``secret_context`` to the silo named by ``recipient_cert_pem``.

    The certificate must chain to the federation CA, be valid at ``now`` and not revoked
    (a revoked silo gets no key). The custodian may seal to its own certificate to store
    its key at rest.
    """
    if key_epoch < 0:
        raise InvalidInput(f"key_epoch must be >= 0, got {key_epoch}")
    recipient_id, recipient_key = verified_silo_key(
        recipient_cert_pem,
        ca_cert=load_ca(ca_cert_pem),
        federation_id=federation_id,
        now=now,
        revoked_serials=revoked_serials,
    )
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    header = json.dumps(
        {
            "federation_id": federation_id,
            "recipient_id": recipient_id,
            "key_epoch": key_epoch,
            "preset": secret_context.preset.name,
            "ephemeral_public_key": _point(ephemeral.public_key()).hex(),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    prefix = MAGIC + struct.pack(">I", len(header)) + header
    aead, nonce = _derive(ephemeral.exchange(ec.ECDH(), recipient_key), prefix, recipient_key)
    return prefix + aead.encrypt(nonce, secret_context._secret_bytes(), prefix)


def open_sealed_context(
    own_private_key: ec.EllipticCurvePrivateKey,
    sealed: bytes,
    *,
    federation_id: str,
    silo_id: str,
    key_epoch: int,
) -> SecretContext:
    """Open a blob sealed to this silo for ``federation_id`` and ``key_epoch``; fails closed.

    A blob for another silo, federation or epoch, sealed to another key, or altered in any
    byte raises :class:`NotAuthenticated` (or :class:`InvalidInput` if it is not a blob).
    """
    if not isinstance(own_private_key, ec.EllipticCurvePrivateKey) or (
        own_private_key.curve.name != "secp256r1"
    ):
        raise InvalidInput("open_sealed_context needs the silo's P-256 private key")
    if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + 4:
        raise InvalidInput("not a sealed CKKS context (bad magic or version)")
    (header_len,) = struct.unpack(">I", sealed[len(MAGIC) : len(MAGIC) + 4])
    if header_len > _MAX_HEADER or len(sealed) < len(MAGIC) + 4 + header_len + 16:
        raise InvalidInput("sealed CKKS context is truncated or its header is malformed")
    prefix = sealed[: len(MAGIC) + 4 + header_len]
    try:
        header = json.loads(prefix[len(MAGIC) + 4 :])
        if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
            raise ValueError("unexpected header fields")
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), bytes.fromhex(header["ephemeral_public_key"])
        )
    except (ValueError, TypeError):
        raise InvalidInput("sealed CKKS context has a malformed header") from None
    expected = (federation_id, silo_id, key_epoch)
    found = (header["federation_id"], header["recipient_id"], header["key_epoch"])
    if found != expected:
        raise NotAuthenticated(
            f"sealed CKKS context is for federation {found[0]!r}, silo {found[1]!r}, key epoch "
            f"{found[2]!r}; this is silo {silo_id!r} of {federation_id!r} at epoch {key_epoch}"
        )
    own_public = own_private_key.public_key()
    aead, nonce = _derive(own_private_key.exchange(ec.ECDH(), ephemeral), prefix, own_public)
    try:
        secret = aead.decrypt(nonce, sealed[len(prefix) :], prefix)
    except InvalidTag:
        raise NotAuthenticated(
            "sealed CKKS context does not open with this silo's key (sealed to another key, "
            "or altered in transit)"
        ) from None
    return load_secret_context(secret, header["preset"])
