"""Giving each silo its data: by a field's value, Dirichlet over a field's values, or IID.

For simulating a federation on a public dataset (and for `demo --data`). The field is a
function of a pair; it defaults to `PreferencePair.silo`, where the readers in
`selector.formats` put each format's natural key (worker, domain, our `silo`). Pairs are
returned unchanged (their `silo` stays provenance); the mapping's keys are the silo ids.
Seeded partitions are a deterministic function of (pairs in order, arguments, seed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from protos.errors import InvalidInput
from selector.data import PreferencePair

FieldOf = Callable[[PreferencePair], str | None]

__all__ = ["FieldOf", "partition_by_field", "partition_dirichlet", "partition_iid", "silo_ids"]


def _silo_field(pair: PreferencePair) -> str | None:
    return pair.silo


def silo_ids(num_silos: int) -> list[str]:
    """`silo-1` … `silo-N`, the ids the seeded partitions (and the benchmark) use."""
    return [f"silo-{index}" for index in range(1, num_silos + 1)]


def _values(pairs: Sequence[PreferencePair], field: FieldOf) -> list[str]:
    values = []
    for index, pair in enumerate(pairs):
        value = field(pair)
        if not isinstance(value, str) or not value:
            raise InvalidInput(
                f"pair {index} has no value for the partition field (got {value!r}): "
                "every pair needs one, or partition IID"
            )
        values.append(value)
    return values


def partition_by_field(
    pairs: Sequence[PreferencePair], field: FieldOf = _silo_field
) -> dict[str, list[PreferencePair]]:
    """One silo per distinct value of `field`, keyed by that value (sorted), pairs in order."""
    if not pairs:
        raise InvalidInput("no preference pairs to partition")
    silos: dict[str, list[PreferencePair]] = {}
    for value, pair in zip(_values(pairs, field), pairs, strict=True):
        silos.setdefault(value, []).append(pair)
    return {value: silos[value] for value in sorted(silos)}


def partition_iid(
    pairs: Sequence[PreferencePair], num_silos: int, seed: int
) -> dict[str, list[PreferencePair]]:
    """A seeded shuffle cut into `num_silos` parts whose sizes differ by at most one."""
    if num_silos < 1:
        raise InvalidInput(f"num_silos must be at least 1, got {num_silos}")
    if len(pairs) < num_silos:
        raise InvalidInput(f"cannot give {num_silos} silos a pair each from {len(pairs)} pairs")
    order = np.random.default_rng(seed).permutation(len(pairs))
    return {
        silo: [pairs[i] for i in part]
        for silo, part in zip(silo_ids(num_silos), np.array_split(order, num_silos), strict=True)
    }


def partition_dirichlet(
    pairs: Sequence[PreferencePair],
    num_silos: int,
    alpha: float,
    seed: int,
    field: FieldOf = _silo_field,
    min_pairs_per_silo: int = 1,
    max_draws: int = 100,
) -> dict[str, list[PreferencePair]]:
    """Label-skew split: each value of `field` spreads its pairs over silos by Dir(alpha).

    For every distinct value (in sorted order) a proportion vector over the silos is drawn
    from a symmetric Dirichlet(alpha) and that value's pairs, shuffled, are cut in those
    proportions. Small alpha gives silos dominated by a few values; large alpha tends to
    the IID split. The whole draw is repeated (same generator, so still deterministic) until
    every silo has at least `min_pairs_per_silo` pairs, at most `max_draws` times.
    """
    if num_silos < 1:
        raise InvalidInput(f"num_silos must be at least 1, got {num_silos}")
    if not (np.isfinite(alpha) and alpha > 0):
        raise InvalidInput(f"Dirichlet alpha must be a positive number, got {alpha}")
    if min_pairs_per_silo < 0 or max_draws < 1:
        raise InvalidInput("min_pairs_per_silo must be >= 0 and max_draws >= 1")
    if len(pairs) < num_silos * min_pairs_per_silo:
        raise InvalidInput(
            f"cannot give {num_silos} silos {min_pairs_per_silo} pair(s) each "
            f"from {len(pairs)} pairs"
        )
    values = _values(pairs, field)
    by_value: dict[str, list[int]] = {}
    for index, value in enumerate(values):
        by_value.setdefault(value, []).append(index)
    rng = np.random.default_rng(seed)
    for _ in range(max_draws):
        parts: list[list[int]] = [[] for _ in range(num_silos)]
        for value in sorted(by_value):
            members = rng.permutation(by_value[value])
            shares = rng.dirichlet(np.full(num_silos, float(alpha)))
            cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(int)
            for silo, chunk in enumerate(np.split(members, cuts)):
                parts[silo].extend(int(i) for i in chunk)
        if min(len(part) for part in parts) >= min_pairs_per_silo:
            return {
                silo: [pairs[i] for i in sorted(part)]
                for silo, part in zip(silo_ids(num_silos), parts, strict=True)
            }
    raise InvalidInput(
        f"no Dirichlet(alpha={alpha}) draw in {max_draws} gave every one of {num_silos} silos "
        f"{min_pairs_per_silo} pair(s): raise alpha or lower the silo count"
    )
