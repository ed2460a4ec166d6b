import numpy as np
import pytest
import torch

from protos.errors import InvalidInput
from protos.plan import BackboneSpec, SelectorSpec
from selector.backbone import load_backbone
from selector.data import PairEncoder
from selector.model import adapter_state, build_selector, load_adapter_state
from tests.selector.selector_checks import (
    assert_per_sample_gradients_equal_per_pair_autograd,
    perturb_lora_b,
    scores_and_swapped,
)


def test_same_seed_builds_identical_adapters(tiny_spec):
    first = adapter_state(build_selector(tiny_spec, seed=7))
    second = adapter_state(build_selector(tiny_spec, seed=7))
    other = adapter_state(build_selector(tiny_spec, seed=8))
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[name], second[name]) for name in first)
    lora_a = next(name for name in first if "lora_A" in name)
    assert not np.array_equal(first[lora_a], other[lora_a])


def test_only_adapters_and_head_train_under_stable_names(tiny_spec):
    model = build_selector(tiny_spec, seed=0)
    names = set(adapter_state(model))
    assert names == {
        n.replace(".default", "") for n, p in model.named_parameters() if p.requires_grad
    }
    assert "head.weight" in names
    assert all(".default" not in name for name in names)
    assert all("lora_A" in n or "lora_B" in n or n.startswith("head.") for n in names)
    assert len([n for n in names if "lora_" in n]) == 2 * 2 * 2  # layers x {q, v} x {A, B}
    assert all(value.dtype == np.float32 for value in adapter_state(model).values())


def test_swapping_answers_negates_the_score(tiny_spec, tiny_encoder, tiny_dataset):
    model = build_selector(tiny_spec, seed=0)
    perturb_lora_b(model)
    pairs = tiny_dataset["silo-1"].train[:6]
    forward, backward = scores_and_swapped(model, tiny_encoder, pairs)
    torch.testing.assert_close(forward, -backward, atol=1e-5, rtol=1e-5)


def test_score_of_a_pair_does_not_depend_on_its_batch(tiny_spec, tiny_encoder, tiny_dataset):
    model = build_selector(tiny_spec, seed=0)
    perturb_lora_b(model)
    pairs = tiny_dataset["silo-1"].train[:8]
    with torch.no_grad():
        together = model(tiny_encoder.encode(pairs))
        alone = torch.cat([model(tiny_encoder.encode([pair])) for pair in pairs])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_opacus_per_sample_gradients_equal_per_pair_autograd(tiny_spec, tiny_encoder, tiny_dataset):
    model = build_selector(tiny_spec, seed=0)
    perturb_lora_b(model)
    batch = tiny_encoder.encode(tiny_dataset["silo-1"].train[:5])
    assert_per_sample_gradients_equal_per_pair_autograd(model, batch, atol=1e-9)


def test_load_adapter_state_round_trips(tiny_spec):
    source = build_selector(tiny_spec, seed=1)
    target = build_selector(tiny_spec, seed=2)
    load_adapter_state(target, adapter_state(source))
    state = adapter_state(target)
    assert all(np.array_equal(state[n], v) for n, v in adapter_state(source).items())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.pop("head.weight"), "lacks tensor 'head.weight'"),
        (lambda s: s.update(extra=np.zeros(1, np.float32)), "unexpected tensor 'extra'"),
        (
            lambda s: s.update({"head.weight": np.zeros((1, 3), np.float32)}),
            "'head.weight' has shape",
        ),
        (
            lambda s: s.update({"head.weight": np.zeros((1, 32), np.float64)}),
            "'head.weight' must be a float32",
        ),
        (
            lambda s: s.update({"head.weight": np.full((1, 32), np.nan, np.float32)}),
            "'head.weight' contains NaN",
        ),
    ],
)
def test_load_adapter_state_rejects_mismatches_naming_the_tensor(tiny_spec, mutate, message):
    model = build_selector(tiny_spec, seed=0)
    before = adapter_state(model)
    state = adapter_state(build_selector(tiny_spec, seed=3))
    mutate(state)
    with pytest.raises(InvalidInput, match=message):
        load_adapter_state(model, state)
    after = adapter_state(model)
    assert all(np.array_equal(before[n], after[n]) for n in before)


def test_empty_batch_scores_nothing(tiny_spec, tiny_encoder):
    model = build_selector(tiny_spec, seed=0)
    assert model(tiny_encoder.encode([])).shape == (0,)


def test_minilm_selector_scores_pairs(tiny_dataset):
    spec = SelectorSpec(backbone=BackboneSpec(kind="minilm"))
    model = build_selector(spec, seed=0)
    _, tokenizer = load_backbone(spec.backbone)
    assert model.backbone.config.hidden_size == 384
    with torch.no_grad():
        scores = model(PairEncoder(tokenizer, 48).encode(tiny_dataset["silo-1"].test[:3]))
    assert scores.shape == (3,) and torch.isfinite(scores).all()
