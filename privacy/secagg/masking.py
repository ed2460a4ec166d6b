"""Masks of SecAgg (Bonawitz et al., CCS 2017) as used by SecAgg+ (Bell et al., CCS 2020).

A silo ``u`` uploads ``x_u + PRG(b_u) + sum_{v in N(u)} sign(u, v) * PRG(s_uv)`` where
``sign(u, v) = +1`` if ``u < v`` else ``-1``: pairwise masks cancel in the sum of the silos
that upload, the self-mask ``b_u`` keeps ``x_u`` hidden even if the aggregator later learns
the pairwise secrets of a silo it wrongly called dropped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from privacy.secagg import kdf
from privacy.secagg.encoding import (
    BLOCK,
    RandomBytes,
    checked_update,
    quantize_block,
    rounding_stream,
)
from privacy.secagg.params import EncodingParams
from privacy.secagg.prg import Keystream, MaskExpander


def _mask_streams(
    dtype: np.dtype,
    silo_id: str,
    self_seed: bytes,
    pairwise_secrets: Mapping[str, bytes],
    context_digest: bytes,
) -> list[tuple[Keystream, bool]]:
    """(keystream, add?) of the self-mask and of each pairwise mask ``silo_id`` adds."""
    own = kdf.self_mask_key(self_seed, context_digest, silo_id)
    streams = [(Keystream(own, dtype, BLOCK), True)]
    for peer, secret in pairwise_secrets.items():
        key = kdf.pairwise_mask_key(secret, context_digest, silo_id, peer)
        streams.append((Keystream(key, dtype, BLOCK), silo_id < peer))
    return streams


def _add_masks(block: np.ndarray, streams: list[tuple[Keystream, bool]]) -> None:
    for stream, add in streams:
        (np.add if add else np.subtract)(block, stream.next_block(block.size), out=block)


def mask_update(
    encoded: np.ndarray,
    silo_id: str,
    self_seed: bytes,
    pairwise_secrets: Mapping[str, bytes],
    context_digest: bytes,
) -> np.ndarray:
    """Mask an encoded update (ring words) in place and return it.

    ``pairwise_secrets`` maps each neighbour that shared keys with ``silo_id`` to the X25519
    shared secret of their mask keys; ``self_seed`` is the silo's secret 32-byte seed.
    """
    streams = _mask_streams(encoded.dtype, silo_id, self_seed, pairwise_secrets, context_digest)
    for start in range(0, encoded.size, BLOCK):
        _add_masks(encoded[start : start + BLOCK], streams)
    return encoded


def encode_and_mask(
    update: np.ndarray,
    params: EncodingParams,
    silo_id: str,
    self_seed: bytes,
    pairwise_secrets: Mapping[str, bytes],
    context_digest: bytes,
    random_bytes: RandomBytes = os.urandom,
) -> np.ndarray:
    """``mask_update(encode(update, params, random_bytes), ...)``, the same words, computed
    block by block so that each block is quantized and masked while it sits in cache (the
    silo's cost then approaches the AES-CTR keystreams alone)."""
    x = checked_update(update)
    out = np.empty(x.size, dtype=params.dtype)
    rounding = rounding_stream(params, random_bytes)
    streams = _mask_streams(params.dtype, silo_id, self_seed, pairwise_secrets, context_digest)
    for start in range(0, x.size, BLOCK):
        block = out[start : start + BLOCK]
        quantize_block(x[start : start + BLOCK], params, rounding, block)
        _add_masks(block, streams)
    return out


def remove_self_mask(
    accumulator: np.ndarray,
    silo_id: str,
    self_seed: bytes,
    context_digest: bytes,
    expander: MaskExpander,
) -> None:
    """Subtract a surviving silo's self-mask from the running sum (aggregator side)."""
    expander.subtract(accumulator, kdf.self_mask_key(self_seed, context_digest, silo_id))


def remove_pairwise_mask(
    accumulator: np.ndarray,
    survivor: str,
    dropped: str,
    shared_secret: bytes,
    context_digest: bytes,
    expander: MaskExpander,
) -> None:
    """Undo the mask ``survivor`` added for a ``dropped`` neighbour whose upload is missing."""
    key = kdf.pairwise_mask_key(shared_secret, context_digest, survivor, dropped)
    if survivor < dropped:
        expander.subtract(accumulator, key)
    else:
        expander.add(accumulator, key)
