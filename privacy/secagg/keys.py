"""Per-round X25519 key pairs, and the certificate checks that bind them to silo identities.

Each silo makes two fresh key pairs per round: one whose agreements seed the pairwise masks
and one whose agreements key the encryption of Shamir shares. The public halves travel in
an advertisement signed with the silo's certificate key (ECDSA P-256, issued by the
federation CA), so an aggregator in the middle cannot substitute keys. Private keys never
leave a :class:`RoundKeys` except the mask key's bytes, which the client Shamir-shares.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from privacy.pki.identity import silo_id_from_cert
from privacy.secagg.errors import SecAggAborted
from protos.errors import FedbiscuitError

RandomBytes = Callable[[int], bytes]
PUBLIC_KEY_BYTES = 32


def _raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def agree(private_key: X25519PrivateKey, peer_public: bytes) -> bytes:
    """X25519 shared secret with a peer's raw public key; refuses low-order points."""
    try:
        return private_key.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:
        raise SecAggAborted("a peer's X25519 public key is malformed or of low order") from None


def private_key_from_bytes(raw: bytes) -> X25519PrivateKey:
    if len(raw) != 32:
        raise SecAggAborted("a rebuilt X25519 private key does not have 32 bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def public_of(raw_private: bytes) -> bytes:
    """The raw public key of a raw private key (to check a rebuilt key against its advert)."""
    return _raw_public(private_key_from_bytes(raw_private))


class RoundKeys:
    """A silo's two X25519 key pairs for one round. Not picklable; repr shows public keys."""

    __slots__ = ("_mask", "_share")

    def __init__(self, random_bytes: RandomBytes = os.urandom) -> None:
        self._mask = X25519PrivateKey.from_private_bytes(random_bytes(32))
        self._share = X25519PrivateKey.from_private_bytes(random_bytes(32))

    @property
    def mask_public(self) -> bytes:
        return _raw_public(self._mask)

    @property
    def share_public(self) -> bytes:
        return _raw_public(self._share)

    def mask_agreement(self, peer_public: bytes) -> bytes:
        return agree(self._mask, peer_public)

    def share_agreement(self, peer_public: bytes) -> bytes:
        return agree(self._share, peer_public)

    def mask_private_bytes_for_sharing(self) -> bytes:
        """The mask private key, only for Shamir sharing to neighbours (SecAgg recovery)."""
        return self._mask.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def __reduce__(self) -> object:
        raise TypeError("round keys hold secrets and cannot be pickled")

    def __repr__(self) -> str:
        return f"RoundKeys(mask_public={self.mask_public.hex()}, share_public=...)"


def verify_silo_certificate(
    certificate_pem: bytes,
    ca_certificate: x509.Certificate,
    federation_id: str,
    silo_id: str,
    now: datetime,
    revoked_serials: Collection[int] = frozenset(),
) -> ec.EllipticCurvePublicKey:
    """The P-256 key of ``silo_id``'s certificate, once it is checked against the CA.

    Checks: signed by the federation CA, valid at ``now``, not revoked, names ``silo_id`` of
    ``federation_id`` (SAN URI and CN, client usage). Raises :class:`SecAggAborted`.
    """
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem)
        cert.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise SecAggAborted(
            f"silo {silo_id!r}: certificate is not issued by the federation CA"
        ) from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SecAggAborted(f"silo {silo_id!r}: certificate is not valid at {now.isoformat()}")
    if cert.serial_number in revoked_serials:
        raise SecAggAborted(f"silo {silo_id!r}: certificate {cert.serial_number} is revoked")
    try:
        named = silo_id_from_cert(cert, federation_id)
    except FedbiscuitError as error:
        raise SecAggAborted(f"silo {silo_id!r}: {error}") from None
    key = cert.public_key()
    if named != silo_id or not (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        raise SecAggAborted(f"silo {silo_id!r}: certificate names {named!r} or is not P-256")
    return key


def sign(signing_key: ec.EllipticCurvePrivateKey, payload: bytes) -> bytes:
    return signing_key.sign(payload, ec.ECDSA(hashes.SHA256()))


def signature_valid(key: ec.EllipticCurvePublicKey, signature: bytes, payload: bytes) -> bool:
    try:
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
