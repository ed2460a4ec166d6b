"""Is the tuned policy better than the base? Win rate judged by the selectors and an oracle.

For each prompt (times `samples_per_prompt`) the tuned policy (adapter on) and the base
(adapter off) each answer once, from separate seeded streams; the pair (tuned, base) is
judged by the selectors' majority vote (1 win, 0 loss, 1/2 tie, and identical answers are
a tie) and, on the synthetic benchmark, by the oracle (the share of people preferring the
tuned answer, overall and per preference group).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from selector.alignment.base_policy import sample_completions
from selector.alignment.config import AlignConfig
from selector.alignment.win_rate import WinRate, win_rate
from selector.benchmark.oracle import OracleJudge
from selector.data import PreferencePair
from selector.model import Encoder, Selector
from selector.vote import majority_vote, selector_logits

__all__ = ["Comparison", "Evaluation", "evaluate_policy"]


@dataclass(frozen=True)
class Comparison:
    prompt: str
    tuned: str
    base: str
    selectors: float
    oracle: float | None


@dataclass(frozen=True)
class Evaluation:
    selectors: WinRate
    oracle: WinRate | None
    oracle_per_group: dict[str, WinRate]
    comparisons: list[Comparison]


def evaluate_policy(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    selectors: Sequence[Selector],
    encoder: Encoder,
    prompts: Sequence[str],
    config: AlignConfig,
    oracle: OracleJudge | None = None,
) -> Evaluation:
    """Win rates of the tuned policy over its base on `prompts`."""
    spec, seed = config.evaluation, config.seed
    asked = [prompt for prompt in prompts for _ in range(spec.samples_per_prompt)]
    # Streams apart from the training samples' (seed) and from each other.
    tuned = sample_completions(model, tokenizer, asked, config.sampling, 1, seed + 1)
    with model.disable_adapter():
        base = sample_completions(model, tokenizer, asked, config.sampling, 1, seed + 2)
    tuned_texts = [row[0].text for row in tuned]
    base_texts = [row[0].text for row in base]
    pairs = [PreferencePair(*row) for row in zip(asked, tuned_texts, base_texts, strict=True)]
    votes = majority_vote(selector_logits(selectors, encoder, pairs)).tolist()
    scores = [0.5 if t == b else v for t, b, v in zip(tuned_texts, base_texts, votes, strict=True)]
    oracle_scores: list[float | None] = [None] * len(asked)
    oracle_rate, per_group = None, {}
    if oracle is not None:
        population, by_group = oracle.preferences(asked, tuned_texts, base_texts)
        oracle_scores = list(population)
        oracle_rate = win_rate(population, seed, spec.bootstrap_resamples)
        per_group = {
            name: win_rate(values, seed, spec.bootstrap_resamples)
            for name, values in by_group.items()
        }
    return Evaluation(
        selectors=win_rate(scores, seed, spec.bootstrap_resamples),
        oracle=oracle_rate,
        oracle_per_group=per_group,
        comparisons=[
            Comparison(*row)
            for row in zip(asked, tuned_texts, base_texts, scores, oracle_scores, strict=True)
        ],
    )
