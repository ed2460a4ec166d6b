"""Named CKKS parameter sets for add-only aggregation, and the checks that admit them.

Why presets: a plan names one (``"ckks-add-8192"``), never raw moduli, so nobody can pick an
insecure or imprecise combination by accident (like Tink's key templates). The list is
add-only: a preset, once published, never changes meaning; new ones get new names.

Every preset keeps a single data prime plus SEAL's special prime: aggregation only adds
ciphertexts (the weights are applied on the silo before encryption), so no rescaling level
is needed and a ciphertext costs 2 * N * 8 bytes for N / 2 values, i.e. 32 bytes/value.

Security: the total coefficient modulus bit count (data + special prime) must not exceed
the maximum of the Homomorphic Encryption Standard (Albrecht et al., "Homomorphic
Encryption Security Standard", HomomorphicEncryption.org, Nov 2018, Table 1: uniform
ternary secret, error sigma ~3.2, classical 128-bit security), the same table SEAL ships
as ``SEAL_HE_STD_PARMS_128_TC`` in ``native/src/seal/util/hestdparms.h``.

Precision model (checked against measurement in the tests): SEAL encrypts at the key level
and divides by the special prime p, so a fresh ciphertext's noise is dominated by that
rounding, r0 + r1 * s with r uniform in [-1/2, 1/2] and s ternary: per-coefficient variance
(1 + 2N/3) / 12, plus the encoding rounding (1/12) and the key-level noise shrunk by p.
Decoding maps N coefficients to N/2 slots, so a slot's error RMS is
sqrt(N/2 * coefficient variance) / scale ~= N / (6 * scale). Sums of n fresh ciphertexts
have n independent noises: RMS grows as sqrt(n).

Packed presets (``values_per_slot > 1``, see ``_digits.py``) put several values rounded to
a grid of ``step`` into one slot as base-``2**digit_bits`` digits. A slot then holds an
integer of ``values_per_slot * digit_bits`` bits at a small scale (the CKKS noise above is
then a fraction of the lowest digit's step), which must stay under the data prime:
``values_per_slot * digit_bits + scale_bits <= data prime bits - 2``. Every legitimate sum
keeps each digit within ``2**(digit_bits - 2)`` steps, i.e. ``|value| <= packed_range``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protos.errors import InvalidInput

# HE Standard (2018) Table 1, 128-bit classical security, ternary secret: N -> max log2(Q).
HE_STANDARD_MAX_LOG_Q_128: dict[int, int] = {
    1024: 27,
    2048: 54,
    4096: 109,
    8192: 218,
    16384: 438,
    32768: 881,
}
_ERROR_SIGMA = 3.2
# Relative error budget of the decrypted weighted sum, against the update's RMS value.
DEFAULT_RELATIVE_ERROR = 1e-4
# The decoded error RMS is multiplied by this before comparing with the budget.
_PRECISION_SAFETY = 4.0


@dataclass(frozen=True)
class CkksPreset:
    """One CKKS parameter set; ``coeff_mod_bit_sizes`` ends with SEAL's special prime."""

    name: str
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    values_per_slot: int = 1
    """Values packed per slot; above 1, each is a digit of ``digit_bits`` on a grid of
    ``step`` (``_digits.py``)."""
    digit_bits: int = 0
    packed_range: float = 0.0
    """Packed presets: the largest |value| of any sum (the value bound); step is this over
    ``2**(digit_bits - 2)``."""

    @property
    def packed(self) -> bool:
        return self.values_per_slot > 1

    @property
    def step(self) -> float:
        """Grid of a packed preset's values (its quantization step)."""
        return self.packed_range / 2 ** (self.digit_bits - 2)

    @property
    def values_per_chunk(self) -> int:
        """Values per ciphertext: N/2 slots times the values packed in each."""
        return self.slots * self.values_per_slot

    @property
    def slots(self) -> int:
        """Values per ciphertext (CKKS packs N/2 of them)."""
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        return float(2**self.scale_bits)

    @property
    def total_modulus_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes)

    @property
    def value_bound(self) -> float:
        """Largest |value| a slot of a ciphertext (fresh or summed) may hold without wrapping.

        The data prime q0 lies in [2^(b-1), 2^b); a slot value v becomes coefficients of size
        at most |v| * scale, which must stay below q0 / 2. Half of that is kept as margin.
        Packed presets: ``packed_range`` (each digit within a quarter of its base).
        """
        if self.packed:
            return self.packed_range
        return 2.0 ** (self.coeff_mod_bit_sizes[0] - 2 - self.scale_bits)

    def fresh_error_rms(self) -> float:
        """Expected RMS error per decoded slot of one fresh ciphertext (see module doc)."""
        n = self.poly_modulus_degree
        special_prime = 2.0 ** (self.coeff_mod_bit_sizes[-1] - 1)
        coeff_var = (
            (1 + 2 * n / 3) / 12 + 1 / 12 + _ERROR_SIGMA**2 * (1 + 4 * n / 3) / special_prime**2
        )
        return math.sqrt(n / 2 * coeff_var) / self.scale

    def sum_error_rms(self, n_terms: int) -> float:
        """Expected RMS error per value of a sum of ``n_terms`` fresh ciphertexts (packed:
        stochastic rounding of each term to the grid, variance 1/6 step^2 for evenly spread
        fractional parts, plus the slot noise in steps)."""
        if self.packed:
            noise_steps = self.fresh_error_rms()  # the slot's integer is in steps
            return math.sqrt(n_terms) * self.step * math.sqrt(1 / 6 + noise_steps**2)
        return math.sqrt(n_terms) * self.fresh_error_rms()

    def ciphertext_bytes(self) -> int:
        """Wire size of one ciphertext's polynomials (8-byte words), header excluded."""
        data_primes = len(self.coeff_mod_bit_sizes) - 1
        return 2 * self.poly_modulus_degree * 8 * data_primes

    def bytes_per_value(self) -> float:
        """Wire size of a ciphertext per value it carries."""
        return self.ciphertext_bytes() / self.values_per_chunk


PRESETS: dict[str, CkksPreset] = {
    p.name: p
    for p in (
        # Small: 2048 values per ciphertext, finer streaming granularity.
        CkksPreset("ckks-add-4096", 4096, (54, 55), 40),
        # Default: the add-only set of issue 5 (two 60-bit primes, scale 2^40).
        CkksPreset("ckks-add-8192", 8192, (60, 60), 40),
        # Same size, 1000x finer error for tiny updates; sums must stay within +-256.
        CkksPreset("ckks-add-8192-fine", 8192, (60, 60), 50),
        # Large: far below the modulus limit for N=16384 (a wide security margin).
        CkksPreset("ckks-add-16384", 16384, (60, 60), 40),
        # Packed: 3 values of 14-bit digits per slot, ~10.7 bytes/value; sums within +-1 on
        # a grid of 2^-12 (unbiased error <= n_terms * 2^-12 per value plus a step of noise).
        CkksPreset("ckks-pack3-8192", 8192, (60, 60), 16, 3, 14, 1.0),
        # The same packing over +-4 on a grid of 2^-10: room for a MiniLM selector's initial
        # adapters (|value| <= 0.052) as one of the 65 terms of a 64-silo round.
        CkksPreset("ckks-pack3-8192-wide", 8192, (60, 60), 16, 3, 14, 4.0),
    )
}
DEFAULT_PRESET = "ckks-add-8192"


def check_security(preset: CkksPreset) -> None:
    """Refuse parameters below 128-bit classical security by the HE Standard table."""
    n = preset.poly_modulus_degree
    if n not in HE_STANDARD_MAX_LOG_Q_128:
        raise InvalidInput(
            f"CKKS preset {preset.name!r}: poly_modulus_degree {n} is not one of "
            f"{sorted(HE_STANDARD_MAX_LOG_Q_128)}"
        )
    if len(preset.coeff_mod_bit_sizes) < 2 or any(
        not 20 <= b <= 60 for b in preset.coeff_mod_bit_sizes
    ):
        raise InvalidInput(
            f"CKKS preset {preset.name!r}: needs a data prime and a special prime of 20..60 "
            f"bits each, got {list(preset.coeff_mod_bit_sizes)}"
        )
    limit = HE_STANDARD_MAX_LOG_Q_128[n]
    if preset.total_modulus_bits > limit:
        raise InvalidInput(
            f"CKKS preset {preset.name!r}: coefficient modulus of {preset.total_modulus_bits} "
            f"bits exceeds {limit}, the 128-bit security limit for N={n} (HE Standard 2018, "
            "Table 1); use a larger N or fewer/smaller primes"
        )
    if not 0 < preset.scale_bits < preset.coeff_mod_bit_sizes[0] - 2:
        raise InvalidInput(
            f"CKKS preset {preset.name!r}: scale 2^{preset.scale_bits} leaves no room for "
            f"values under a {preset.coeff_mod_bit_sizes[0]}-bit data prime"
        )
    if preset.packed:
        _check_packing(preset)


def _check_packing(preset: CkksPreset) -> None:
    """A packed slot's integer must fit under the data prime (and in a float64's 53 bits),
    and the slot noise must stay well below one step."""
    slot_bits = preset.values_per_slot * preset.digit_bits
    if (
        preset.digit_bits < 4
        or slot_bits > 52
        or slot_bits + preset.scale_bits > preset.coeff_mod_bit_sizes[0] - 2
        or not preset.packed_range > 0
        or preset.fresh_error_rms() > 1 / 32
    ):
        raise InvalidInput(
            f"CKKS preset {preset.name!r}: {preset.values_per_slot} digits of "
            f"{preset.digit_bits} bits at scale 2^{preset.scale_bits} do not fit a "
            f"{preset.coeff_mod_bit_sizes[0]}-bit data prime with noise below 1/32 step"
        )


def check_capacity(
    preset: CkksPreset,
    *,
    max_silos: int,
    max_abs_value: float,
    min_update_rms: float,
    relative_error: float = DEFAULT_RELATIVE_ERROR,
) -> None:
    """Refuse a preset that cannot hold or resolve the weighted sum of ``max_silos`` updates.

    ``max_abs_value`` bounds |weight * update| of any one silo's coordinate (the silo checks
    it again before encrypting); ``min_update_rms`` is the smallest RMS per coordinate of the
    weighted sum that must still be resolved to ``relative_error`` (the error norm over the
    sum's norm is then at most that, with a safety factor on the noise model).
    """
    check_security(preset)
    if max_silos < 1 or max_abs_value <= 0 or min_update_rms <= 0 or relative_error <= 0:
        raise InvalidInput(
            "check_capacity needs max_silos >= 1 and positive max_abs_value, min_update_rms "
            "and relative_error"
        )
    if max_silos * max_abs_value > preset.value_bound:
        raise InvalidInput(
            f"CKKS preset {preset.name!r} holds sums up to {preset.value_bound:g}, but "
            f"{max_silos} silos of values up to {max_abs_value:g} may reach "
            f"{max_silos * max_abs_value:g}; clip updates harder or pick a preset with a "
            "smaller scale"
        )
    error = _PRECISION_SAFETY * preset.sum_error_rms(max_silos)
    if error > relative_error * min_update_rms:
        raise InvalidInput(
            f"CKKS preset {preset.name!r}: the sum of {max_silos} ciphertexts has an error "
            f"RMS of about {error:.2g} per value, above {relative_error:g} x {min_update_rms:g} "
            "(the smallest update RMS to resolve); pick a preset with a larger scale such as "
            "'ckks-add-8192-fine'"
        )


def get_preset(name: str) -> CkksPreset:
    """The preset called ``name``, checked for 128-bit security; unknown names are refused."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown CKKS preset {name!r}; choose one of {sorted(PRESETS)}"
        ) from None
    check_security(preset)
    return preset
