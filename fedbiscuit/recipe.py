"""The training recipe a plan starts from, derived by one documented rule from the silos'
data size and the privacy budget. The demo on a partner's data (`demo --data`) and the plans
an operator starts from use it; a plan can still set every knob itself.

The rule, for N pairs per silo (the smallest silo; an operator's estimate when planning):

- **Logical batches as large as the silo's compute allows.** DP-SGD's noise on the averaged
  gradient has std σ·C/B per coordinate, and for a fixed budget σ grows more slowly than
  B = q·N (De et al., "Unlocking High-Accuracy Differentially Private Image Classification
  through Scale", 2022; Ponomareva et al., "How to DP-fy ML", JAIR 2023, §5.4: large
  batches, few epochs, tuned learning rate). So B is the smaller of: half the silo's pairs,
  and PAIRS_PER_ROUND / LOCAL_STEPS (a round's compute on a CPU silo: MiniLM at 128 tokens
  per side, adapters on the last layer, trains ~30 pairs per CPU-second on the kept outputs
  of the layers below, `selector/prefix.py`), within [MIN_BATCH, MAX_BATCH]. The trainer
  computes such a batch a few pairs at a time (memory-bounded, Opacus-style).
- **A few steps a round, a few rounds.** LOCAL_STEPS DP-SGD steps per round; the rounds are
  the operator's (DEFAULT_ROUNDS unless given). With q = 1/2 and σ derived from ε over all
  planned participations, the noise per averaged gradient stays at ~1–2% of C.
- **Plain SGD on clipped gradients**, clip C = CLIP_NORM, learning rate LEARNING_RATE
  (pair encoders; measured on HH-RLHF and the synthetic benchmark, see README).
- **Adapters on the encoder's last layer only** (ADAPTED_PROJECTIONS of the top
  TOP_LAYERS layer, rank LORA_RANK) plus the score head. DP-SGD's noise on the averaged
  gradient has norm σ·C·√d/B: MiniLM with adapters in all 6 layers has d = 74,112, in the
  last one d = 12,672 (2.4× less noise for the same ε), and the backward pass stops at that
  layer (a step costs little more than a forward pass). Measured on HH-RLHF (README,
  benchmarks/real_quality.py): the lower layers' adapters bought nothing within a CPU
  silo's budget of steps.
- **A token window from the data** (`selector.token_budget.suggested_window`) within
  WINDOW_LIMIT.
"""

from __future__ import annotations

from dataclasses import dataclass

from privacy.accounting import derive_noise_multiplier
from protos.errors import InvalidInput

SAMPLE_SHARE = 0.5
PAIRS_PER_ROUND = 256
MIN_BATCH = 8
MAX_BATCH = 256
LOCAL_STEPS = 5
DEFAULT_ROUNDS = 4
CLIP_NORM = 1.0
LEARNING_RATE = 0.5
WINDOW_LIMIT = 128
"""Tokens per side of a pair at most, unless the plan says otherwise (CPU cost grows with it)."""
TOP_LAYERS = 1
LORA_RANK = 8
ADAPTED_PROJECTIONS = ("attention.self.query", "attention.self.value")


def top_layer_targets(encoder_layers: int) -> tuple[str, ...]:
    """LoRA target names for the last TOP_LAYERS of a BERT-style encoder of `encoder_layers`
    layers (peft matches a target as the suffix of a module's name)."""
    if encoder_layers < 1:
        raise InvalidInput(f"an encoder needs at least one layer, got {encoder_layers}")
    first = max(0, encoder_layers - TOP_LAYERS)
    return tuple(
        f"layer.{layer}.{projection}"
        for layer in range(first, encoder_layers)
        for projection in ADAPTED_PROJECTIONS
    )


@dataclass(frozen=True)
class Recipe:
    rounds: int
    local_steps: int
    expected_batch_size: int
    learning_rate: float
    clip_norm: float
    noise_multiplier: float
    """What a silo with exactly `pairs` pairs derives for the budget (each silo derives its own)."""

    def describe(self) -> str:
        return (
            f"{self.rounds} rounds x {self.local_steps} DP-SGD steps, expected batch "
            f"{self.expected_batch_size}, SGD learning rate {self.learning_rate}, clip "
            f"{self.clip_norm}, noise multiplier ~{self.noise_multiplier:.2f}"
        )


def derive_recipe(
    pairs_per_silo: int,
    epsilon: float,
    delta: float,
    rounds: int | None = None,
    participations: int | None = None,
) -> Recipe:
    """The rule above for silos of `pairs_per_silo` pairs; `participations` (default: the
    rounds) is what each silo budgets σ over."""
    if pairs_per_silo < 2:
        raise InvalidInput(f"a silo needs at least 2 training pairs, got {pairs_per_silo}")
    rounds = DEFAULT_ROUNDS if rounds is None else rounds
    if rounds < 1:
        raise InvalidInput(f"rounds must be at least 1, got {rounds}")
    largest = min(pairs_per_silo * SAMPLE_SHARE, PAIRS_PER_ROUND / LOCAL_STEPS)
    batch = min(MAX_BATCH, max(MIN_BATCH, round(largest)))
    batch = min(batch, pairs_per_silo)
    steps = (participations or rounds) * LOCAL_STEPS
    sigma = derive_noise_multiplier(epsilon, delta, batch / pairs_per_silo, steps)
    return Recipe(rounds, LOCAL_STEPS, batch, LEARNING_RATE, CLIP_NORM, sigma)
