import numpy as np
import pytest

from aggregator.rounds.fedavg import aggregate_on_model, fedavg
from protos.errors import InvalidInput


def test_uniform_fedavg_adds_the_mean_delta_to_the_globals():
    globals_vec = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    deltas = [np.array([0.5, 0.0, 1.0], np.float32), np.array([-0.25, 1.0, 0.0], np.float32)]

    new = fedavg(globals_vec, deltas, [1.0, 1.0])

    np.testing.assert_array_equal(new, np.array([1.125, -1.5, 1.0], np.float32))
    assert new.dtype == np.float32


def test_weighted_fedavg_weights_each_delta_by_its_share():
    globals_vec = np.zeros(2, np.float32)
    deltas = [np.array([4.0, 0.0], np.float32), np.array([0.0, 4.0], np.float32)]

    new = fedavg(globals_vec, deltas, [3, 1])

    np.testing.assert_array_equal(new, np.array([3.0, 1.0], np.float32))


@pytest.mark.parametrize(
    ("deltas", "weights", "problem"),
    [
        ([], [], "at least one delta"),
        ([np.zeros(2, np.float32)], [1.0, 2.0], "weights"),
        ([np.zeros(2, np.float32)], [0.0], "positive"),
        ([np.zeros(3, np.float32)], [1.0], "shape"),
    ],
)
def test_fedavg_refuses_inconsistent_inputs(deltas, weights, problem):
    with pytest.raises(InvalidInput, match=problem):
        fedavg(np.zeros(2, np.float32), deltas, weights)


def test_aggregate_on_model_keeps_absent_members_weight_on_the_previous_global():
    globals_vec = np.array([1.0, 2.0], np.float32)
    # A cluster of 4 silos; 2 took part: each weighs 1/4, the other 2/4 stays on the global.
    deltas = [np.array([4.0, 0.0], np.float32), np.array([0.0, -8.0], np.float32)]

    new = aggregate_on_model(globals_vec, deltas, cluster_size=4)

    np.testing.assert_array_equal(new, np.array([2.0, 0.0], np.float32))


def test_aggregate_on_model_with_the_whole_cluster_is_fedavg():
    globals_vec = np.array([0.5, -1.0, 3.0], np.float32)
    deltas = [np.array([1.0, 2.0, -3.0], np.float32), np.array([3.0, 0.0, 1.0], np.float32)]

    new = aggregate_on_model(globals_vec, deltas, cluster_size=2)

    np.testing.assert_array_equal(new, fedavg(globals_vec, deltas, [1.0, 1.0]))


def test_aggregate_on_model_refuses_more_deltas_than_members():
    deltas = [np.zeros(2, np.float32)] * 3
    with pytest.raises(InvalidInput, match="3 deltas for a cluster of 2"):
        aggregate_on_model(np.zeros(2, np.float32), deltas, cluster_size=2)
