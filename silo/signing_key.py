"""The silo's certificate key, loaded for signing (SecAgg+ keys, HE commitments) and opening
what was sealed to it (HE secret contexts). It never leaves the silo."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protos.errors import InvalidInput
from silo.config import SiloConfig


def signing_key(config: SiloConfig) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(config.pki.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput(f"{config.pki.key}: the silo key is not an ECDSA key")
    return key
