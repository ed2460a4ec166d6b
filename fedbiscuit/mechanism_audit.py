"""One-run audit of the silo's DP-SGD with white-box gradient canaries (privacy.one_run_audit).

The run goes through the silo's own trainer (`silo.trainer.LocalTrainer`: Poisson sampling
from its keystream, Opacus per-pair gradients, clipping and secure noise in
`SecureNoiseDPOptimizer`, the optimizer step); only the selector is swapped for a linear
"canary model" whose per-example gradients the auditor controls (the white-box Dirac
canaries of Steinke, Nasr and Jagielski, NeurIPS 2023): canary j's gradient points along
its own coordinate of tensor `canaries` with a norm far above the clip, so clipping leaves
exactly C on that coordinate whenever it is sampled, and nothing else touches it. Ordinary
pairs push tensor `ordinary` only. The score of canary j is the trained delta on its
coordinate.

`PLANTED_BUGS` are trainers that get the mechanism wrong in the ways an accountant cannot
see; each must yield a lower bound above the ε claimed for the real mechanism's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.dp_optimizer import SecureNoiseDPOptimizer
from privacy.one_run_audit import AuditResult, audit_scores
from privacy.secure_noise import NoiseSource, RandomStream
from protos.plan import DpSpec, TrainingSpec
from silo.trainer import LocalTrainer

__all__ = ["PLANTED_BUGS", "AuditSetting", "MechanismAudit", "run_audit"]

_GRADIENT_SCALE = 1e3
"""Canary and ordinary inputs have this norm (× C): their loss gradients are ~C·500 before
clipping, so clipping always bites, and a skipped clip shows."""
_LEARNING_RATE = 1e-6
"""Small enough that scores w·x stay near 0 (the loss gradient stays at its full size)."""


@dataclass(frozen=True)
class AuditSetting:
    """What is claimed: DP-SGD with noise multiplier σ, sample rate q, `steps` steps, δ."""

    name: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    clip_norm: float = 1.0

    def claimed_epsilon(self) -> float:
        accountant = PrivacyAccountant()
        accountant.record(DpEvent("dp_sgd", self.noise_multiplier, self.sample_rate, self.steps))
        return accountant.epsilon(self.delta)


class _Rows:
    """Encoded examples as LocalTrainer reads them: `select(rows)` and `len`."""

    def __init__(self, features: torch.Tensor):
        self._features = features

    def select(self, rows: Sequence[int]) -> torch.Tensor:
        return self._features[list(rows)]

    def __len__(self) -> int:
        return self._features.shape[0]


class _CanaryEncoder:
    def __init__(self, features: torch.Tensor):
        self._features = features

    def encode(self, rows: Sequence[int]) -> _Rows:
        return _Rows(self._features[list(rows)])


class CanaryModel(nn.Module):
    """score(x) = ordinary · x[:1] + canaries · x[1:]: two trainable tensors, zero at start."""

    def __init__(self, canaries: int):
        super().__init__()
        self.ordinary = nn.Linear(1, 1, bias=False)
        self.canaries = nn.Linear(canaries, 1, bias=False)
        nn.init.zeros_(self.ordinary.weight)
        nn.init.zeros_(self.canaries.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.ordinary(x[:, :1]) + self.canaries(x[:, 1:])).squeeze(-1)

    def trainable(self) -> dict[str, nn.Parameter]:
        return {"ordinary": self.ordinary.weight, "canaries": self.canaries.weight}


class _NoiseOnFirstTensorOnly(SecureNoiseDPOptimizer):
    """Planted bug: the noise step forgets every tensor but the first."""

    def add_noise(self) -> None:
        super().add_noise()
        for p in list(self.params)[1:]:
            p.grad = p.summed_grad.view_as(p)


class _PartialNoiseTrainer(LocalTrainer):
    def _optimizer(self, params: list[nn.Parameter], stream: RandomStream):
        return _NoiseOnFirstTensorOnly(
            torch.optim.SGD(params, lr=self.training.learning_rate),
            stream=stream,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.dp.clip_norm,
            expected_batch_size=self.expected_batch_size,
            loss_reduction="mean",
        )


class _NoClipTrainer(LocalTrainer):
    """Planted bug: no per-example clipping (noise still σ·C, as if it were clipped)."""

    def _optimizer(self, params: list[nn.Parameter], stream: RandomStream):
        unclipped = 1e12
        return SecureNoiseDPOptimizer(
            torch.optim.SGD(params, lr=self.training.learning_rate),
            stream=stream,
            noise_multiplier=self.noise_multiplier * self.dp.clip_norm / unclipped,
            max_grad_norm=unclipped,
            expected_batch_size=self.expected_batch_size,
            loss_reduction="mean",
        )


class _WrongRateTrainer(LocalTrainer):
    """Planted bug: samples at 8q (capped at 1) while the ledger says q."""

    def poisson_batches(self, steps: int, release: int) -> list[list[int]]:
        stream = self.noise.stream(release, "dp_sgd/sampling")
        rate = min(1.0, 8 * self.sample_rate)
        return [stream.poisson_rows(len(self._examples), rate) for _ in range(steps)]


TrainerFactory = Callable[..., LocalTrainer]


def _no_noise(**kwargs) -> LocalTrainer:
    return LocalTrainer(**{**kwargs, "noise_multiplier": 0.0})


PLANTED_BUGS: dict[str, TrainerFactory] = {
    "noise multiplier 0": _no_noise,
    "noise on part of the tensors": _PartialNoiseTrainer,
    "sample rate 8x the accounted": _WrongRateTrainer,
    "clipping skipped": _NoClipTrainer,
}
"""name → a trainer with that bug, built like LocalTrainer (keyword arguments)."""


@dataclass(frozen=True)
class MechanismAudit:
    setting: AuditSetting
    mechanism: str
    claimed_epsilon: float
    result: AuditResult


def run_audit(
    setting: AuditSetting,
    *,
    canaries: int = 1000,
    ordinary: int = 1000,
    trainer: TrainerFactory = LocalTrainer,
    mechanism: str = "real",
    noise: NoiseSource | None = None,
    seed: int = 0,
) -> MechanismAudit:
    """Insert each of `canaries` canaries with probability 1/2 (auditor's coin, `seed`),
    train `setting.steps` steps once through `trainer`, score and audit at 95%.

    `noise` defaults to the silo's secure source; tests pass a seeded one.
    """
    rng = np.random.default_rng(seed)
    included = rng.random(canaries) < 0.5
    scale = _GRADIENT_SCALE * setting.clip_norm
    features = torch.zeros(ordinary + canaries, 1 + canaries)
    features[:ordinary, 0] = scale
    features[ordinary + np.arange(canaries), 1 + np.arange(canaries)] = scale
    rows = list(range(ordinary)) + [ordinary + j for j in np.flatnonzero(included)]
    dp = DpSpec(
        clip_norm=setting.clip_norm,
        sample_rate=setting.sample_rate,
        allow_insecure_rng=noise is not None and not noise.secure,
    )
    model = CanaryModel(canaries)
    local = trainer(
        model=model,
        encoder=_CanaryEncoder(features),
        train_pairs=rows,
        dp=dp,
        training=TrainingSpec(
            local_steps=setting.steps, learning_rate=_LEARNING_RATE, optimizer="sgd"
        ),
        noise_multiplier=setting.noise_multiplier,
        device=torch.device("cpu"),
        noise=noise or NoiseSource(),
    )
    start = {name: np.zeros(tuple(p.shape), np.float32) for name, p in model.trainable().items()}
    delta = local.train_round(start, setting.steps, release=0)
    scores = delta["canaries"].ravel().astype(np.float64)
    result = audit_scores(scores, included, setting.delta, rng=rng)
    return MechanismAudit(setting, mechanism, setting.claimed_epsilon(), result)
