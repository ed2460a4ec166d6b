"""Packing and the homomorphic sum: decrypt(sum of encrypted weighted updates) equals the
plaintext weighted sum; wrong context, truncated or tampered ciphertexts are refused."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from privacy.he import (
    CiphertextManifest,
    EncryptedSum,
    EncryptedVector,
    SecretContext,
    decrypt_update,
    encrypt_update,
    generate_secret_context,
    load_chunk,
    load_public_context,
    public_context_bytes,
    sum_encrypted,
)
from protos.errors import InvalidInput

RELATIVE_ERROR = 1e-4


def _weighted_round(
    ctx: SecretContext, n_silos: int, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Encrypt n silos' weighted updates, sum them with the public context only, decrypt."""
    rng = np.random.default_rng(seed)
    updates = [rng.normal(0, 1e-3, size).astype(np.float32) for _ in range(n_silos)]
    weights = rng.dirichlet(np.ones(n_silos))
    public = load_public_context(public_context_bytes(ctx), ctx.preset.name)
    encrypted = [
        encrypt_update(ctx, u, weight=float(w), max_silos=n_silos)
        for u, w in zip(updates, weights, strict=True)
    ]
    decrypted = decrypt_update(ctx, sum_encrypted(public, encrypted))
    expected = sum(float(w) * u.astype(np.float64) for u, w in zip(updates, weights, strict=True))
    return decrypted, expected


@pytest.mark.parametrize(
    ("n_silos", "size"), [(2, 1), (2, 4096), (3, 4097), (5, 10_000), (10, 777), (20, 3000)]
)
def test_decrypted_sum_equals_plaintext_weighted_sum(
    secret_ctx: SecretContext, n_silos: int, size: int
) -> None:
    decrypted, expected = _weighted_round(secret_ctx, n_silos, size, seed=n_silos * size)
    assert decrypted.dtype == np.float32 and decrypted.shape == expected.shape
    error = np.linalg.norm(decrypted - expected)
    assert error <= RELATIVE_ERROR * np.linalg.norm(expected)


def test_decrypted_sum_is_precise_for_a_larger_update(secret_ctx: SecretContext) -> None:
    decrypted, expected = _weighted_round(secret_ctx, 10, 200_000, seed=1)
    assert np.linalg.norm(decrypted - expected) <= RELATIVE_ERROR * np.linalg.norm(expected)


def test_sum_with_the_small_preset_is_precise(small_ctx: SecretContext) -> None:
    decrypted, expected = _weighted_round(small_ctx, 20, 5000, seed=2)
    assert np.linalg.norm(decrypted - expected) <= RELATIVE_ERROR * np.linalg.norm(expected)


def test_manifest_describes_the_chunks_and_round_trips(secret_ctx: SecretContext) -> None:
    values = np.zeros(10_000, dtype=np.float32)
    encrypted = encrypt_update(secret_ctx, values, weight=1.0, max_silos=1)
    manifest = encrypted.manifest
    assert (manifest.count, manifest.slots, manifest.length) == (3, 4096, 10_000)
    assert CiphertextManifest.from_bytes(manifest.to_bytes()) == manifest
    assert CiphertextManifest.from_bytes(manifest.to_bytes()).digest() == manifest.digest()
    assert encrypted.nbytes() / (manifest.count * manifest.slots) < 32.1


def test_chunks_can_be_checked_one_by_one_as_they_stream(secret_ctx: SecretContext) -> None:
    encrypted = encrypt_update(secret_ctx, np.ones(9000, np.float32), weight=0.5, max_silos=2)
    for i, chunk in enumerate(encrypted.ciphertexts):
        assert load_chunk(secret_ctx, encrypted.manifest, i, chunk).size() > 0
    with pytest.raises(InvalidInput, match="chunk 1 of 3 does not match its SHA-256"):
        load_chunk(secret_ctx, encrypted.manifest, 1, encrypted.ciphertexts[0])


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x40
    return bytes(out)


@pytest.mark.parametrize(
    "damage",
    [
        lambda cts: (cts[0][:-100], *cts[1:]),  # truncated chunk
        lambda cts: (_flip(cts[0], len(cts[0]) // 2), *cts[1:]),  # flipped byte
        lambda cts: cts[:-1],  # a chunk missing
        lambda cts: (cts[1], cts[0], *cts[2:]),  # reordered
    ],
    ids=["truncated", "tampered", "missing", "reordered"],
)
def test_damaged_ciphertexts_are_rejected_before_parsing(secret_ctx: SecretContext, damage) -> None:
    public = load_public_context(public_context_bytes(secret_ctx), "ckks-add-8192")
    good = encrypt_update(secret_ctx, np.ones(9000, np.float32), weight=0.5, max_silos=2)
    bad = dataclasses.replace(good, ciphertexts=damage(good.ciphertexts))
    total = EncryptedSum(public, 9000)
    total.add(good)
    with pytest.raises(InvalidInput, match="truncated|tampered"):
        total.add(bad)
    assert total.added == 1  # the sum is untouched by the bad upload
    with pytest.raises(InvalidInput, match="truncated|tampered"):
        decrypt_update(secret_ctx, bad)


def test_a_forged_manifest_over_garbage_is_rejected_at_parse(secret_ctx: SecretContext) -> None:
    good = encrypt_update(secret_ctx, np.ones(100, np.float32), weight=1.0, max_silos=1)
    garbage = b"\x00" * 1000
    manifest = good.manifest.model_copy(
        update={"chunk_sha256": (hashlib.sha256(garbage).hexdigest(),)}
    )
    with pytest.raises(InvalidInput, match="could not be parsed"):
        decrypt_update(secret_ctx, EncryptedVector(manifest, (garbage,)))


def test_ciphertexts_of_another_key_are_refused(secret_ctx: SecretContext) -> None:
    other = generate_secret_context("ckks-add-8192")
    theirs = encrypt_update(other, np.ones(100, np.float32), weight=1.0, max_silos=1)
    public = load_public_context(public_context_bytes(secret_ctx), "ckks-add-8192")
    with pytest.raises(InvalidInput, match="not this federation's"):
        sum_encrypted(public, [theirs])
    with pytest.raises(InvalidInput, match="not this federation's"):
        decrypt_update(secret_ctx, theirs)


def test_contributions_of_another_length_are_refused(secret_ctx: SecretContext) -> None:
    a = encrypt_update(secret_ctx, np.ones(100, np.float32), weight=1.0, max_silos=2)
    b = encrypt_update(secret_ctx, np.ones(101, np.float32), weight=1.0, max_silos=2)
    with pytest.raises(InvalidInput, match="hold 101 values, expected 100"):
        sum_encrypted(secret_ctx, [a, b])


def test_values_that_could_overflow_the_sum_are_refused(secret_ctx: SecretContext) -> None:
    big = np.full(10, secret_ctx.preset.value_bound / 10, dtype=np.float32)
    with pytest.raises(InvalidInput, match="the most that 20 silos can add"):
        encrypt_update(secret_ctx, big, weight=1.0, max_silos=20)
    with pytest.raises(InvalidInput, match="NaN"):
        encrypt_update(secret_ctx, np.array([np.nan], np.float32), weight=1.0, max_silos=1)
    with pytest.raises(InvalidInput, match="float32"):
        encrypt_update(secret_ctx, np.ones(3), weight=1.0, max_silos=1)


def test_encrypted_vectors_round_trip_at_rest_and_refuse_corruption(
    secret_ctx: SecretContext,
) -> None:
    values = np.linspace(-1, 1, 5000, dtype=np.float32)
    encrypted = encrypt_update(secret_ctx, values, weight=0.5, max_silos=4)
    data = encrypted.to_bytes()
    assert EncryptedVector.from_bytes(data) == encrypted
    with pytest.raises(InvalidInput, match="truncated"):
        EncryptedVector.from_bytes(data[:-1])
    damaged = bytearray(data)
    damaged[-10] ^= 1
    with pytest.raises(InvalidInput, match="does not match its manifest"):
        EncryptedVector.from_bytes(bytes(damaged))
