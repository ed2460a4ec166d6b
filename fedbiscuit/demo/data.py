"""`fedbiscuit demo --data TRAIN --test TEST`: a partner's own files split into demo silos.

One silo per value of the pairs' `silo` field, or, when the training file has no `silo`
field, a seeded IID split into `--silos` parts (`selector.benchmark.partition`). Test
pairs follow the same rule, and every silo that has test pairs must have training pairs: a
silo scored on data it never trained on would report a number nobody can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from privacy.pki.layout import validate_id
from protos.errors import InvalidInput
from selector.benchmark.generator import SiloData
from selector.benchmark.partition import partition_by_field, partition_iid
from selector.data import PreferencePair
from selector.formats import PairFormat, read_pairs

__all__ = ["partner_dataset"]


def _has_silo_field(pairs: Sequence[PreferencePair], path: Path) -> bool:
    named = sum(pair.silo is not None for pair in pairs)
    if 0 < named < len(pairs):
        raise InvalidInput(
            f"{path}: {named} of {len(pairs)} pairs have a 'silo' field: give every pair one "
            "(one silo per value) or none (split IID with --silos)"
        )
    return named > 0


def _split(
    pairs: list[PreferencePair], path: Path, by_field: bool, silos: int, seed: int
) -> dict[str, list[PreferencePair]]:
    if not by_field:
        return partition_iid(pairs, silos, seed)
    parts = partition_by_field(pairs)
    for silo in parts:
        try:
            validate_id(silo, "silo id")
        except InvalidInput as exc:
            raise InvalidInput(f"{path}: field 'silo': {exc}") from None
    return parts


def partner_dataset(
    train_path: Path,
    test_path: Path,
    silos: int,
    seed: int,
    max_silos: int,
    format: PairFormat = "jsonl",
) -> dict[str, SiloData]:
    """Each demo silo's training and held-out pairs, read from the two files."""
    train, test = read_pairs(train_path, format), read_pairs(test_path, format)
    by_field = _has_silo_field(train, train_path)
    test_by_field = _has_silo_field(test, test_path)
    if by_field and not test_by_field:
        raise InvalidInput(
            f"{test_path}: pairs have no 'silo' field but those of {train_path} do: "
            "say which silo each test pair belongs to"
        )
    train_parts = _split(train, train_path, by_field, silos, seed)
    if len(train_parts) > max_silos:
        raise InvalidInput(
            f"{train_path}: {len(train_parts)} distinct silo values, but the demo runs at most "
            f"{max_silos} silos on one machine"
        )
    # Test pairs without a silo field are split IID like the training pairs (another seed).
    test_parts = _split(test, test_path, test_by_field, len(train_parts), seed + 1)
    orphans = sorted(set(test_parts) - set(train_parts))
    if orphans:
        raise InvalidInput(
            f"{test_path}: silo {orphans[0]!r} has test pairs but no training pairs in "
            f"{train_path}; every test silo needs training data"
        )
    return {
        silo: SiloData(train=pairs, test=test_parts.get(silo, []))
        for silo, pairs in train_parts.items()
    }
