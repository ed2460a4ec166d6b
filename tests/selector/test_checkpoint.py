import json

import numpy as np
import pytest
import torch

from protos.errors import InvalidInput
from selector.checkpoint import (
    ADAPTERS_FILE,
    SPEC_FILE,
    load_selector,
    load_selector_set,
    save_selector,
    save_selector_set,
)
from selector.model import adapter_state, build_selector, load_adapter_state


def _trained_state(spec):
    model = build_selector(spec, seed=5)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.trainable().values():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return adapter_state(model)


def test_saved_selector_loads_with_identical_scores(
    tmp_path, tiny_spec, tiny_encoder, tiny_dataset
):
    state = _trained_state(tiny_spec)
    save_selector(tmp_path / "sel", tiny_spec, state, {"federation": "test-fed", "rounds": 2})
    model, spec, meta = load_selector(tmp_path / "sel")
    assert spec == tiny_spec
    assert meta == {"federation": "test-fed", "rounds": 2}
    loaded = adapter_state(model)
    assert all(np.array_equal(loaded[name], value) for name, value in state.items())
    original = build_selector(tiny_spec, seed=0)
    load_adapter_state(original, state)
    batch = tiny_encoder.encode(tiny_dataset["silo-1"].test[:4])
    with torch.no_grad():
        torch.testing.assert_close(model(batch), original(batch))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda doc: doc.update(version=2), "version 2 unsupported"),
        (lambda doc: doc.update(format="other"), "not a fedbiscuit-selector file"),
        (lambda doc: doc["spec"]["lora"].update(rank=0), "spec.lora.rank"),
        (lambda doc: doc["spec"]["lora"].update(rank=8), "shape"),
        (lambda doc: doc.update(extra=1), "unknown field 'extra'"),
    ],
)
def test_tampered_selector_json_is_refused(tmp_path, tiny_spec, edit, message):
    save_selector(tmp_path, tiny_spec, _trained_state(tiny_spec), {})
    path = tmp_path / SPEC_FILE
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    with pytest.raises(InvalidInput, match=message):
        load_selector(tmp_path)


def test_missing_or_corrupt_adapters_are_refused(tmp_path, tiny_spec):
    save_selector(tmp_path, tiny_spec, _trained_state(tiny_spec), {})
    (tmp_path / ADAPTERS_FILE).write_bytes(b"garbage")
    with pytest.raises(InvalidInput, match="unreadable safetensors"):
        load_selector(tmp_path)
    (tmp_path / ADAPTERS_FILE).unlink()
    with pytest.raises(InvalidInput, match="missing"):
        load_selector(tmp_path)


def test_a_selector_set_round_trips_with_its_clusters(tmp_path, tiny_spec):
    spec = tiny_spec
    states = [adapter_state(build_selector(spec, seed=k)) for k in range(3)]
    save_selector_set(tmp_path / "set", spec, states, {"silo-2": 1, "silo-1": 0}, {"rounds": 4})

    models, loaded_spec, clusters, meta = load_selector_set(tmp_path / "set")

    assert loaded_spec == spec and clusters == {"silo-1": 0, "silo-2": 1}
    assert meta == {"rounds": 4} and len(models) == 3
    for model, state in zip(models, states, strict=True):
        for name, value in adapter_state(model).items():
            np.testing.assert_array_equal(value, state[name])


def test_a_single_selector_loads_as_a_set_of_one(tmp_path, tiny_spec):
    spec = tiny_spec
    save_selector(tmp_path / "one", spec, adapter_state(build_selector(spec, seed=0)), {})

    models, _, clusters, _ = load_selector_set(tmp_path / "one")

    assert len(models) == 1 and clusters == {}
