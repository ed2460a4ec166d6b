import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from privacy.balanced_assignment import (
    assign_clusters,
    cluster_members,
    cluster_sizes,
    greedy_assignment,
    optimal_assignment,
    total_loss,
)
from protos.errors import InvalidInput

METHODS = (greedy_assignment, optimal_assignment)


@st.composite
def loss_matrices(draw: st.DrawFn) -> np.ndarray:
    clusters = draw(st.integers(1, 5))
    silos = draw(st.integers(clusters, 14))
    # Small integers make equal losses (ties) common, where tie-breaking bugs hide.
    values = st.one_of(
        st.integers(-3, 3).map(float),
        st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    )
    return draw(arrays(np.float64, (silos, clusters), elements=values))


@settings(max_examples=200, deadline=None)
@given(loss_matrices())
def test_clusters_are_balanced_disjoint_and_cover_every_silo(losses):
    silos, clusters = losses.shape
    for method in METHODS:
        assignment = method(losses)
        assert len(assignment) == silos  # one cluster per silo: disjoint and covering
        assert all(0 <= k < clusters for k in assignment)
        sizes = cluster_sizes(assignment, clusters)
        assert sum(sizes) == silos
        assert max(sizes) - min(sizes) <= 1
        assert min(sizes) >= 1


@settings(max_examples=200, deadline=None)
@given(loss_matrices())
def test_optimal_total_loss_is_never_above_greedy(losses):
    greedy = total_loss(losses, greedy_assignment(losses))
    optimal = total_loss(losses, optimal_assignment(losses))
    assert optimal <= greedy + 1e-9 * max(1.0, abs(greedy))


def test_optimal_matches_brute_force_on_small_instances():
    from itertools import product

    rng = np.random.default_rng(0)
    for _ in range(30):
        losses = rng.normal(size=(7, 3))
        best = min(
            total_loss(losses, combo)
            for combo in product(range(3), repeat=7)
            if max(cluster_sizes(combo, 3)) - min(cluster_sizes(combo, 3)) <= 1
        )
        assert total_loss(losses, optimal_assignment(losses)) == pytest.approx(best)


def test_greedy_can_be_beaten_by_the_optimal_method():
    # Both silos like cluster 0 best; greedy gives it to silo 0 (lower loss there), which
    # pushes silo 1 onto a cluster it fits very badly. The optimum swaps them.
    losses = [[0.0, 1.0], [0.1, 9.0]]
    assert greedy_assignment(losses) == (0, 1)
    assert optimal_assignment(losses) == (1, 0)
    assert total_loss(losses, optimal_assignment(losses)) < total_loss(
        losses, greedy_assignment(losses)
    )


def test_greedy_follows_the_reference_procedure_by_hand():
    # 5 silos, 2 clusters: four propose to cluster 0, one to cluster 1. Cluster 0 is the
    # fullest, closes first with ceil(5/2) = 3, keeping its three lowest-loss proposers;
    # the fourth (silo 3, loss 0.4) is turned away and takes its next choice, cluster 1.
    losses = [
        [0.1, 0.9],
        [0.2, 0.8],
        [0.3, 0.2],
        [0.4, 0.5],
        [0.05, 0.7],
    ]
    assert greedy_assignment(losses) == (0, 0, 1, 1, 0)
    assert cluster_members((0, 0, 1, 1, 0), 2) == [[0, 1, 4], [2, 3]]


def test_greedy_breaks_equal_losses_by_lowest_silo_and_cluster_index():
    losses = np.zeros((4, 2))
    assert greedy_assignment(losses) == (0, 0, 1, 1)


def test_silos_that_fit_distinct_clusters_are_separated_by_both_methods():
    rng = np.random.default_rng(3)
    truth = np.repeat(np.arange(3), 4)
    losses = rng.uniform(0.6, 0.7, size=(12, 3))
    losses[np.arange(12), truth] = rng.uniform(0.1, 0.2, size=12)
    for method in METHODS:
        assert method(losses) == tuple(truth)


def test_one_cluster_takes_every_silo():
    assert greedy_assignment([[1.0], [2.0]]) == (0, 0)
    assert optimal_assignment([[1.0], [2.0]]) == (0, 0)


def test_input_is_not_modified_and_results_are_repeatable():
    losses = np.random.default_rng(1).normal(size=(9, 4))
    copy = losses.copy()
    for method in METHODS:
        assert method(losses) == method(losses)
    np.testing.assert_array_equal(losses, copy)


def test_method_is_chosen_by_name():
    losses = [[0.0, 1.0], [0.1, 9.0]]
    assert assign_clusters(losses, "greedy") == (0, 1)
    assert assign_clusters(losses, "optimal") == (1, 0)
    with pytest.raises(InvalidInput, match="unknown assignment method 'kmeans'"):
        assign_clusters(losses, "kmeans")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("losses", "message"),
    [
        ([[0.1, float("nan")], [0.2, 0.3]], "silo row 0 on cluster 1 is nan"),
        ([[0.1, 0.2], [float("inf"), 0.3]], "silo row 1 on cluster 0 is inf"),
        ([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]], "cannot make 3 non-empty clusters from 2 silo"),
        ([0.1, 0.2], "must be 2-D"),
        ([[0.1, 0.2], [0.3]], "rectangular array of numbers"),
        (np.zeros((3, 0)), "K must be at least 1"),
        (np.zeros((0, 2)), "cannot make 2 non-empty clusters from 0 silo"),
        ([["a", "b"]], "rectangular array of numbers"),
    ],
)
def test_malformed_loss_matrices_are_refused(losses, message):
    for method in METHODS:
        with pytest.raises(InvalidInput, match=message):
            method(losses)


def test_total_loss_refuses_an_assignment_that_does_not_fit():
    with pytest.raises(InvalidInput, match="covers 1 silos"):
        total_loss([[0.0], [1.0]], (0,))
    with pytest.raises(InvalidInput, match="outside 0..0"):
        total_loss([[0.0], [1.0]], (0, 1))
