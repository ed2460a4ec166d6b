import numpy as np
import pytest
import torch

from privacy.secure_noise import NoiseSource
from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import DpSpec, TrainingSpec
from selector.evaluation import agreement
from selector.model import adapter_state, build_selector, load_adapter_state
from silo.trainer import LocalTrainer

CPU = torch.device("cpu")
TRAINING = TrainingSpec(local_steps=3, learning_rate=1e-2, optimizer="adam")


def _trainer(spec, encoder, pairs, *, seed, noise=1.0, dp=None, training=TRAINING):
    """A seeded trainer (seed None: secure noise); seeding needs the plan's opt-in."""
    dp = dp or DpSpec(clip_norm=1.0, expected_batch_size=8, allow_insecure_rng=True)
    source = NoiseSource(seed, context="test-fed/silo-1")
    return LocalTrainer(build_selector(spec, 0), encoder, pairs, dp, training, noise, CPU, source)


def test_delta_has_the_adapter_state_layout(tiny_spec, tiny_encoder, tiny_dataset):
    trainer = _trainer(tiny_spec, tiny_encoder, tiny_dataset["silo-1"].train, seed=0)
    globals_ = adapter_state(build_selector(tiny_spec, 0))
    delta = trainer.train_round(globals_, steps=2, release=0)
    assert list(delta) == list(globals_)
    assert all(
        delta[n].shape == v.shape and delta[n].dtype == np.float32 for n, v in globals_.items()
    )
    assert all(np.any(delta[n] != 0) for n in delta)


def test_training_changes_only_the_adapters(tiny_spec, tiny_encoder, tiny_dataset):
    trainer = _trainer(tiny_spec, tiny_encoder, tiny_dataset["silo-1"].train, seed=0)
    trainable = set(trainer.model.trainable().values())
    frozen = {
        name: param.detach().clone()
        for name, param in trainer.model.named_parameters()
        if param not in trainable
    }
    trainer.train_round(adapter_state(trainer.model), steps=2, release=0)
    after = dict(trainer.model.named_parameters())
    assert all(torch.equal(after[name], value) for name, value in frozen.items())


def test_same_seed_gives_the_same_deltas_per_release(tiny_spec, tiny_encoder, tiny_dataset):
    pairs = tiny_dataset["silo-1"].train
    globals_ = adapter_state(build_selector(tiny_spec, 0))
    first = _trainer(tiny_spec, tiny_encoder, pairs, seed=42)
    second = _trainer(tiny_spec, tiny_encoder, pairs, seed=42)  # e.g. the silo restarted
    other = _trainer(tiny_spec, tiny_encoder, pairs, seed=43)
    for release in range(2):
        a, b, c = (t.train_round(globals_, 2, release=release) for t in (first, second, other))
        assert all(np.array_equal(a[n], b[n]) for n in a)
        assert not all(np.array_equal(a[n], c[n]) for n in a)
    # The next release (ledger seq) draws fresh samples and noise: it replays no earlier one.
    again = first.train_round(globals_, steps=2, release=2)
    assert not all(np.array_equal(again[n], a[n]) for n in a)


def test_two_unseeded_runs_never_share_a_noise_stream(tiny_spec, tiny_encoder, tiny_dataset):
    pairs = tiny_dataset["silo-1"].train
    globals_ = adapter_state(build_selector(tiny_spec, 0))
    # The same release of two secure trainers (two runs of one silo): keys from os.urandom.
    runs = [_trainer(tiny_spec, tiny_encoder, pairs, seed=None) for _ in range(2)]
    a, b = (run.train_round(globals_, steps=2, release=0) for run in runs)
    assert all(run.secure_rng for run in runs)
    assert not any(np.array_equal(a[n], b[n]) for n in a)


def test_empty_poisson_batches_still_step_with_noise(tiny_spec, tiny_encoder, tiny_dataset):
    # q = 1/64: most batches are empty
    dp = DpSpec(clip_norm=1.0, expected_batch_size=1, allow_insecure_rng=True)
    sgd = TrainingSpec(local_steps=6, learning_rate=0.1, optimizer="sgd")
    trainer = _trainer(
        tiny_spec, tiny_encoder, tiny_dataset["silo-1"].train, seed=3, dp=dp, training=sgd
    )
    forwards = []
    trainer.model.register_forward_hook(lambda module, args, out: forwards.append(len(out)))
    delta = trainer.train_round(adapter_state(trainer.model), steps=6, release=0)
    assert len(forwards) < 6  # at least one step had an empty batch
    assert all(np.isfinite(v).all() and np.any(v != 0) for v in delta.values())


def test_dp_event_describes_the_round(tiny_spec, tiny_encoder, tiny_dataset):
    trainer = _trainer(tiny_spec, tiny_encoder, tiny_dataset["silo-1"].train, seed=0, noise=1.3)
    assert trainer.sample_rate == 8 / 64
    event = trainer.dp_event(5)
    assert (event.mechanism, event.noise_multiplier, event.sample_rate, event.steps) == (
        "dp_sgd",
        1.3,
        0.125,
        5,
    )
    assert trainer.secure_rng is False  # seeded


def test_plans_the_silo_cannot_honour_are_refused(tiny_spec, tiny_encoder, tiny_dataset):
    pairs = tiny_dataset["silo-1"].train
    with pytest.raises(FailedPrecondition, match="allow_insecure_rng"):
        _trainer(tiny_spec, tiny_encoder, pairs, seed=0, dp=DpSpec())  # seeded, not allowed
    assert _trainer(tiny_spec, tiny_encoder, pairs, seed=None, dp=DpSpec()).secure_rng
    with pytest.raises(InvalidInput, match="exceeds the silo's 64 training pairs"):
        _trainer(tiny_spec, tiny_encoder, pairs, seed=None, dp=DpSpec(expected_batch_size=65))


def test_federated_rounds_without_noise_beat_chance(tiny_spec, tiny_encoder, tiny_dataset):
    dp = DpSpec(clip_norm=10.0, expected_batch_size=16, allow_insecure_rng=True)
    trainers = [
        _trainer(tiny_spec, tiny_encoder, part.train, seed=i, noise=0.0, dp=dp)
        for i, part in enumerate(tiny_dataset.values())
    ]
    test = [pair for part in tiny_dataset.values() for pair in part.test]
    globals_ = adapter_state(build_selector(tiny_spec, 0))
    for r in range(3):
        deltas = [trainer.train_round(globals_, steps=10, release=r) for trainer in trainers]
        globals_ = {n: v + np.mean([d[n] for d in deltas], axis=0) for n, v in globals_.items()}
    model = build_selector(tiny_spec, 0)
    load_adapter_state(model, globals_)
    assert agreement(model, tiny_encoder, test) >= 0.7


def test_dp_sgd_batches_are_poisson_samples_at_the_recorded_rate(
    tiny_spec, tiny_encoder, tiny_dataset
):
    # Each pair joins each batch independently with probability q = 8 / 64: batch sizes are
    # Binomial(64, q) (mean 8, variance 7, empty batches possible), never a fixed 8.
    pairs = tiny_dataset["silo-1"].train
    trainer = _trainer(tiny_spec, tiny_encoder, pairs, seed=11)
    steps = 4000

    batches = trainer.poisson_batches(steps, release=0)

    q = 8 / len(pairs)
    assert trainer.sample_rate == trainer.dp_event(steps).sample_rate == q
    sizes = np.array([len(rows) for rows in batches])
    assert sizes.mean() == pytest.approx(8, abs=0.2)  # ~5 standard errors
    assert sizes.var() == pytest.approx(len(pairs) * q * (1 - q), rel=0.15)
    assert (sizes == 0).any()
    inclusion = np.zeros(len(pairs))
    for rows in batches:
        assert len(set(rows)) == len(rows)  # without replacement within a batch
        inclusion[rows] += 1
    assert np.allclose(inclusion / steps, q, atol=0.03)  # every pair, at the same rate


def test_training_steps_on_exactly_the_poisson_batches(tiny_spec, tiny_encoder, tiny_dataset):
    pairs = tiny_dataset["silo-1"].train
    sampler, trainer = (_trainer(tiny_spec, tiny_encoder, pairs, seed=5) for _ in range(2))
    forwards: list[int] = []
    trainer.model.register_forward_hook(lambda module, args, out: forwards.append(len(out)))

    trainer.train_round(adapter_state(trainer.model), steps=12, release=3)

    assert forwards == [len(rows) for rows in sampler.poisson_batches(12, release=3) if rows]


def test_physical_batches_give_the_update_of_one_logical_batch(
    tiny_spec, tiny_encoder, tiny_dataset
):
    """A large expected batch computed a few pairs at a time (memory-bounded) is the same
    DP-SGD step: clipped per-pair gradients summed over the whole Poisson batch."""
    pairs = tiny_dataset["silo-1"].train
    dp = DpSpec(expected_batch_size=len(pairs) // 2, clip_norm=0.5, allow_insecure_rng=True)
    training = TrainingSpec(local_steps=2, learning_rate=0.1, optimizer="sgd")
    state = adapter_state(build_selector(tiny_spec, 0))
    deltas = []
    for physical in (len(pairs), 3):
        trainer = LocalTrainer(
            build_selector(tiny_spec, 0),
            tiny_encoder,
            pairs,
            dp,
            training,
            0.0,
            CPU,
            NoiseSource(7, context="test-fed/silo-1"),
            physical_batch_size=physical,
        )
        deltas.append(trainer.train_round(state, 2, release=0))
    for name in deltas[0]:
        np.testing.assert_allclose(deltas[0][name], deltas[1][name], rtol=1e-4, atol=1e-6)
    assert any(np.abs(delta).max() > 0 for delta in deltas[0].values())
