"""FedBiscuit's DP loss report: how a silo tells the aggregator which adapters fit its data.

For each of K adapters, the silo averages per-example losses clipped to [0, C] over a fixed
evaluation sample of exactly m examples and adds Gaussian noise of std σ·C/m. Replacing one
example moves each mean by at most C/m, so each coordinate is a Gaussian mechanism with noise
multiplier σ; the K-vector is accounted as K compositions of it, one DpEvent("gaussian", σ,
q=1, steps=K). That is exactly the RDP of one Gaussian release of the whole vector (L2
sensitivity √K·C/m, noise multiplier σ/√K): K·α/(2σ²) either way.

The evaluation sample is the m examples with the smallest keyed hash, so adding or removing
one record changes at most one member of the sample (replace-one), which is what the C/m
sensitivity assumes. Pure: no I/O; noise comes from the keystream the caller passes, and the
released means are snapped to a grid (privacy.secure_noise) against floating-point attacks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from privacy.accounting import DpEvent
from privacy.secure_noise import RandomStream, snap
from protos.errors import InvalidInput

__all__ = ["evaluation_sample", "loss_report_event", "noised_mean_losses"]


def loss_report_event(adapters: int, noise_multiplier: float) -> DpEvent:
    """What one loss report over `adapters` adapters releases, for the guard and ledger."""
    if adapters < 1:
        raise InvalidInput(f"a loss report covers at least one adapter, got {adapters}")
    return DpEvent("gaussian", noise_multiplier, 1.0, adapters)


def evaluation_sample(keys: Sequence[bytes], size: int, salt: bytes = b"") -> list[int]:
    """Indices of the `size` records whose SHA-256(salt + key) is smallest, in that order.

    Raises if there are fewer than `size` records: the mean must be over exactly m examples.
    """
    if size < 1:
        raise InvalidInput(f"evaluation sample size {size} must be at least 1")
    if len(keys) < size:
        raise InvalidInput(
            f"the loss report averages over {size} examples but the silo has only {len(keys)}"
        )
    ranked = sorted(range(len(keys)), key=lambda i: hashlib.sha256(salt + keys[i]).digest())
    return ranked[:size]


def noised_mean_losses(
    losses: np.ndarray, clip: float, noise_multiplier: float, stream: RandomStream
) -> np.ndarray:
    """[K, m] per-example losses → K means of the losses clipped to [0, clip], each plus
    N(0, (noise_multiplier · clip / m)²), snapped. The result may leave [0, clip] (that is the
    noise)."""
    values = np.asarray(losses, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise InvalidInput(f"losses must be shaped [adapters, examples], got {values.shape}")
    if not np.isfinite(values).all():
        raise InvalidInput("per-example losses must be finite")
    if not clip > 0 or not noise_multiplier > 0:
        raise InvalidInput("loss report clip and noise multiplier must be positive")
    means = np.clip(values, 0.0, clip).mean(axis=1)
    std = noise_multiplier * clip / values.shape[1]
    released = snap(torch.from_numpy(means), std, stream.gaussians(means.size))
    return released.numpy()
