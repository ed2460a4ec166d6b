"""Keys: the public context holds no secret key; a sealed context opens for its silo only."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import tenseal as ts
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from privacy.he import (
    SecretContext,
    decrypt_update,
    encrypt_update,
    load_public_context,
    open_sealed_context,
    public_context_bytes,
    seal_secret_context_for,
)
from privacy.pki import FederationPaths, init_ca, issue_silo
from protos.errors import InvalidInput, NotAuthenticated
from tests.privacy.he.conftest import FEDERATION, NOW


def _key(pki: FederationPaths, silo: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pki.silo_key(silo).read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _seal(pki: FederationPaths, ctx: SecretContext, silo: str, **overrides) -> bytes:
    args = {
        "ca_cert_pem": pki.ca_cert.read_bytes(),
        "federation_id": FEDERATION,
        "key_epoch": 3,
        "now": NOW,
    }
    return seal_secret_context_for(pki.silo_cert(silo).read_bytes(), ctx, **{**args, **overrides})


def _open(
    pki: FederationPaths,
    holder: str,
    sealed: bytes,
    *,
    silo_id: str | None = None,
    key_epoch: int = 3,
) -> SecretContext:
    """Open `sealed` with `holder`'s key, claiming to be `silo_id` (the holder by default)."""
    return open_sealed_context(
        _key(pki, holder),
        sealed,
        federation_id=FEDERATION,
        silo_id=silo_id or holder,
        key_epoch=key_epoch,
    )


def test_public_context_holds_no_secret_key_and_cannot_decrypt(
    secret_ctx: SecretContext,
) -> None:
    data = public_context_bytes(secret_ctx)
    raw = ts.context_from(data)
    assert not raw.is_private() and not raw.has_secret_key()
    ciphertext = encrypt_update(
        secret_ctx, np.ones(10, dtype=np.float32), weight=1.0, max_silos=1
    ).ciphertexts[0]
    with pytest.raises(ValueError, match="secret"):
        ts.ckks_vector_from(raw, ciphertext).decrypt()
    assert load_public_context(data, "ckks-add-8192").context_id == secret_ctx.context_id


def test_a_context_with_its_secret_key_is_refused_as_public(secret_ctx: SecretContext) -> None:
    leaked = secret_ctx._tenseal().serialize(save_secret_key=True)
    with pytest.raises(InvalidInput, match="holds a secret key"):
        load_public_context(leaked, "ckks-add-8192")


def test_a_public_context_of_another_preset_is_refused(secret_ctx: SecretContext) -> None:
    with pytest.raises(InvalidInput, match="does not match preset"):
        load_public_context(public_context_bytes(secret_ctx), "ckks-add-4096")


def test_secret_context_cannot_be_pickled_or_printed(secret_ctx: SecretContext) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret_ctx)
    assert "preset='ckks-add-8192'" in repr(secret_ctx)
    assert len(repr(secret_ctx)) < 100


def test_sealed_context_opens_for_its_recipient_and_decrypts(
    pki: FederationPaths, small_ctx: SecretContext
) -> None:
    sealed = _seal(pki, small_ctx, "silo-b")
    opened = _open(pki, "silo-b", sealed)
    assert opened.context_id == small_ctx.context_id
    values = np.linspace(-1, 1, 100, dtype=np.float32)
    encrypted = encrypt_update(small_ctx, values, weight=1.0, max_silos=1)
    np.testing.assert_allclose(decrypt_update(opened, encrypted), values, atol=1e-6)


def test_wrong_recipient_cannot_open_a_sealed_context(
    pki: FederationPaths, small_ctx: SecretContext
) -> None:
    sealed = _seal(pki, small_ctx, "silo-b")
    with pytest.raises(NotAuthenticated, match="silo 'silo-b'"):
        _open(pki, "silo-c", sealed)
    # Even claiming to be silo-b, silo-c's key does not open it.
    with pytest.raises(NotAuthenticated, match="does not open"):
        _open(pki, "silo-c", sealed, silo_id="silo-b")


def test_sealed_context_is_bound_to_its_key_epoch(
    pki: FederationPaths, small_ctx: SecretContext
) -> None:
    sealed = _seal(pki, small_ctx, "silo-b")
    with pytest.raises(NotAuthenticated, match="key epoch 3"):
        _open(pki, "silo-b", sealed, key_epoch=4)


@pytest.mark.parametrize("where", ["header", "body", "tag"])
def test_tampered_sealed_context_is_rejected(
    pki: FederationPaths, small_ctx: SecretContext, where: str
) -> None:
    sealed = bytearray(_seal(pki, small_ctx, "silo-b"))
    if where == "header":  # rewrite the epoch the header claims: breaks the AEAD's AD
        sealed = bytearray(bytes(sealed).replace(b'"key_epoch":3', b'"key_epoch":4'))
        epoch = 4
    else:
        sealed[{"body": len(sealed) // 2, "tag": -1}[where]] ^= 0x01
        epoch = 3
    with pytest.raises(NotAuthenticated, match="does not open"):
        _open(pki, "silo-b", bytes(sealed), key_epoch=epoch)


def test_truncated_sealed_context_is_rejected(
    pki: FederationPaths, small_ctx: SecretContext
) -> None:
    sealed = _seal(pki, small_ctx, "silo-b")
    with pytest.raises((InvalidInput, NotAuthenticated)):
        _open(pki, "silo-b", sealed[:-20])
    with pytest.raises(InvalidInput, match="truncated"):
        _open(pki, "silo-b", sealed[:30])


def test_revoked_or_foreign_certificate_gets_no_key(
    pki: FederationPaths, small_ctx: SecretContext, tmp_path: Path
) -> None:
    serial = x509.load_pem_x509_certificate(pki.silo_cert("silo-c").read_bytes()).serial_number
    with pytest.raises(NotAuthenticated, match="revoked"):
        _seal(pki, small_ctx, "silo-c", revoked_serials={serial})
    other = init_ca(tmp_path / "other", FEDERATION, now=NOW)
    issue_silo(other.root, "silo-b", now=NOW)
    with pytest.raises(NotAuthenticated, match="not issued by the federation CA"):
        _seal(other, small_ctx, "silo-b", ca_cert_pem=pki.ca_cert.read_bytes())
