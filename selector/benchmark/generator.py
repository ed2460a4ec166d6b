"""A seeded synthetic federated preference benchmark, learnable in seconds by a LoRA selector.

Each answer is assembled from four binary attributes (specific vs vague content, polite vs
curt opener, direct vs hedged advice, with vs without an example). People score answers
with a linear utility over those attributes and pick the better one by a Bradley–Terry
draw with a low temperature, so labels are mostly, not always, the higher-utility answer.
By default every silo shares one `Preferences` (IID silos). With `groups`, silos belong to
latent preference groups of unequal sizes, each with its own utility: the groups agree
that specific answers are better but disagree on tone, hedging and examples, so one
selector for everyone must fail some silos, which is what FedBiscuit's clusters are for.
`THREE_GROUPS` is the heterogeneous benchmark of issue 3. An `AnswerStyle` writes answers
another way over other attributes (selector/benchmark/long_answers.py: 3-6 sentences, issue
18); the default, `SHORT_ANSWERS`, is the data above, unchanged for every seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    """How much people gain from each attribute, and how noisy their choices are.

    `attributes` names what the weights are for: the short answers' four by default, or
    another `AnswerStyle`'s (selector/benchmark/long_answers.py)."""

    weights: tuple[float, ...] = (2.0, 1.0, 0.5, 1.0)
    temperature: float = 0.3
    attributes: tuple[str, ...] = ATTRIBUTES

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.attributes) or not all(map(math.isfinite, self.weights)):
            raise InvalidInput(
                f"preferences need {len(self.attributes)} finite weights {self.attributes}"
            )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise InvalidInput("preference temperature must be a positive number")

    def utility(self, attributes: np.ndarray) -> float:
        return float(np.dot(self.weights, attributes))


DEFAULT_PREFERENCES = Preferences()


@dataclass(frozen=True)
class PreferenceGroup:
    """Silos whose people share one utility; `share` is the group's relative silo count."""

    name: str
    preferences: Preferences
    share: float = 1.0


THREE_GROUPS = (
    # The majority keeps the default taste: specific, polite, direct, with an example.
    PreferenceGroup("thorough", DEFAULT_PREFERENCES, share=3.0),
    # Wants it short and blunt: curt beats polite, direct beats hedged, no example.
    PreferenceGroup("blunt", Preferences((1.5, -1.5, 1.5, -1.0)), share=2.0),
    # Wants it gentle: polite and hedged, no example.
    PreferenceGroup("gentle", Preferences((1.0, 1.5, -1.5, -0.5)), share=1.0),
)
"""Three groups of unequal size, shares 3:2:1 (5/3/2 of 10 silos, 6/4/2 of 12). On their
pairs, the best single labelling for everyone agrees with the small groups ~60% of the
time, each group's own about 92% (Bayes rates of the Bradley-Terry draws). At 12 silos
FedBiscuit's balanced clusters (4/4/4) can hold the blunt group alone and the gentle group
with two thorough silos, which disagree with it only on hedging and (mildly) examples."""


@dataclass(frozen=True)
class SiloData:
    train: list[PreferencePair]
    test: list[PreferencePair]
    group: str | None = None
    """The silo's latent preference group (ground truth for evaluation; never a feature)."""


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


@dataclass(frozen=True)
class AnswerPhrases:
    """The phrases an answer to one benchmark question is built from, slot by slot.

    What the oracle judge (selector/benchmark/oracle.py) reads attributes back from, and
    the vocabulary a benchmark policy (selector/benchmark/tiny_lm.py) writes with.
    """

    polite: tuple[str, ...]
    curt: tuple[str, ...]
    direct: tuple[str, ...]
    hedged: tuple[str, ...]
    advice: str
    vague: tuple[str, ...]
    example: str


def questions() -> tuple[str, ...]:
    """Every prompt the benchmark asks, in a fixed order."""
    return tuple(question for asked, _, _ in _TOPICS.values() for question in asked)


def answer_phrases(prompt: str) -> AnswerPhrases:
    """The phrases of `prompt`'s answers; an unknown prompt is not the benchmark's."""
    for asked, advice, examples in _TOPICS.values():
        if prompt in asked:
            index = asked.index(prompt)
            return AnswerPhrases(
                _POLITE, _CURT, _DIRECT, _HEDGED, advice[index], _VAGUE, examples[index]
            )
    raise InvalidInput(f"{prompt!r} is not one of the benchmark's questions")


def compose_answer(rng: np.random.Generator, prompt: str, attributes: np.ndarray) -> str:
    """An answer to `prompt` with the given 0/1 `attributes` (ordered as ATTRIBUTES)."""
    for topic, (asked, _, _) in _TOPICS.items():
        if prompt in asked:
            return _answer(rng, topic, asked.index(prompt), attributes)
    raise InvalidInput(f"{prompt!r} is not one of the benchmark's questions")


@dataclass(frozen=True)
class AnswerStyle:
    """How the benchmark writes an answer: which binary attributes it has and how an answer
    to a prompt with given 0/1 attributes (in that order) is composed from the rng."""

    name: str
    attributes: tuple[str, ...]
    compose: Callable[[np.random.Generator, str, np.ndarray], str]


SHORT_ANSWERS = AnswerStyle("short", ATTRIBUTES, compose_answer)
"""One or two sentences (the benchmark of issues 3-17): fits the demo's 32-token window."""


def _sample_pair(
    rng: np.random.Generator, prefs: Preferences, silo: str, style: AnswerStyle
) -> PreferencePair:
    topic = rng.choice(list(_TOPICS))
    question = int(rng.integers(len(_TOPICS[topic][0])))
    prompt = _TOPICS[topic][0][question]
    first = rng.integers(0, 2, size=len(style.attributes))
    second = first.copy()
    while (second == first).all():
        second = rng.integers(0, 2, size=len(style.attributes))
    margin = (prefs.utility(first) - prefs.utility(second)) / prefs.temperature
    first_wins = rng.random() < 1.0 / (1.0 + np.exp(-margin))
    answers = (style.compose(rng, prompt, first), style.compose(rng, prompt, second))
    chosen, rejected = answers if first_wins else answers[::-1]
    return PreferencePair(prompt, chosen, rejected, silo)


def group_sizes(num_silos: int, groups: Sequence[PreferenceGroup]) -> list[int]:
    """Silos per group: one each, the rest by `share` (largest remainder, ties to the first)."""
    _check_groups(groups)
    if num_silos < len(groups):
        raise InvalidInput(f"{len(groups)} preference groups need at least as many silos")
    spare = num_silos - len(groups)
    total = sum(group.share for group in groups)
    quotas = [spare * group.share / total for group in groups]
    sizes = [1 + math.floor(quota) for quota in quotas]
    by_remainder = sorted(range(len(groups)), key=lambda g: (-(quotas[g] % 1), g))
    for g in by_remainder[: num_silos - sum(sizes)]:
        sizes[g] += 1
    return sizes


def _check_groups(groups: Sequence[PreferenceGroup]) -> None:
    if not groups:
        raise InvalidInput("give at least one preference group (or none for IID silos)")
    names = [group.name for group in groups]
    if len(set(names)) != len(names) or not all(names):
        raise InvalidInput(f"preference group names must be non-empty and distinct: {names}")
    for group in groups:
        if not (math.isfinite(group.share) and group.share > 0):
            raise InvalidInput(f"preference group {group.name!r}: share must be positive")


def _check_style(groups: Sequence[PreferenceGroup], style: AnswerStyle) -> None:
    for group in groups:
        if group.preferences.attributes != style.attributes:
            raise InvalidInput(
                f"preference group {group.name!r} weighs {group.preferences.attributes}, but "
                f"{style.name} answers have {style.attributes}"
            )


def make_federated_dataset(
    num_silos: int,
    train_pairs: int,
    test_pairs: int,
    seed: int,
    groups: Sequence[PreferenceGroup] | None = None,
    style: AnswerStyle = SHORT_ANSWERS,
) -> dict[str, SiloData]:
    """`train_pairs` and `test_pairs` PER SILO for silos `silo-1..N`; same seed, same data.

    Without `groups` every silo follows `DEFAULT_PREFERENCES` and `group` is None. With
    them, `group_sizes` decides how many silos each group gets and a seeded shuffle decides
    which (so group membership is not readable from silo numbers); each silo's pairs are
    labelled with its group's preferences. Silo i draws its pairs from the same random
    stream either way, so one group with the default preferences reproduces the IID data.
    `style` writes the answers (default: the short ones); its attributes are the groups'.
    """
    if num_silos < 1 or train_pairs < 1 or test_pairs < 0:
        raise InvalidInput("benchmark needs num_silos >= 1, train_pairs >= 1 and test_pairs >= 0")
    if groups is None and style != SHORT_ANSWERS:
        raise InvalidInput(f"{style.name} answers need preference groups weighing their attributes")
    if groups is None:
        streams = np.random.SeedSequence(seed).spawn(num_silos)
        membership: list[PreferenceGroup | None] = [None] * num_silos
    else:
        _check_style(groups, style)
        sizes = group_sizes(num_silos, groups)
        # Child i of a SeedSequence does not depend on how many are spawned: silo streams
        # are those of the IID call, the extra last one shuffles the membership.
        *streams, shuffle = np.random.SeedSequence(seed).spawn(num_silos + 1)
        slots = [group for group, size in zip(groups, sizes, strict=True) for _ in range(size)]
        order = np.random.default_rng(shuffle).permutation(num_silos)
        membership = [slots[i] for i in order]
    silos = {}
    for index, (stream, group) in enumerate(zip(streams, membership, strict=True), start=1):
        silo = f"silo-{index}"
        rng = np.random.default_rng(stream)
        prefs = DEFAULT_PREFERENCES if group is None else group.preferences
        pairs = [_sample_pair(rng, prefs, silo, style) for _ in range(train_pairs + test_pairs)]
        silos[silo] = SiloData(
            train=pairs[:train_pairs],
            test=pairs[train_pairs:],
            group=None if group is None else group.name,
        )
    return silos
