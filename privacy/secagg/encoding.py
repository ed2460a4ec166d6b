"""Fixed-point encoding of float updates into Z_2^bits, and decoding of their sum.

Coordinates are clipped to ``[-clip, clip]``, multiplied by ``scale`` and rounded to an
integer in ``[-L, L]`` (``L = ceil(clip * scale)``), stored in two's complement as uint32
(or uint64) words. Stochastic rounding (up with probability equal to the fractional part)
keeps the encoding unbiased; its randomness comes from a fresh key expanded by AES-CTR, so
it needs no global RNG. :class:`~privacy.secagg.params.EncodingParams` guarantees the sum of
up to ``max_silos`` encodings cannot wrap around, so :func:`decode_sum` is exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from privacy.secagg.errors import SecAggAborted
from privacy.secagg.kdf import MASK_KEY_BYTES
from privacy.secagg.params import EncodingParams
from privacy.secagg.prg import Keystream
from protos.errors import InvalidInput

RandomBytes = Callable[[int], bytes]
_TWO_32 = float(2**32)
BLOCK = 1 << 15
"""Values per block: the float64 temporaries, the words and a keystream block of 32768
values stay in a core's L2 cache, so each extra pass over them is nearly free."""


def checked_update(update: np.ndarray) -> np.ndarray:
    """``update`` as a flat float vector, refused if it is not one or holds NaN/infinity."""
    x = np.asarray(update)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        raise InvalidInput(f"secagg encodes a flat float vector, got {x.dtype} of shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidInput("secagg refuses to encode an update with NaN or infinite values")
    return x


def rounding_stream(params: EncodingParams, random_bytes: RandomBytes) -> Keystream | None:
    """The keystream of uint32 words that decides stochastic rounding (None: deterministic)."""
    if params.rounding == "deterministic":
        return None
    return Keystream(random_bytes(MASK_KEY_BYTES), np.uint32, BLOCK)


def quantize_block(
    x: np.ndarray, params: EncodingParams, rounding: Keystream | None, out: np.ndarray
) -> None:
    """Write the clipped, scaled, rounded block ``x`` into ``out`` (int or ring words, two's
    complement); ``rounding`` yields this block's uniform words (blocks go in order)."""
    y = np.multiply(x, params.scale, dtype=np.float64)
    bound = params.clip * params.scale
    np.clip(y, -bound, bound, out=y)
    if rounding is None:
        np.rint(y, out=y)
    else:
        uniform = rounding.next_block(y.size)
        floor = np.floor(y)
        y -= floor
        y *= _TWO_32  # fractional part in units of 2**-32
        floor += uniform < y  # round up with probability = fractional part
        y = floor
    signed = out.view(np.int64 if out.dtype.itemsize == 8 else np.int32)
    np.copyto(signed, y, casting="unsafe")  # integers within [-L, L]: exact


def quantize(
    update: np.ndarray, params: EncodingParams, random_bytes: RandomBytes = os.urandom
) -> np.ndarray:
    """The clipped, scaled and rounded update as int64 integers in ``[-L, L]``."""
    return _encode(update, params, random_bytes, np.dtype(np.int64))


def encode(
    update: np.ndarray, params: EncodingParams, random_bytes: RandomBytes = os.urandom
) -> np.ndarray:
    """The update as ring words (``params.dtype``), ready to be masked."""
    return _encode(update, params, random_bytes, params.dtype)


def _encode(
    update: np.ndarray, params: EncodingParams, random_bytes: RandomBytes, dtype: np.dtype
) -> np.ndarray:
    x = checked_update(update)
    out = np.empty(x.size, dtype=dtype)
    rounding = rounding_stream(params, random_bytes)
    for start in range(0, x.size, BLOCK):
        stop = min(x.size, start + BLOCK)
        quantize_block(x[start:stop], params, rounding, out[start:stop])
    return out


def decode_sum(ring_sum: np.ndarray, params: EncodingParams, num_silos: int) -> np.ndarray:
    """The float64 sum of ``num_silos`` encoded updates from their sum in the ring.

    Raises :class:`SecAggAborted` if a coordinate lies outside what ``num_silos`` clipped
    updates can produce (a wrong mask or a tampered upload), rather than return garbage.
    """
    if not 1 <= num_silos <= params.max_silos:
        raise InvalidInput(f"decode_sum: {num_silos} silos is outside [1, {params.max_silos}]")
    words = np.asarray(ring_sum)
    if words.dtype != params.dtype or words.ndim != 1:
        raise InvalidInput(f"decode_sum expects a flat {params.dtype} vector, got {words.dtype}")
    signed = words.view(np.int32 if params.bits == 32 else np.int64)
    bound = num_silos * params.max_level
    if signed.size and (signed.max() > bound or signed.min() < -bound):
        raise SecAggAborted(
            f"the unmasked sum of {num_silos} silos is out of range; a mask or upload was wrong"
        )
    return signed.astype(np.float64) / params.scale
