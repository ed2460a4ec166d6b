"""Opacus's DPOptimizer with its noise drawn from a `RandomStream` and the release snapped.

Only `add_noise` changes: Opacus's per-sample clipping (`clip_and_accumulate`), its
scaling by the expected batch size and its step are untouched, so the accounting of
Opacus's DP-SGD applies as before. Opacus's own `secure_mode` (Holohan & Braghin's sum of
four Gaussians from torch's generator) is not used: its generator is not a CSPRNG here
(torchcsprng does not install for current torch). Noise for every parameter of a step is
drawn as one block (privacy.secure_noise.RandomStream.gaussians), on the parameters' device.
"""

from __future__ import annotations

import torch
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

from privacy.secure_noise import RandomStream, snap

__all__ = ["SecureNoiseDPOptimizer"]


class SecureNoiseDPOptimizer(DPOptimizer):
    """A DPOptimizer whose Gaussian noise comes from `stream` and whose release is snapped."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, stream: RandomStream, **kwargs):
        super().__init__(optimizer, **kwargs)
        self._stream = stream

    def add_noise(self) -> None:
        """p.grad = snap(clipped sum + N(0, (σ·C)²)) for every parameter, one block per step."""
        params = list(self.params)
        for p in params:
            _check_processed_flag(p.summed_grad)
        std = self.noise_multiplier * self.max_grad_norm
        if std == 0:
            for p in params:
                p.grad = p.summed_grad.view_as(p)
                _mark_as_processed(p.summed_grad)
            return
        total = sum(p.summed_grad.numel() for p in params)
        normals = self._stream.gaussians(total, params[0].summed_grad.device)
        offset = 0
        for p in params:
            count = p.summed_grad.numel()
            noisy = snap(p.summed_grad, std, normals[offset : offset + count])
            p.grad = noisy.to(p.summed_grad.dtype).view_as(p)
            offset += count
            _mark_as_processed(p.summed_grad)
