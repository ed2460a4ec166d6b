"""Hand the secret CKKS context to one silo, readable by that silo only.

Why: the key custodian gives every other silo the secret context through the aggregator,
which must not be able to read or redirect it. Each blob is sealed with the shared recipe
of :mod:`privacy.sealing` (ECIES over P-256), its header binding the federation, the
recipient silo, the key epoch and the preset: a blob replayed to another silo, federation
or epoch fails to open.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec

from privacy.he._certs import load_ca, verified_silo_key
from privacy.he._context import SecretContext, load_secret_context
from privacy.sealing import SealingPurpose, open_sealed, read_header, seal_to
from protos.errors import InvalidInput, NotAuthenticated

MAGIC = b"FBHESEAL\x01"
_PURPOSE = SealingPurpose(
    magic=MAGIC,
    salt=b"fedbiscuit/he/sealed-context/v1",
    header_keys=frozenset(
        {"federation_id", "recipient_id", "key_epoch", "preset", "ephemeral_public_key"}
    ),
    what="sealed CKKS context",
)


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
    header = {
        "federation_id": federation_id,
        "recipient_id": recipient_id,
        "key_epoch": key_epoch,
        "preset": secret_context.preset.name,
    }
    return seal_to(recipient_key, secret_context._secret_bytes(), _PURPOSE, header)


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
    header = read_header(sealed, _PURPOSE)
    expected = (federation_id, silo_id, key_epoch)
    found = (header["federation_id"], header["recipient_id"], header["key_epoch"])
    if found != expected:
        raise NotAuthenticated(
            f"sealed CKKS context is for federation {found[0]!r}, silo {found[1]!r}, key epoch "
            f"{found[2]!r}; this is silo {silo_id!r} of {federation_id!r} at epoch {key_epoch}"
        )
    return load_secret_context(
        open_sealed(own_private_key, sealed, _PURPOSE), str(header["preset"])
    )
