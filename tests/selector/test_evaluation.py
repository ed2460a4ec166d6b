import pytest

from protos.errors import InvalidInput
from selector.data import PreferencePair
from selector.evaluation import agreement
from selector.model import build_selector


def test_agreement_on_swapped_pairs_is_the_complement(tiny_spec, tiny_encoder, tiny_dataset):
    model = build_selector(tiny_spec, seed=0)
    pairs = tiny_dataset["silo-1"].test
    swapped = [PreferencePair(p.prompt, p.rejected, p.chosen) for p in pairs]
    score = agreement(model, tiny_encoder, pairs, batch_size=7)
    assert 0.0 <= score <= 1.0
    assert agreement(model, tiny_encoder, swapped) == pytest.approx(1.0 - score)
    assert not model.training


def test_agreement_of_no_pairs_is_refused(tiny_spec, tiny_encoder):
    with pytest.raises(InvalidInput):
        agreement(build_selector(tiny_spec, seed=0), tiny_encoder, [])
