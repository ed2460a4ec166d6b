"""Selectors label completion pairs by majority vote; ties are dropped or kept at 1/2."""

import numpy as np
import pytest
import torch

from selector.alignment.base_policy import Completion
from selector.alignment.config import LabellingSpec
from selector.alignment.labelling import label_completions
from selector.benchmark.generator import compose_answer, questions
from selector.data import PreferencePair
from selector.model import build_selector, load_adapter_state


def _selector(tiny_spec, negate_head: bool):
    """A tiny selector with a non-zero head; negating the head flips every logit exactly."""
    model = build_selector(tiny_spec, seed=3)
    if negate_head:
        state = {n: p.detach().numpy().copy() for n, p in model.trainable().items()}
        state["head.weight"] = -state["head.weight"]
        load_adapter_state(model, state)
    return model


@pytest.fixture(scope="module")
def prompts_and_completions():
    rng = np.random.default_rng(4)
    prompts = list(questions()[:4])
    completions = [
        [
            Completion(compose_answer(rng, prompt, rng.integers(0, 2, size=4)), (5, 6, k))
            for k in range(3)
        ]
        for prompt in prompts
    ]
    return prompts, completions


def _own_logit(model, encoder, prompt, first, second) -> float:
    with torch.no_grad():
        return float(model(encoder.encode([PreferencePair(prompt, first, second)]))[0])


def test_one_selector_picks_the_side_it_scores_higher_for_every_pair_of_completions(
    tiny_spec, tiny_encoder, prompts_and_completions
):
    prompts, completions = prompts_and_completions
    model = _selector(tiny_spec, negate_head=False)

    result = label_completions([model], tiny_encoder, prompts, completions, LabellingSpec())

    assert result.candidates == 4 * 3 and result.identical == 0
    assert len(result.pairs) + result.ties_dropped == 12
    for pair in result.pairs:
        logit = _own_logit(model, tiny_encoder, pair.prompt, pair.chosen.text, pair.rejected.text)
        assert logit > 0
        assert (pair.label, pair.votes_chosen, pair.votes_rejected) == (1.0, 1, 0)
        assert pair.mean_probability > 0.5


def test_the_majority_decides_and_the_split_is_recorded(
    tiny_spec, tiny_encoder, prompts_and_completions
):
    prompts, completions = prompts_and_completions
    model, mirror = _selector(tiny_spec, False), _selector(tiny_spec, True)

    alone = label_completions([model], tiny_encoder, prompts, completions, LabellingSpec())
    voted = label_completions(
        [model, mirror, model], tiny_encoder, prompts, completions, LabellingSpec()
    )

    assert [(p.chosen, p.rejected) for p in voted.pairs] == [
        (p.chosen, p.rejected) for p in alone.pairs
    ]
    assert all((p.votes_chosen, p.votes_rejected) == (2, 1) for p in voted.pairs)


def test_level_votes_are_dropped_by_default_and_kept_at_one_half_when_asked(
    tiny_spec, tiny_encoder, prompts_and_completions
):
    prompts, completions = prompts_and_completions
    mirrored = [_selector(tiny_spec, False), _selector(tiny_spec, True)]  # exact ties

    dropped = label_completions(mirrored, tiny_encoder, prompts, completions, LabellingSpec())
    kept = label_completions(
        mirrored, tiny_encoder, prompts, completions, LabellingSpec(ties="half")
    )

    assert dropped.pairs == [] and dropped.ties_dropped == 12
    assert len(kept.pairs) == 12 and kept.ties_dropped == 0
    assert all(p.label == 0.5 for p in kept.pairs)
    assert [p.mean_probability for p in kept.pairs] == pytest.approx([0.5] * 12)
    # A kept tie keeps the drawing order: the first completion drawn is `chosen`.
    assert kept.pairs[0].chosen == completions[0][0]


def test_identical_completions_are_never_labelled(tiny_spec, tiny_encoder):
    prompt = questions()[0]
    same = Completion("Fine. Just rinse it and simmer for eighteen minutes.", (1, 2))
    other = Completion("Glad you asked. Maybe you could do the usual things.", (3, 4))

    result = label_completions(
        [_selector(tiny_spec, False)],
        tiny_encoder,
        [prompt],
        [[same, same, other]],
        LabellingSpec(ties="half"),
    )

    assert result.candidates == 3 and result.identical == 1
    assert len(result.pairs) == 2
