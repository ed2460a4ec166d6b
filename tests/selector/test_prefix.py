"""A selector whose bottom layers are frozen scores (and trains) the same from their kept
outputs as from the raw pairs: the cache changes the work, never the numbers."""

import numpy as np
import pytest
import torch

import selector.prefix
from privacy.secure_noise import NoiseSource
from protos.plan import BackboneSpec, DpSpec, LoraSpec, SelectorSpec, TrainingSpec
from selector.data import PairBatch, PrefixBatch
from selector.model import adapter_state, build_selector
from selector.prefix import shares_frozen_prefix, with_frozen_prefix
from selector.vote import selector_logits
from silo.trainer import LocalTrainer

CPU = torch.device("cpu")


def _spec(targets: tuple[str, ...], seed: int = 0) -> SelectorSpec:
    return SelectorSpec(
        backbone=BackboneSpec(kind="tiny", seed=seed),
        lora=LoraSpec(rank=4, alpha=8.0, target_modules=targets),
        max_tokens_per_answer=40,
    )


TOP_LAYER = _spec(("layer.1.attention.self.query", "layer.1.attention.self.value"))


def _randomised(spec: SelectorSpec, seed: int):
    """A selector whose adapters are not the identity (LoRA B starts at zero)."""
    model = build_selector(spec, 0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.trainable().values():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model


def test_only_layers_without_adapters_count_as_frozen(tiny_spec):
    assert build_selector(tiny_spec, 0).frozen_layers == 0  # adapters in every layer
    assert build_selector(TOP_LAYER, 0).frozen_layers == 1


@pytest.mark.parametrize("training", [False, True])
def test_kept_outputs_give_the_very_same_logits(tiny_encoder, tiny_dataset, training):
    model = _randomised(TOP_LAYER, seed=1)
    batch = tiny_encoder.encode(tiny_dataset["silo-1"].train[:24])
    prefix = model.encode_prefix(batch)
    model.train(training)
    assert torch.equal(model(prefix), model(batch))
    assert model.training is training  # encode_prefix restores the mode it found


def test_nothing_is_kept_when_nothing_is_frozen_or_it_would_not_fit(
    tiny_spec, tiny_encoder, tiny_dataset, monkeypatch
):
    batch = tiny_encoder.encode(tiny_dataset["silo-1"].train[:8])
    assert with_frozen_prefix(build_selector(tiny_spec, 0), batch, CPU) is batch
    assert isinstance(with_frozen_prefix(build_selector(TOP_LAYER, 0), batch, CPU), PrefixBatch)
    monkeypatch.setattr(selector.prefix, "PREFIX_CACHE_LIMIT_BYTES", 1024)
    assert with_frozen_prefix(build_selector(TOP_LAYER, 0), batch, CPU) is batch


def _trainer(pairs, encoder, seed: int) -> LocalTrainer:
    dp = DpSpec(clip_norm=1.0, expected_batch_size=8, allow_insecure_rng=True)
    training = TrainingSpec(local_steps=3, learning_rate=0.5, optimizer="sgd")
    return LocalTrainer(
        build_selector(TOP_LAYER, 0),
        encoder,
        pairs,
        dp,
        training,
        1.0,
        CPU,
        NoiseSource(seed, context="test-fed/silo-1"),
        physical_batch_size=4,  # several chunks per logical batch
    )


def test_a_trainer_with_kept_outputs_releases_the_same_deltas_and_losses(
    tiny_encoder, tiny_dataset, monkeypatch
):
    pairs = tiny_dataset["silo-1"].train
    globals_ = adapter_state(_randomised(TOP_LAYER, seed=2))
    kept = _trainer(pairs, tiny_encoder, seed=7)
    monkeypatch.setattr(selector.prefix, "PREFIX_CACHE_LIMIT_BYTES", 0)
    recomputed = _trainer(pairs, tiny_encoder, seed=7)
    assert isinstance(kept._examples, PrefixBatch)
    assert isinstance(recomputed._examples, PairBatch)
    for release in range(2):
        a = kept.train_round(globals_, 3, release=release)
        b = recomputed.train_round(globals_, 3, release=release)
        assert all(np.any(a[name] != 0) for name in a)
        assert all(np.array_equal(a[name], b[name]) for name in a)
    rows = list(range(0, 64, 3))
    np.testing.assert_array_equal(
        kept.example_losses(globals_, rows), recomputed.example_losses(globals_, rows)
    )


def test_selectors_over_one_backbone_share_its_layers_and_score_as_alone(
    tiny_encoder, tiny_dataset
):
    pairs = tiny_dataset["silo-2"].test
    models = [_randomised(TOP_LAYER, seed=k) for k in range(3)]
    assert shares_frozen_prefix(models)
    together = selector_logits(models, tiny_encoder, pairs, batch_size=10)
    for row, model in zip(together, models, strict=True):
        # Compared chunk by chunk: a chunk's padding width (its longest pair) moves the floats.
        alone = [model(tiny_encoder.encode(pairs[i : i + 10])) for i in range(0, len(pairs), 10)]
        assert torch.equal(row, torch.cat(alone))


def test_selectors_over_different_backbones_do_not_share(tiny_encoder, tiny_dataset, tiny_spec):
    other_backbone = _spec(TOP_LAYER.lora.target_modules, seed=1)
    mixed = [_randomised(TOP_LAYER, 0), _randomised(other_backbone, 1)]
    assert not shares_frozen_prefix(mixed)
    assert not shares_frozen_prefix([_randomised(TOP_LAYER, 0), build_selector(tiny_spec, 0)])
    pairs = tiny_dataset["silo-1"].test
    together = selector_logits(mixed, tiny_encoder, pairs, batch_size=len(pairs))
    for row, model in zip(together, mixed, strict=True):
        assert torch.equal(row, model(tiny_encoder.encode(pairs)))
