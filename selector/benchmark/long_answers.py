"""The synthetic benchmark with answers of 3–6 sentences whose attributes sit throughout.

Issue 18: a selector that reads only the start of an answer learns the short benchmark
(an opener and a sentence) but not real answers, where what people care about is spread
out. Here an answer is, in order: an opening sentence (warm or plain), the advice (the
question's own or vague), then, unless the answer is concise, an elaboration sentence, the
example if it has one, a second elaboration sentence, and a closing sentence (a caveat or a
plain sign-off). So a concise answer without an example has 3 sentences, a long one with
an example 6; the example sits in the middle and the caveat at the end, where a window cut
from the start alone would lose them.

`LONG_GROUPS`: nine silos by default, in three groups of equal size that all want specific
advice but otherwise disagree: one rewards examples, one closing caveats, one brevity
(concise, no example, no caveat). Bayes rates (`selector.benchmark.bayes`): each group's
own best selector agrees with its labels 0.828–0.835 of the time, one selector for all
0.594–0.695, so a single selector must fail some group by ~23 points. The topics,
questions, advice and examples are the short benchmark's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from protos.errors import InvalidInput
from selector.benchmark.generator import (
    AnswerStyle,
    PreferenceGroup,
    Preferences,
    SiloData,
    answer_phrases,
    make_federated_dataset,
)

__all__ = [
    "LONG_ANSWERS",
    "LONG_ATTRIBUTES",
    "LONG_GROUPS",
    "LONG_SILOS",
    "compose_long_answer",
    "make_long_dataset",
]

LONG_ATTRIBUTES = ("specific", "warm", "example", "caveat", "concise")

_WARM = (
    "Happy to help with this one.",
    "That is a great thing to ask about.",
    "Glad you asked, it comes up a lot.",
)
_PLAIN = ("Here is what works.", "Here is the usual approach.", "This is the standard answer.")
_DIRECT = ("You should", "Just", "Simply")
_VAGUE = (
    "do the usual things and see how it goes",
    "figure it out as you go along",
    "try some stuff and see what happens",
)
_EXAMPLE_LEADS = ("For example,", "For instance,", "As an example,")
_ELABORATIONS = (
    "Most people get the hang of it within a week or two.",
    "It gets easier every time you do it.",
    "Small steps add up faster than you would expect.",
    "Sticking with it matters more than getting it perfect.",
    "Give it a few tries before you judge the results.",
)
_CAVEATS = (
    "That said, check with an expert if your situation is unusual.",
    "One caveat: this may not suit everyone, so adjust it to your case.",
    "Be careful, though, since results vary from person to person.",
)
_SIGN_OFFS = ("Good luck with it.", "Hope that helps you out.", "Enjoy the process.")


def compose_long_answer(rng: np.random.Generator, prompt: str, attributes: np.ndarray) -> str:
    """An answer to `prompt` with the given 0/1 `attributes` (ordered as LONG_ATTRIBUTES)."""
    if len(attributes) != len(LONG_ATTRIBUTES):
        raise InvalidInput(f"long answers have {len(LONG_ATTRIBUTES)} attributes {LONG_ATTRIBUTES}")
    phrases = answer_phrases(prompt)
    specific, warm, example, caveat, concise = (bool(a) for a in attributes)
    content = phrases.advice if specific else rng.choice(_VAGUE)
    sentences = [
        str(rng.choice(_WARM if warm else _PLAIN)),
        f"{rng.choice(_DIRECT)} {content}.",
    ]
    middle = [] if concise else [str(s) for s in rng.choice(_ELABORATIONS, 2, replace=False)]
    if example:
        middle.insert(len(middle) // 2, f"{rng.choice(_EXAMPLE_LEADS)} {phrases.example}.")
    sentences += middle
    sentences.append(str(rng.choice(_CAVEATS if caveat else _SIGN_OFFS)))
    return " ".join(sentences)


LONG_ANSWERS = AnswerStyle("long", LONG_ATTRIBUTES, compose_long_answer)

_TEMPERATURE = 0.7

LONG_GROUPS = (
    PreferenceGroup(
        "examples", Preferences((1.0, 0.5, 2.0, -1.0, -0.5), _TEMPERATURE, LONG_ATTRIBUTES)
    ),
    PreferenceGroup(
        "caveats", Preferences((1.0, 0.5, -1.0, 2.0, -0.5), _TEMPERATURE, LONG_ATTRIBUTES)
    ),
    PreferenceGroup(
        "brevity", Preferences((1.0, -0.5, -1.0, -1.0, 2.0), _TEMPERATURE, LONG_ATTRIBUTES)
    ),
)
"""Weights over (specific, warm, example, caveat, concise); shares equal (3/3/3 of 9 silos,
so FedBiscuit's balanced clusters of 3 can each hold one group exactly)."""

LONG_SILOS = 9


def make_long_dataset(
    num_silos: int,
    train_pairs: int,
    test_pairs: int,
    seed: int,
    groups: Sequence[PreferenceGroup] = LONG_GROUPS,
) -> dict[str, SiloData]:
    """The long-answer federation: as `make_federated_dataset`, with long answers."""
    return make_federated_dataset(
        num_silos, train_pairs, test_pairs, seed, groups=groups, style=LONG_ANSWERS
    )
