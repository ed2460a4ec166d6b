"""K-slot uploads: one secure sum over all silos gives exactly the per-cluster globals."""

from __future__ import annotations

import numpy as np
import pytest

from aggregator.rounds.fedavg import add_summed_deltas
from privacy.balanced_assignment import cluster_members, cluster_sizes, optimal_assignment
from privacy.he import decrypt_update, encrypt_update, generate_secret_context, sum_encrypted
from privacy.membership import CkksSlotLayout, KSlotLayout
from privacy.secagg import SMALL
from protos.errors import InvalidInput
from tests.privacy.secagg.harness import Federation, Round

DIM = 257
MIN_CLUSTER_SILOS = 3


def _on_grid_deltas(ids: list[str], seed: int) -> dict[str, np.ndarray]:
    """DP deltas on a 2**-12 grid (finer than any preset's), some beyond the clip."""
    rng = np.random.default_rng(seed)
    return {s: np.round(rng.normal(0, 0.6, DIM) * 2**12) / 2**12 for s in ids}


def _next_globals(globals_k: np.ndarray, total, count: int, size: int) -> np.ndarray:
    """The coordinator's masked rule: unchanged below the minimum, else aggregate on model."""
    if count < MIN_CLUSTER_SILOS:
        return globals_k
    return add_summed_deltas(globals_k, total, max(size, count))


@pytest.mark.parametrize(
    ("silos", "clusters", "dropped"),
    [(7, 2, 0), (10, 3, 0), (11, 3, 1)],  # sizes 4+3, 4+3+3, 4+4+3 with a dropout
)
def test_hidden_mode_gives_exactly_the_per_cluster_masking_globals(
    federation: Federation, silos: int, clusters: int, dropped: int
) -> None:
    ids = federation.ids(silos)
    rng = np.random.default_rng(silos)
    assignment = optimal_assignment(rng.normal(0.7, 0.2, (silos, clusters)))
    members = [[ids[i] for i in rows] for rows in cluster_members(assignment, clusters)]
    sizes = tuple(cluster_sizes(assignment, clusters))
    deltas = _on_grid_deltas(ids, seed=silos)
    globals_ = [rng.normal(0, 0.1, DIM).astype(np.float32) for _ in range(clusters)]
    # A silo of the largest cluster vanishes after sharing keys, in both modes.
    gone = [max(members, key=len)[0]] if dropped else []

    visible = []
    for k, cluster in enumerate(members):
        result = Round(federation, SMALL, cluster, DIM, seed=k).run(
            {s: deltas[s] for s in cluster}, {"mask": [s for s in gone if s in cluster]}
        )
        visible.append(_next_globals(globals_[k], result.total, len(result.silos), sizes[k]))

    layout = KSlotLayout.for_encoding(DIM, clusters, SMALL.encoding)
    uploads = {s: layout.encode(deltas[s], assignment[i], sizes) for i, s in enumerate(ids)}
    assert {u.size for u in uploads.values()} == {layout.length}
    result = Round(federation, SMALL, ids, layout.length, seed=99).run(uploads, {"mask": gone})
    decoded = layout.decode(result.total)
    assert decoded.sizes == sizes
    assert sum(decoded.counts) == silos - dropped
    hidden = [
        _next_globals(globals_[k], decoded.sums[k], decoded.counts[k], decoded.sizes[k])
        for k in range(clusters)
    ]
    for k in range(clusters):
        np.testing.assert_array_equal(hidden[k], visible[k])
        assert not np.array_equal(hidden[k], globals_[k])


def test_every_silos_masked_upload_has_the_same_size(federation: Federation) -> None:
    ids = federation.ids(6)
    layout = KSlotLayout.for_encoding(DIM, 2, SMALL.encoding)
    deltas = _on_grid_deltas(ids, seed=0)
    uploads = {s: layout.encode(deltas[s], i % 2, (3, 3)) for i, s in enumerate(ids)}
    round_ = Round(federation, SMALL, ids, layout.length)
    deliveries = round_.share(round_.advertise())
    masked = {s: round_.clients[s].mask(deliveries[s], uploads[s]).vector for s in ids}
    assert {(v.dtype, v.nbytes) for v in masked.values()} == {
        (SMALL.encoding.dtype, layout.length * 4)
    }


def test_a_sum_with_disagreeing_sizes_or_fractional_counts_is_refused() -> None:
    layout = KSlotLayout.for_encoding(4, 2, SMALL.encoding)
    ones = np.ones(4)
    agreed = layout.encode(ones, 0, (2, 1)) + layout.encode(ones, 1, (2, 1))
    assert layout.decode(agreed).counts == (1, 1)
    liar = layout.encode(ones, 0, (2, 1)) + layout.encode(ones, 1, (1, 2))
    with pytest.raises(InvalidInput, match="sizes"):
        layout.decode(liar)
    half = agreed.copy()
    half[8] = 0.5
    with pytest.raises(InvalidInput, match="count"):
        layout.decode(half)
    with pytest.raises(InvalidInput, match="exceed"):
        layout.decode(layout.encode(ones, 0, (2, 1)) + layout.encode(ones, 1, (2, 1)) * 2)


def test_ckks_k_slots_add_onto_each_clusters_encrypted_global() -> None:
    ctx = generate_secret_context("ckks-add-4096")
    layout = CkksSlotLayout(3000, 3)
    rng = np.random.default_rng(0)
    deltas = [rng.normal(0, 0.05, 3000) for _ in range(5)]
    clusters = [0, 2, 2, 1, 0]
    sizes = [clusters.count(k) for k in range(3)]
    globals_ = [rng.normal(0, 0.1, 3000).astype(np.float32) for _ in range(3)]
    uploads = [  # each silo: K encrypted slots, 1/N_cluster times its delta in its own
        [
            encrypt_update(ctx, slot, weight=1.0, max_silos=6)
            for slot in layout.encode(d / sizes[k], k)
        ]
        for d, k in zip(deltas, clusters, strict=True)
    ]
    assert len({tuple(v.manifest.count for v in upload) for upload in uploads}) == 1
    for k in range(3):
        encrypted_global = encrypt_update(ctx, globals_[k], weight=1.0, max_silos=6)
        total = sum_encrypted(ctx, [encrypted_global, *(upload[k] for upload in uploads)])
        members = [d for d, c in zip(deltas, clusters, strict=True) if c == k]
        expected = globals_[k] + sum(members) / sizes[k]
        np.testing.assert_allclose(decrypt_update(ctx, total), expected, atol=1e-4)
