"""Several fixed-point values per CKKS slot: the packing of the ``ckks-pack*`` presets.

Why: a CKKS slot of a one-prime ciphertext costs 32 bytes on the wire but can hold an exact
integer of about 42 bits (see ``_presets.py``), far more than one value of an update needs.
So each value is rounded to a multiple of ``step``, up or down with the probabilities that
make the rounding unbiased (a value far below a step still moves the sum on average, instead
of always vanishing), and ``k`` of those integers share a slot
as the balanced base-``2**digit_bits`` number ``q_0 + q_1 B + ... + q_{k-1} B^(k-1)``.
Adding ciphertexts adds the slot integers, hence every digit, exactly; the sum is read back
digit by digit (balanced remainders) as long as no digit leaves ``(-B/2, B/2)``. The
presets keep every legitimate sum within ``B/4`` (the ``value_bound``), so a digit that
reads beyond it means the range was left (or a sum wrapped) and decoding refuses.

Error of a decoded sum of ``n`` encrypted terms, per value: zero mean, at most ``n * step``
from rounding each term to the grid (RMS ``step * sqrt(n / 6)`` for fractional parts spread
evenly, at most ``step * sqrt(n) / 2``), plus the CKKS noise, which lands on the integer of the slot
only (RMS ``fresh_noise * sqrt(n)`` steps, a fraction of a step for the presets' ``n``); it
moves the lowest digit by a step at most in practice and never carries into other digits
while the digits stay within ``B/4``.
"""

from __future__ import annotations

import math

import numpy as np

from protos.errors import InvalidInput


def pack(
    values: np.ndarray,
    *,
    step: float,
    digit_bits: int,
    per_slot: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Round ``values`` (float64) stochastically to multiples of ``step`` (``rng`` draws the
    rounding) and pack ``per_slot`` of them per slot: value ``i`` is digit ``i % per_slot`` of
    slot ``i // per_slot`` (float64 integers, exact below 2**53). The caller has checked
    ``|values| <= value_bound``."""
    q = values / step
    floor = np.floor(q)
    q -= floor
    q = floor + (rng.random(q.size) < q)  # up with probability = the fractional part
    slots = math.ceil(q.size / per_slot)
    if q.size != slots * per_slot:
        q = np.concatenate([q, np.zeros(slots * per_slot - q.size)])
    q = q.reshape(slots, per_slot)
    packed = q[:, per_slot - 1].copy()
    base = float(2**digit_bits)
    for j in range(per_slot - 2, -1, -1):  # Horner: exact, every partial sum is an integer
        packed *= base
        packed += q[:, j]
    return packed


def unpack(
    slots: np.ndarray, length: int, *, step: float, digit_bits: int, per_slot: int
) -> np.ndarray:
    """The ``length`` float64 values that ``slots`` (decrypted sums of :func:`pack` output)
    hold; refuses any digit beyond ``B/4``: outside the packing's range, so possibly wrapped."""
    rest = np.rint(np.asarray(slots, dtype=np.float64)).astype(np.int64)
    base, half, limit = 1 << digit_bits, 1 << (digit_bits - 1), 1 << (digit_bits - 2)
    digits = np.empty((rest.size, per_slot), dtype=np.int64)
    for j in range(per_slot - 1):
        digit = ((rest + half) & (base - 1)) - half  # balanced remainder in [-B/2, B/2)
        digits[:, j] = digit
        rest = (rest - digit) >> digit_bits  # exact: rest - digit is a multiple of B
    digits[:, per_slot - 1] = rest
    if digits.size and int(np.abs(digits).max()) > limit:
        raise InvalidInput(
            f"a decrypted packed value exceeds the packing's range of {limit} steps of {step:g}: "
            "the sum left the preset's value bound (it may have wrapped); refusing it"
        )
    return digits.reshape(-1)[:length].astype(np.float64) * step
