"""The CSPRNG Gaussian sampler: its distribution, its streams and its snapped releases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from privacy.secure_noise import GRID_BITS, NoiseSource, RandomStream, snap, snapping_grid
from protos.errors import InvalidInput

SAMPLES = 1 << 20


@pytest.fixture(scope="module")
def normals() -> np.ndarray:
    return NoiseSource(seed=1, context="moments").stream(0, "test").gaussians(SAMPLES).numpy()


def test_moments_match_the_standard_gaussian(normals):
    # Standard errors at n = 2^20: mean 0.001, variance 0.0014, skew 0.0024, kurtosis 0.0048.
    assert abs(normals.mean()) < 0.005
    assert normals.var() == pytest.approx(1.0, abs=0.007)
    assert abs(stats.skew(normals)) < 0.012
    assert abs(stats.kurtosis(normals)) < 0.024
    assert stats.kstest(normals, "norm").pvalue > 1e-3


@pytest.mark.parametrize("threshold", [2.0, 3.0, 4.0])
def test_two_sided_tails_match_the_gaussian(normals, threshold):
    expected = 2 * stats.norm.sf(threshold) * SAMPLES
    observed = np.count_nonzero(np.abs(normals) > threshold)
    assert abs(observed - expected) < 5 * math.sqrt(expected)  # Poisson: 5 standard errors


def test_the_radius_uses_64_bits_so_the_tails_reach_past_nine_sigma():
    # The smallest 64-bit radius uniform, 2^-65, gives the largest radius sqrt(130 ln 2).
    assert math.sqrt(-2 * math.log(0.5 * 2.0**-64)) > 9.4
    normals = NoiseSource(seed=2).stream(0, "tail").gaussians(1001)
    assert normals.dtype == torch.float64 and normals.shape == (1001,)


def test_a_seeded_stream_is_reproducible_and_unique_per_release_and_purpose():
    source = NoiseSource(seed=7, context="fed/silo-1")
    draw = lambda s, release, purpose: s.stream(release, purpose).words(4).tolist()  # noqa: E731
    assert draw(source, 3, "noise") == draw(NoiseSource(seed=7, context="fed/silo-1"), 3, "noise")
    others = [
        draw(source, 4, "noise"),
        draw(source, 3, "sampling"),
        draw(NoiseSource(seed=8, context="fed/silo-1"), 3, "noise"),
        draw(NoiseSource(seed=7, context="fed/silo-2"), 3, "noise"),
    ]
    assert all(other != draw(source, 3, "noise") for other in others)
    assert not source.secure


def test_secure_streams_never_repeat_even_for_the_same_release():
    source = NoiseSource()
    first, second = (source.stream(0, "noise").words(4).tolist() for _ in range(2))
    assert source.secure and first != second


def test_draws_from_one_stream_never_overlap():
    stream = RandomStream(bytes(32))
    assert stream.words(2).tolist() != stream.words(2).tolist()
    with pytest.raises(InvalidInput, match="32 bytes"):
        RandomStream(bytes(16))


def test_poisson_rows_include_each_row_at_the_rate():
    stream = NoiseSource(seed=3).stream(0, "sampling")
    counts = np.zeros(50)
    for _ in range(2000):
        counts[stream.poisson_rows(50, 0.2)] += 1
    assert np.allclose(counts / 2000, 0.2, atol=0.05)


def test_a_snapped_release_lies_on_a_power_of_two_grid_finer_than_the_noise():
    std = 0.3
    values = torch.linspace(-5, 5, 1001, dtype=torch.float32)
    normals = NoiseSource(seed=4).stream(0, "snap").gaussians(values.numel())
    released = snap(values, std, normals)
    grid = snapping_grid(std)
    assert grid == 2.0 ** (math.ceil(math.log2(std)) - GRID_BITS)
    assert std / 2**GRID_BITS <= grid < 2 * std / 2**GRID_BITS
    assert torch.equal(released, torch.round(released / grid) * grid)
    noise = (released - values.double()).numpy()
    assert np.abs(noise - std * normals.numpy()).max() <= grid / 2 + 1e-12
    with pytest.raises(InvalidInput):
        snapping_grid(0.0)
