"""Packed CKKS presets: three fixed-point values per slot (about 10.7 bytes per value) whose
homomorphic sums decrypt to the plaintext sum within the stated bound, and refuse, rather
than return wrapped digits, a sum that left the preset's range."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.he import (
    SecretContext,
    decrypt_update,
    encrypt_update,
    generate_secret_context,
    get_preset,
    load_chunk,
    load_public_context,
    public_context_bytes,
    sum_encrypted,
)
from privacy.he._digits import pack, unpack
from protos.errors import InvalidInput

PACKED = "ckks-pack3-8192"


@pytest.fixture(scope="module")
def packed_ctx() -> SecretContext:
    return generate_secret_context(PACKED)


def test_packed_preset_costs_under_12_bytes_per_value() -> None:
    preset = get_preset(PACKED)
    assert preset.values_per_slot == 3 and preset.bytes_per_value() < 12


def test_uniform_weight_sum_of_64_silos_is_within_the_stated_bound(
    packed_ctx: SecretContext,
) -> None:
    silos, size = 64, 13_000  # two ciphertexts, the second one partly filled
    rng = np.random.default_rng(7)
    step = packed_ctx.preset.step
    updates = [rng.uniform(-1, 1, size).astype(np.float32) for _ in range(silos)]
    public = load_public_context(public_context_bytes(packed_ctx), PACKED)
    encrypted = [
        encrypt_update(packed_ctx, u, weight=1 / silos, max_silos=silos, rng=rng) for u in updates
    ]
    assert encrypted[0].nbytes() < 12 * 2 * packed_ctx.preset.values_per_chunk
    decrypted = decrypt_update(packed_ctx, sum_encrypted(public, encrypted))
    expected = sum(u.astype(np.float64) for u in updates) / silos
    error = np.abs(decrypted - expected)
    # Stated bound: under a step per term from rounding, plus a step of CKKS noise.
    assert error.max() <= (silos + 1) * step + 1e-6  # float32 output
    # And the noise model: RMS of n stochastic roundings and the slot noise.
    assert np.sqrt(np.mean(error**2)) <= 1.2 * packed_ctx.preset.sum_error_rms(silos)


def test_spot_check_recomputes_packed_chunks_byte_for_byte(packed_ctx: SecretContext) -> None:
    """Packing changes what a slot means, not the exact, deterministic ciphertext sum."""
    rng = np.random.default_rng(3)
    parts = [
        encrypt_update(
            packed_ctx, rng.uniform(-0.3, 0.3, 20_000).astype(np.float32), weight=1.0, max_silos=3
        )  # fmt: skip
        for _ in range(3)
    ]
    total = sum_encrypted(packed_ctx, parts)
    for index in range(total.manifest.count):
        summed = None
        for part in parts:
            v = load_chunk(packed_ctx, part.manifest, index, part.ciphertexts[index])
            summed = v if summed is None else summed.add_(v)
        assert summed is not None and summed.serialize() == total.ciphertexts[index]


def test_a_sum_that_leaves_the_range_is_refused_not_wrapped(packed_ctx: SecretContext) -> None:
    bound = packed_ctx.preset.value_bound
    near = np.full(5000, 0.6 * bound, dtype=np.float32)
    encrypted = [encrypt_update(packed_ctx, near, weight=1.0, max_silos=1) for _ in range(2)]
    with pytest.raises(InvalidInput, match="range"):
        decrypt_update(packed_ctx, sum_encrypted(packed_ctx, encrypted))


def test_stochastic_rounding_keeps_values_far_below_a_step_on_average(
    packed_ctx: SecretContext,
) -> None:
    """A deterministic grid would turn every one of these into 0; the mean must survive."""
    tiny = np.full(30_000, 0.1 * packed_ctx.preset.step, dtype=np.float32)
    encrypted = encrypt_update(
        packed_ctx, tiny, weight=1.0, max_silos=2, rng=np.random.default_rng(0)
    )
    decrypted = decrypt_update(packed_ctx, encrypted)
    assert set(np.unique(np.round(decrypted / packed_ctx.preset.step))) <= {0.0, 1.0}
    assert abs(decrypted.mean() / (0.1 * packed_ctx.preset.step) - 1) < 0.1


def test_values_over_the_per_silo_share_of_the_range_are_refused(
    packed_ctx: SecretContext,
) -> None:
    values = np.full(10, 0.02, dtype=np.float32)  # > 1/64 of the range
    with pytest.raises(InvalidInput, match="exceeds"):
        encrypt_update(packed_ctx, values, weight=1.0, max_silos=64)


@settings(max_examples=60, deadline=None)
@given(
    terms=st.lists(
        st.lists(st.integers(-(2**12) // 8, 2**12 // 8), min_size=7, max_size=7),
        min_size=1,
        max_size=8,
    )
)
def test_digits_of_summed_packings_unpack_to_the_summed_integers(
    terms: list[list[int]],
) -> None:
    """The digit arithmetic alone (no CKKS): sums of packed grids unpack exactly."""
    step, bits, k = 0.5, 14, 3
    arrays = [np.asarray(t, dtype=np.float64) * step for t in terms]
    rng = np.random.default_rng(0)  # on-grid values: stochastic rounding keeps them exact
    summed = sum(pack(a, step=step, digit_bits=bits, per_slot=k, rng=rng) for a in arrays)
    out = unpack(summed + 0.3, 7, step=step, digit_bits=bits, per_slot=k)  # noise < 1/2
    assert np.array_equal(out, sum(arrays))
