"""Whole SecAgg+ rounds: exact sums, dropouts at every phase, and clean aborts."""

from __future__ import annotations

import numpy as np
import pytest

from privacy.secagg import MEDIUM, SMALL, EncodingParams, SecAggAborted, SecAggParams, quantize
from tests.privacy.secagg.harness import Federation, Round

DETERMINISTIC_MEDIUM = MEDIUM.model_copy(
    update={"encoding": EncodingParams.fit(1.0, 64, rounding="deterministic")}
)


def _updates(ids: list[str], length: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Some coordinates beyond the clip so clipping is exercised too.
    return {s: (rng.standard_normal(length) * 0.7).astype(np.float32) for s in ids}


def _expected(params: SecAggParams, updates: dict[str, np.ndarray], silos) -> np.ndarray:
    total = sum(quantize(updates[s], params.encoding) for s in silos)
    return np.asarray(total, dtype=np.float64) / params.encoding.scale


@pytest.mark.parametrize(
    ("params", "silos", "length"),
    [
        (
            SMALL.model_copy(
                update={"encoding": EncodingParams.fit(1.0, 16, rounding="deterministic")}
            ),
            3,
            1,
        ),
        (DETERMINISTIC_MEDIUM, 5, 1001),  # complete graph, odd size
        (DETERMINISTIC_MEDIUM, 12, 4097),  # 8-regular, t = 5
        (DETERMINISTIC_MEDIUM.model_copy(update={"degree": 4}), 9, 333),  # 4-regular, t = 3
        (DETERMINISTIC_MEDIUM.model_copy(update={"threshold_fraction": 1.0}), 10, 64),
    ],
)
def test_unmasked_sum_equals_sum_of_quantized_updates(
    federation: Federation, params: SecAggParams, silos: int, length: int
) -> None:
    ids = federation.ids(silos)
    updates = _updates(ids, length)
    result = Round(federation, params, ids, length).run(updates)
    assert result.silos == tuple(ids)
    np.testing.assert_array_equal(result.total, _expected(params, updates, ids))


def test_stochastic_rounding_is_exact_on_the_grid_for_a_million_coordinates(
    federation: Federation,
) -> None:
    ids = federation.ids(3)
    scale = SMALL.encoding.scale
    rng = np.random.default_rng(1)
    updates = {s: np.round(rng.uniform(-1, 1, 1_000_000) * 2**12) / 2**12 for s in ids}
    result = Round(federation, SMALL, ids, 1_000_000).run(updates)
    expected = sum(np.round(updates[s] * scale) for s in ids) / scale
    np.testing.assert_array_equal(result.total, expected)


def test_stochastic_rounding_stays_within_one_level_per_silo(federation: Federation) -> None:
    ids = federation.ids(6)
    updates = _updates(ids, 2001, seed=3)
    result = Round(federation, MEDIUM, ids, 2001).run(updates)
    clipped = sum(np.clip(updates[s].astype(np.float64), -1, 1) for s in ids)
    assert np.abs(result.total - clipped).max() <= len(ids) / MEDIUM.encoding.scale


@pytest.mark.parametrize("phase", ["advertise", "share", "mask", "sign", "unmask"])
def test_round_completes_with_dropouts_at_each_phase(federation: Federation, phase: str) -> None:
    ids = federation.ids(12)
    dropped = {ids[1], ids[6]}
    updates = _updates(ids, 513, seed=2)
    result = Round(federation, DETERMINISTIC_MEDIUM, ids, 513).run(updates, {phase: dropped})
    # Dropping before the masked upload removes the silo from the sum; after it, it stays.
    contributors = (
        [s for s in ids if s not in dropped] if phase in ("advertise", "share", "mask") else ids
    )
    assert result.silos == tuple(contributors)
    np.testing.assert_array_equal(
        result.total, _expected(DETERMINISTIC_MEDIUM, updates, contributors)
    )


def test_round_completes_with_dropouts_in_several_phases(federation: Federation) -> None:
    ids = federation.ids(16)
    updates = _updates(ids, 99, seed=4)
    drops = {"advertise": {ids[0]}, "share": {ids[5]}, "mask": {ids[9]}, "unmask": {ids[13]}}
    result = Round(federation, DETERMINISTIC_MEDIUM, ids, 99).run(updates, drops)
    contributors = [s for s in ids if s not in {ids[0], ids[5], ids[9]}]
    np.testing.assert_array_equal(
        result.total, _expected(DETERMINISTIC_MEDIUM, updates, contributors)
    )


def test_too_many_dropouts_after_sharing_abort_before_anything_is_revealed(
    federation: Federation,
) -> None:
    ids = federation.ids(6)  # complete graph of 6: 5 neighbours, threshold 3
    rnd = Round(federation, MEDIUM, ids, 10)
    deliveries = rnd.share(rnd.advertise())
    with pytest.raises(SecAggAborted, match="live neighbours"):
        rnd.mask(deliveries, _updates(ids, 10), drop=ids[:3])
    with pytest.raises(SecAggAborted):
        rnd.server.close_consistency()


def test_too_few_unmask_responses_abort(federation: Federation) -> None:
    ids = federation.ids(6)
    rnd = Round(federation, MEDIUM, ids, 10)
    request = rnd.sign(rnd.mask(rnd.share(rnd.advertise()), _updates(ids, 10)))
    with pytest.raises(SecAggAborted, match="too few unmask responses"):
        rnd.unmask(request, drop=ids[:4])


def test_round_below_the_plans_minimum_aborts(federation: Federation) -> None:
    ids = federation.ids(4)
    rnd = Round(federation, MEDIUM, ids, 10)
    with pytest.raises(SecAggAborted, match="minimum"):
        rnd.advertise(drop=ids[:2])


def test_more_silos_than_the_encoding_can_sum_are_refused(federation: Federation) -> None:
    params = SecAggParams(
        encoding=EncodingParams.fit(1.0, 4), degree=None, threshold_fraction=0.6, min_silos=3
    )
    ids = federation.ids(5)
    with pytest.raises(SecAggAborted, match="more than"):
        Round(federation, params, ids, 10).advertise()
