"""Local DP-SGD on a silo's preference pairs: the only code that touches raw training data.

Built from Opacus's parts rather than its PrivacyEngine so that exactly one accountant (the
silo's `PrivacyAccountant`, fed by `dp_event`) decides what is spent. Each step: a Poisson
sample of pairs at rate q (the plan's dp.sample_rate, else expected_batch_size / N), exact
per-pair gradients
(GradSampleModule, summed loss), clipping to `clip_norm`, Gaussian noise of std
σ·clip_norm, then division by the EXPECTED batch size q·N (DPOptimizer "mean"), which keeps
the sensitivity of the update independent of the sampled batch's size. Sampling and noise
come from the release's own AES-CTR keystreams (privacy.secure_noise), the noise snapped
(privacy.dp_optimizer).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from opacus import GradSampleModule

from privacy.accounting import DpEvent
from privacy.dp_optimizer import SecureNoiseDPOptimizer
from privacy.secure_noise import NoiseSource, RandomStream
from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import DpSpec, TrainingSpec
from selector.data import PreferencePair
from selector.model import Encoder, Selector, adapter_state, load_adapter_state
from selector.prefix import with_frozen_prefix


class LocalTrainer:
    """Trains the adapters of `model` (moved to `device`) from given globals, privately.

    `noise` keys each release's sampling and noise streams: from os.urandom (secure), or
    from a test seed and the release's ledger seq (reproducible, never replayed, and
    insecure: refused unless the plan sets dp.allow_insecure_rng).
    """

    def __init__(
        self,
        model: Selector,
        encoder: Encoder,
        train_pairs: Sequence[PreferencePair],
        dp: DpSpec,
        training: TrainingSpec,
        noise_multiplier: float,
        device: torch.device,
        noise: NoiseSource,
        physical_batch_size: int = 32,
    ) -> None:
        if not noise.secure and not dp.allow_insecure_rng:
            raise FailedPrecondition(
                "this silo's DP noise is seeded (config.seed), which the plan forbids "
                "(dp.allow_insecure_rng is false): unset the seed"
            )
        if not train_pairs:
            raise InvalidInput("the silo has no training pairs")
        if dp.sample_rate is None and dp.expected_batch_size > len(train_pairs):
            raise InvalidInput(
                f"dp.expected_batch_size={dp.expected_batch_size} exceeds the silo's "
                f"{len(train_pairs)} training pairs"
            )
        if physical_batch_size < 1:
            raise InvalidInput(f"physical batch size {physical_batch_size} must be at least 1")
        if not noise_multiplier >= 0:
            raise InvalidInput(f"noise multiplier {noise_multiplier} must be non-negative")
        self.model = model.to(device)
        self.dp = dp
        self.training = training
        self.noise_multiplier = float(noise_multiplier)
        self.device = device
        self.physical_batch_size = physical_batch_size
        # Adapters on the top layer only: the layers below run once per pair, here.
        self._examples = with_frozen_prefix(self.model, encoder.encode(train_pairs), device)
        self._module = GradSampleModule(self.model, loss_reduction="sum")
        self.noise = noise

    @property
    def secure_rng(self) -> bool:
        """Whether sampling and noise come from OS entropy (what the ledger records)."""
        return self.noise.secure

    @property
    def sample_rate(self) -> float:
        """q: the plan's (public) rate, else expected_batch_size / N (which reveals N)."""
        if self.dp.sample_rate is not None:
            return self.dp.sample_rate
        return self.dp.expected_batch_size / len(self._examples)

    @property
    def expected_batch_size(self) -> float:
        """q·N, what DP-SGD divides the noised sum by (local: it never leaves the silo)."""
        return self.sample_rate * len(self._examples)

    def dp_event(self, steps: int) -> DpEvent:
        """What `train_round(..., steps)` releases, for the budget guard and the ledger."""
        return DpEvent("dp_sgd", self.noise_multiplier, self.sample_rate, steps)

    def _optimizer(
        self, params: list[torch.nn.Parameter], stream: RandomStream
    ) -> SecureNoiseDPOptimizer:
        """A fresh optimizer every round: each round starts from the globals."""
        rate = self.training.learning_rate
        inner = (
            torch.optim.Adam(params, lr=rate)
            if self.training.optimizer == "adam"
            else torch.optim.SGD(params, lr=rate)
        )
        return SecureNoiseDPOptimizer(
            inner,
            stream=stream,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.dp.clip_norm,
            expected_batch_size=self.expected_batch_size,
            loss_reduction="mean",
        )

    @torch.no_grad()
    def example_losses(
        self, global_state: Mapping[str, np.ndarray], rows: Sequence[int], batch_size: int = 64
    ) -> np.ndarray:
        """Per-pair Bradley–Terry losses −log σ(score) of the adapters `global_state` on the
        training pairs `rows` (FedBiscuit's evaluation sample). Releases nothing by itself:
        the caller clips, averages and noises them (privacy.loss_report)."""
        load_adapter_state(self.model, global_state)
        self.model.eval()
        chunks = []
        for start in range(0, len(rows), batch_size):
            batch = self._examples.select(list(rows[start : start + batch_size]))
            scores = self.model(batch.to(self.device))
            chunks.append(torch.nn.functional.softplus(-scores).double().cpu())
        return torch.cat(chunks).numpy()

    def poisson_batches(self, steps: int, release: int) -> list[list[int]]:
        """The rows of each of `steps` batches of release `release`: every pair joins each
        batch independently with probability `sample_rate` (the Poisson sampling the
        accounting assumes), from that release's sampling stream, as `train_round` draws."""
        stream = self.noise.stream(release, "dp_sgd/sampling")
        return [stream.poisson_rows(len(self._examples), self.sample_rate) for _ in range(steps)]

    def _accumulate(
        self,
        optimizer: SecureNoiseDPOptimizer,
        params: list[torch.nn.Parameter],
        rows: Sequence[int],
    ) -> None:
        """Clipped per-pair gradients of one logical (Poisson) batch, summed in the optimizer,
        computed `physical_batch_size` pairs at a time so a large expected batch fits in
        memory: every chunk but the last is a skipped step (clip and accumulate, no noise),
        as Opacus's BatchMemoryManager does. The caller's `step()` then noises once."""
        optimizer.zero_grad(set_to_none=True)
        if not rows:
            # An empty Poisson batch: no gradient, but the step and its noise happen.
            for param in params:
                param.grad_sample = param.new_zeros((0, *param.shape))
            return
        chunks = [
            rows[start : start + self.physical_batch_size]
            for start in range(0, len(rows), self.physical_batch_size)
        ]
        for index, chunk in enumerate(chunks):
            if index > 0:
                optimizer.zero_grad(set_to_none=True)  # keeps the summed clipped gradients
            scores = self._module(self._examples.select(chunk).to(self.device))
            # −log σ(score): Bradley–Terry loss with the chosen answer on side a.
            loss = torch.nn.functional.softplus(-scores).sum()
            with warnings.catch_warnings():
                # Opacus's hooks on a frozen backbone: expected, and said every step.
                warnings.filterwarnings("ignore", "Full backward hook is firing")
                loss.backward()
            if index < len(chunks) - 1:
                optimizer.signal_skip_step(do_skip=True)
                optimizer.step()

    def train_round(
        self, global_state: Mapping[str, np.ndarray], steps: int, *, release: int
    ) -> dict[str, np.ndarray]:
        """`steps` DP-SGD steps from `global_state`; returns the delta (new − global).

        The caller must have charged `dp_event(steps)` to the budget before calling, as the
        ledger entry whose seq is `release` (which keys a seeded silo's streams).
        """
        if steps < 1:
            raise InvalidInput(f"local steps {steps} must be at least 1")
        load_adapter_state(self.model, global_state)
        params = list(self.model.trainable().values())
        optimizer = self._optimizer(params, self.noise.stream(release, "dp_sgd/noise"))
        self._module.train()
        try:
            for rows in self.poisson_batches(steps, release):
                self._accumulate(optimizer, params, rows)
                optimizer.step()
        finally:
            optimizer.zero_grad(set_to_none=True)
            self._module.eval()
        updated = adapter_state(self.model)
        return {name: updated[name] - global_state[name] for name in updated}
