import numpy as np
import pytest
import torch

from privacy.secure_noise import NoiseSource
from protos.plan import BackboneSpec, DpSpec, LoraSpec, SelectorSpec, TrainingSpec
from selector.backbone import load_backbone
from selector.causal_lm import CausalLMSelector, choice_token_ids
from selector.checkpoint import load_selector, save_selector
from selector.choice_data import ChoiceEncoder
from selector.evaluation import agreement
from selector.model import adapter_state, build_encoder, build_selector, load_adapter_state
from silo.trainer import LocalTrainer
from tests.selector.selector_checks import (
    assert_per_sample_gradients_equal_per_pair_autograd,
    perturb_lora_b,
    scores_and_swapped,
)


@pytest.fixture(scope="module")
def causal_spec() -> SelectorSpec:
    """A 2-layer, 32-wide LLaMA-style LM with rank-4 LoRA on q_proj/v_proj."""
    return SelectorSpec(
        kind="causal_lm",
        backbone=BackboneSpec(kind="tiny_causal", seed=0),
        lora=LoraSpec(rank=4, alpha=8.0, target_modules=("q_proj", "v_proj")),
        max_tokens_per_answer=40,
    )


@pytest.fixture(scope="module")
def causal_encoder(causal_spec) -> ChoiceEncoder:
    return build_encoder(causal_spec)


def test_build_dispatches_on_the_selector_kind(causal_spec):
    model = build_selector(causal_spec, seed=0)
    assert isinstance(model, CausalLMSelector)
    assert isinstance(build_encoder(causal_spec), ChoiceEncoder)
    names = set(adapter_state(model))
    assert len(names) == 2 * 2 * 2  # layers x {q_proj, v_proj} x {A, B}: no head
    assert all("lora_A" in n or "lora_B" in n for n in names)
    assert all(".default" not in n for n in names)


def test_fresh_selector_reads_the_frozen_lm_choice_logits_averaged_over_both_orders(
    causal_spec, causal_encoder, tiny_dataset
):
    # Oracle: the plain LM on each unpadded prompt alone, logit("A") − logit("B") at its end.
    lm, tokenizer = load_backbone(causal_spec.backbone)
    token_a, token_b = choice_token_ids(tokenizer)
    batch = causal_encoder.encode(tiny_dataset["silo-1"].train[:3])
    expected = []
    with torch.no_grad():
        for row in range(len(batch)):
            margins = []
            for segment in (0, 1):
                ids = batch.input_ids[row][batch.segment_ids[row] == segment]
                logits = lm(input_ids=ids[None]).logits[0, -1]
                margins.append(logits[token_a] - logits[token_b])
            expected.append((margins[0] - margins[1]) / 2)
        got = build_selector(causal_spec, seed=0)(batch)
    torch.testing.assert_close(got, torch.stack(expected), atol=1e-5, rtol=1e-4)


def test_swapping_answers_negates_the_debiased_margin(causal_spec, causal_encoder, tiny_dataset):
    model = build_selector(causal_spec, seed=0)
    perturb_lora_b(model)
    pairs = tiny_dataset["silo-1"].train[:6]
    forward, backward = scores_and_swapped(model, causal_encoder, pairs)
    with torch.no_grad():
        alone = torch.cat([model(causal_encoder.encode([pair])) for pair in pairs])
    assert forward.abs().min() > 0
    torch.testing.assert_close(forward, -backward, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(forward, alone, atol=1e-6, rtol=1e-5)  # padding changes nothing


def test_opacus_per_sample_gradients_equal_per_pair_autograd(
    causal_spec, causal_encoder, tiny_dataset
):
    model = build_selector(causal_spec, seed=0)
    perturb_lora_b(model)
    batch = causal_encoder.encode(tiny_dataset["silo-1"].train[:4])
    assert_per_sample_gradients_equal_per_pair_autograd(model, batch, atol=1e-12)


def test_training_without_noise_beats_chance(causal_spec, causal_encoder, tiny_dataset):
    train = [pair for part in tiny_dataset.values() for pair in part.train]
    test = [pair for part in tiny_dataset.values() for pair in part.test]
    trainer = LocalTrainer(
        build_selector(causal_spec, 0),
        causal_encoder,
        train,
        DpSpec(clip_norm=10.0, expected_batch_size=16, allow_insecure_rng=True),
        TrainingSpec(local_steps=25, learning_rate=2e-2, optimizer="adam"),
        noise_multiplier=0.0,
        device=torch.device("cpu"),
        noise=NoiseSource(seed=0),
    )
    globals_ = adapter_state(build_selector(causal_spec, 0))
    delta = trainer.train_round(globals_, steps=25, release=0)
    model = build_selector(causal_spec, 0)
    load_adapter_state(model, {name: globals_[name] + delta[name] for name in globals_})
    assert agreement(model, causal_encoder, test) >= 0.7  # 0.81 with these seeds


def test_checkpoint_round_trips_a_causal_selector(
    causal_spec, causal_encoder, tiny_dataset, tmp_path
):
    source = build_selector(causal_spec, seed=0)
    perturb_lora_b(source)
    save_selector(tmp_path, causal_spec, adapter_state(source), {"rounds": 1})
    loaded, spec, meta = load_selector(tmp_path)
    assert spec == causal_spec and meta == {"rounds": 1}
    assert isinstance(loaded, CausalLMSelector)
    state = adapter_state(loaded)
    assert all(np.array_equal(state[n], v) for n, v in adapter_state(source).items())
    batch = causal_encoder.encode(tiny_dataset["silo-1"].test[:4])
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), source(batch))


def test_empty_batch_scores_nothing(causal_spec, causal_encoder):
    assert build_selector(causal_spec, seed=0)(causal_encoder.encode([])).shape == (0,)
