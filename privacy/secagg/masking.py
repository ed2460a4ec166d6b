"""Masks of SecAgg (Bonawitz et al., CCS 2017) as used by SecAgg+ (Bell et al., CCS 2020).

A silo ``u`` uploads ``x_u + PRG(b_u) + sum_{v in N(u)} sign(u, v) * PRG(s_uv)`` where
``sign(u, v) = +1`` if ``u < v`` else ``-1``: pairwise masks cancel in the sum of the silos
that upload, the self-mask ``b_u`` keeps ``x_u`` hidden even if the aggregator later learns
the pairwise secrets of a silo it wrongly called dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from privacy.secagg import kdf
from privacy.secagg.prg import MaskExpander


def mask_update(
    encoded: np.ndarray,
    silo_id: str,
    self_seed: bytes,
    pairwise_secrets: Mapping[str, bytes],
    context_digest: bytes,
    expander: MaskExpander,
) -> np.ndarray:
    """Mask an encoded update in place and return it.

    ``pairwise_secrets`` maps each neighbour that shared keys with ``silo_id`` to the X25519
    shared secret of their mask keys; ``self_seed`` is the silo's secret 32-byte seed.
    """
    expander.add(encoded, kdf.self_mask_key(self_seed, context_digest, silo_id))
    for peer, secret in pairwise_secrets.items():
        key = kdf.pairwise_mask_key(secret, context_digest, silo_id, peer)
        if silo_id < peer:
            expander.add(encoded, key)
        else:
            expander.subtract(encoded, key)
    return encoded


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
