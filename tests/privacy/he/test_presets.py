"""CKKS presets: 128-bit security by the HE Standard table, capacity and precision checks."""

from __future__ import annotations

import numpy as np
import pytest

from privacy.he import (
    PRESETS,
    CkksPreset,
    check_capacity,
    check_security,
    decrypt_update,
    encrypt_update,
    generate_secret_context,
    get_preset,
)
from protos.errors import InvalidInput


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_128_bit_secure_and_add_only(name: str) -> None:
    preset = get_preset(name)
    check_security(preset)
    assert len(preset.coeff_mod_bit_sizes) == 2  # one data prime + special prime: no rescale
    # 32 bytes per slot; a packed preset shares a slot between its values.
    assert preset.bytes_per_value() * preset.values_per_slot == 32


def test_default_preset_is_the_one_from_issue_5() -> None:
    preset = get_preset("ckks-add-8192")
    assert (preset.poly_modulus_degree, preset.coeff_mod_bit_sizes, preset.scale_bits) == (
        8192,
        (60, 60),
        40,
    )


def test_packing_that_does_not_fit_the_data_prime_is_refused() -> None:
    too_many = CkksPreset("bad-pack", 8192, (60, 60), 16, 3, 15, 1.0)  # 45 + 16 bits > 58
    with pytest.raises(InvalidInput, match="do not fit a 60-bit data prime"):
        check_security(too_many)


def test_modulus_over_the_he_standard_limit_is_refused() -> None:
    too_big = CkksPreset("bad", 4096, (60, 60), 40)  # 120 bits > 109 for N=4096
    with pytest.raises(InvalidInput, match="128-bit security limit for N=4096"):
        check_security(too_big)


def test_unknown_preset_is_refused_with_the_choices() -> None:
    with pytest.raises(InvalidInput, match="ckks-add-8192"):
        get_preset("ckks-mult-8192")


def test_capacity_refuses_sums_that_could_wrap() -> None:
    preset = get_preset("ckks-add-8192")
    with pytest.raises(InvalidInput, match="holds sums up to"):
        check_capacity(preset, max_silos=20, max_abs_value=1e5, min_update_rms=1e-2)


def test_capacity_refuses_updates_too_small_to_resolve() -> None:
    preset = get_preset("ckks-add-8192")
    with pytest.raises(InvalidInput, match="ckks-add-8192-fine"):
        check_capacity(preset, max_silos=20, max_abs_value=1.0, min_update_rms=1e-6)
    check_capacity(
        get_preset("ckks-add-8192-fine"), max_silos=20, max_abs_value=1.0, min_update_rms=1e-6
    )


def test_noise_model_matches_measured_fresh_error() -> None:
    ctx = generate_secret_context("ckks-add-4096")
    values = np.random.default_rng(0).normal(0, 1e-3, 4 * ctx.preset.slots).astype(np.float32)
    decrypted = decrypt_update(ctx, encrypt_update(ctx, values, weight=1.0, max_silos=1))
    measured = float(np.sqrt(np.mean((decrypted.astype(np.float64) - values) ** 2)))
    assert 0.5 < measured / ctx.preset.fresh_error_rms() < 2.0
