"""A seeded synthetic federated preference benchmark, learnable in seconds by a LoRA selector.

Each answer is assembled from four binary attributes (specific vs vague content, polite vs
curt opener, direct vs hedged advice, with vs without an example). People score answers
with a linear utility over those attributes and pick the better one by a Bradley–Terry
draw with a low temperature, so labels are mostly, not always, the higher-utility answer.
Silos get IID slices; every silo here shares one `Preferences`, the seam through which
heterogeneous silo groups can later be introduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protos.errors import InvalidInput
from selector.data import PreferencePair

_TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # topic: (questions, specific advice, examples)
    "cooking": (
        ("How do I cook rice?", "How can I make soup taste better?", "How do I bake bread?"),
        (
            "rinse it and simmer for eighteen minutes",
            "add salt, garlic and lemon",
            "knead ten minutes and let it rise twice",
        ),
        ("basmati needs less water", "cumin lifts lentils", "rye proofs slowly"),
    ),
    "travel": (
        ("How do I pack for a trip?", "How can I find cheap flights?", "How do I avoid jet lag?"),
        (
            "roll clothes and pack one spare outfit",
            "book on Tuesdays and compare fares",
            "shift your sleep an hour a day before leaving",
        ),
        ("a carry-on fits a week", "midweek flights cost less", "morning light resets you"),
    ),
    "fitness": (
        ("How do I start running?", "How can I get stronger?", "How do I stretch properly?"),
        (
            "alternate one minute of jogging with two of walking",
            "squat, press and row three times a week",
            "hold each stretch thirty seconds after a warm-up",
        ),
        ("a first week of three runs", "adding five pounds weekly", "calf stretches on a step"),
    ),
    "money": (
        ("How do I save money?", "How should I budget?", "How do I pay off debt?"),
        (
            "save ten percent of each paycheck",
            "list fixed costs first, then cap groceries and fun",
            "pay the highest interest card first",
        ),
        ("saving forty dollars a week", "a fifty thirty twenty split", "clearing a store card"),
    ),
}

_POLITE = ("Happy to help!", "Good question!", "Glad you asked.")
_CURT = ("Fine.", "Obviously.", "Whatever.")
_DIRECT = ("You should", "Just", "Simply")
_HEDGED = ("Maybe you could", "Perhaps try to", "It might help to")
_VAGUE = ("do the usual things", "figure it out as you go", "try some stuff and see")

ATTRIBUTES = ("specific", "polite", "direct", "example")


@dataclass(frozen=True)
class Preferences:
    """How much people gain from each attribute, and how noisy their choices are."""

    weights: tuple[float, float, float, float] = (2.0, 1.0, 0.5, 1.0)
    temperature: float = 0.3

    def utility(self, attributes: np.ndarray) -> float:
        return float(np.dot(self.weights, attributes))


DEFAULT_PREFERENCES = Preferences()


@dataclass(frozen=True)
class SiloData:
    train: list[PreferencePair]
    test: list[PreferencePair]


def _answer(rng: np.random.Generator, topic: str, question: int, attributes: np.ndarray) -> str:
    _, advice, examples = _TOPICS[topic]
    specific, polite, direct, example = (bool(a) for a in attributes)
    opener = rng.choice(_POLITE if polite else _CURT)
    verb = rng.choice(_DIRECT if direct else _HEDGED)
    content = advice[question] if specific else rng.choice(_VAGUE)
    text = f"{opener} {verb} {content}."
    if example:
        text += f" For example, {examples[question]}."
    return text


def _sample_pair(rng: np.random.Generator, prefs: Preferences, silo: str) -> PreferencePair:
    topic = rng.choice(list(_TOPICS))
    question = int(rng.integers(len(_TOPICS[topic][0])))
    first = rng.integers(0, 2, size=len(ATTRIBUTES))
    second = first.copy()
    while (second == first).all():
        second = rng.integers(0, 2, size=len(ATTRIBUTES))
    margin = (prefs.utility(first) - prefs.utility(second)) / prefs.temperature
    first_wins = rng.random() < 1.0 / (1.0 + np.exp(-margin))
    answers = (_answer(rng, topic, question, first), _answer(rng, topic, question, second))
    chosen, rejected = answers if first_wins else answers[::-1]
    return PreferencePair(_TOPICS[topic][0][question], chosen, rejected, silo)


def make_federated_dataset(
    num_silos: int, train_pairs: int, test_pairs: int, seed: int
) -> dict[str, SiloData]:
    """`train_pairs` and `test_pairs` PER SILO for silos `silo-1..N`; same seed, same data."""
    if num_silos < 1 or train_pairs < 1 or test_pairs < 0:
        raise InvalidInput("benchmark needs num_silos >= 1, train_pairs >= 1 and test_pairs >= 0")
    streams = np.random.SeedSequence(seed).spawn(num_silos)
    silos = {}
    for index, stream in enumerate(streams, start=1):
        silo = f"silo-{index}"
        rng = np.random.default_rng(stream)
        pairs = [
            _sample_pair(rng, DEFAULT_PREFERENCES, silo) for _ in range(train_pairs + test_pairs)
        ]
        silos[silo] = SiloData(train=pairs[:train_pairs], test=pairs[train_pairs:])
    return silos
