"""The synthetic benchmark's ground truth as a judge of generated answers.

The benchmark's people score an answer by a linear utility over its four attributes and
choose by a Bradley–Terry draw (selector/benchmark/generator.py). Reading those
attributes back from a generated answer lets us say how often people would prefer one
policy's answer to another's, without any learned model: the "oracle" win rate alignment
is measured against.

Attributes are read from the words of an answer (case and punctuation ignored, so a
lower-casing tokenizer's output reads the same as the benchmark's text): polite if it opens
with a polite opener, direct if it holds a direct verb phrase, specific if it holds the
question's own advice, with example if it holds "for example" and the question's example.
A malformed answer simply lacks the attributes it does not show.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from protos.errors import InvalidInput
from selector.benchmark.generator import ATTRIBUTES, PreferenceGroup, answer_phrases

__all__ = ["OracleJudge", "read_attributes"]


def _words(text: str) -> str:
    """Lower-case alphanumeric words joined by one space, padded so phrases match whole."""
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def read_attributes(prompt: str, answer: str) -> np.ndarray:
    """The answer's 0/1 attributes, ordered as `selector.benchmark.generator.ATTRIBUTES`."""
    phrases = answer_phrases(prompt)
    words = _words(answer)
    values = {
        "specific": _words(phrases.advice) in words,
        "polite": any(words.startswith(_words(opener)) for opener in phrases.polite),
        "direct": any(_words(verb) in words for verb in phrases.direct),
        "example": _words(f"for example {phrases.example}") in words,
    }
    return np.array([float(values[name]) for name in ATTRIBUTES])


@dataclass(frozen=True)
class OracleJudge:
    """A population of preference groups weighted by their share of silos."""

    groups: tuple[PreferenceGroup, ...]

    def __post_init__(self) -> None:
        if not self.groups:
            raise InvalidInput("an oracle judge needs at least one preference group")

    def group_preferences(self, prompt: str, first: str, second: str) -> dict[str, float]:
        """Per group: the probability its people prefer `first` (1/2 for equal utilities)."""
        a, b = read_attributes(prompt, first), read_attributes(prompt, second)
        return {
            group.name: _sigmoid(
                (group.preferences.utility(a) - group.preferences.utility(b))
                / group.preferences.temperature
            )
            for group in self.groups
        }

    def preference(self, prompt: str, first: str, second: str) -> float:
        """The share of the population expected to prefer `first` over `second`."""
        by_group = self.group_preferences(prompt, first, second)
        total = math.fsum(group.share for group in self.groups)
        return math.fsum(group.share * by_group[group.name] for group in self.groups) / total

    def preferences(
        self, prompts: Sequence[str], firsts: Sequence[str], seconds: Sequence[str]
    ) -> tuple[list[float], dict[str, list[float]]]:
        """Population and per-group preferences of each `first` over its `second`."""
        population: list[float] = []
        per_group: dict[str, list[float]] = {group.name: [] for group in self.groups}
        for prompt, first, second in zip(prompts, firsts, seconds, strict=True):
            population.append(self.preference(prompt, first, second))
            for name, value in self.group_preferences(prompt, first, second).items():
                per_group[name].append(value)
        return population, per_group


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
