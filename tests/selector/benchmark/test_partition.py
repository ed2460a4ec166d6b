from collections import Counter

import pytest

from protos.errors import InvalidInput
from selector.benchmark.partition import partition_by_field, partition_dirichlet, partition_iid
from selector.data import PreferencePair


def _pairs(counts: dict[str | None, int]) -> list[PreferencePair]:
    return [
        PreferencePair(f"q{value}{i}", f"good {i}", f"bad {i}", value)
        for value, count in counts.items()
        for i in range(count)
    ]


def _all(parts: dict[str, list[PreferencePair]]) -> list[PreferencePair]:
    return [pair for part in parts.values() for pair in part]


def test_by_field_gives_one_silo_per_value_in_sorted_order():
    pairs = _pairs({"worker-b": 2, "worker-a": 3})
    parts = partition_by_field(pairs)
    assert list(parts) == ["worker-a", "worker-b"]
    assert parts["worker-a"] == pairs[2:] and parts["worker-b"] == pairs[:2]


def test_by_field_accepts_any_key_of_a_pair():
    pairs = _pairs({"x": 4})
    parts = partition_by_field(pairs, field=lambda p: "even" if int(p.chosen[-1]) % 2 else "odd")
    assert {k: len(v) for k, v in parts.items()} == {"even": 2, "odd": 2}


def test_by_field_refuses_pairs_without_a_value():
    with pytest.raises(InvalidInput, match="pair 2 has no value for the partition field"):
        partition_by_field(_pairs({"a": 2, None: 1}))


def test_iid_is_seeded_balanced_and_covers_every_pair_once():
    pairs = _pairs({"a": 10, "b": 7})
    parts = partition_iid(pairs, 4, seed=3)
    assert list(parts) == ["silo-1", "silo-2", "silo-3", "silo-4"]
    assert sorted(len(p) for p in parts.values()) == [4, 4, 4, 5]
    assert Counter(_all(parts)) == Counter(pairs)
    assert parts == partition_iid(pairs, 4, seed=3)
    assert parts != partition_iid(pairs, 4, seed=4)


def test_iid_refuses_more_silos_than_pairs():
    with pytest.raises(InvalidInput, match="cannot give 3 silos a pair each from 2 pairs"):
        partition_iid(_pairs({"a": 2}), 3, seed=0)
    with pytest.raises(InvalidInput, match="num_silos must be at least 1"):
        partition_iid(_pairs({"a": 2}), 0, seed=0)


def test_dirichlet_is_seeded_and_covers_every_pair_once():
    pairs = _pairs({"a": 40, "b": 30, "c": 30})
    parts = partition_dirichlet(pairs, 5, alpha=0.5, seed=1)
    assert list(parts) == [f"silo-{i}" for i in range(1, 6)]
    assert Counter(_all(parts)) == Counter(pairs)
    assert all(len(part) >= 1 for part in parts.values())
    assert parts == partition_dirichlet(pairs, 5, alpha=0.5, seed=1)
    assert parts != partition_dirichlet(pairs, 5, alpha=0.5, seed=2)


def _skew(parts: dict[str, list[PreferencePair]]) -> float:
    """Mean over silos of the share of the silo's most common value."""
    shares = [
        Counter(p.silo for p in part).most_common(1)[0][1] / len(part)
        for part in parts.values()
        if part
    ]
    return sum(shares) / len(shares)


def test_small_alpha_skews_silos_towards_few_values_large_alpha_mixes_them():
    pairs = _pairs({"a": 200, "b": 200, "c": 200, "d": 200})
    skewed = partition_dirichlet(pairs, 4, alpha=0.05, seed=0)
    mixed = partition_dirichlet(pairs, 4, alpha=1000.0, seed=0)
    assert _skew(skewed) > 0.8
    assert _skew(mixed) < 0.35


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha must be a positive number"),
        ({"alpha": float("nan")}, "alpha must be a positive number"),
        ({"alpha": 1.0, "num_silos": 0}, "num_silos must be at least 1"),
        ({"alpha": 1.0, "num_silos": 9}, "cannot give 9 silos 1 pair"),
        ({"alpha": 1e-3, "num_silos": 4, "max_draws": 2}, "no Dirichlet\\(alpha=0.001\\) draw"),
    ],
)
def test_dirichlet_refuses_what_it_cannot_do(kwargs, message):
    arguments = {"num_silos": 3, "seed": 0, **kwargs}
    with pytest.raises(InvalidInput, match=message):
        partition_dirichlet(_pairs({"a": 4, "b": 4}), **arguments)
