"""K-slot uploads: every silo sends the same-sized vector, whichever cluster it is in.

Why: under one secure sum over all sampled silos, the aggregator must learn each cluster's
sum and size but not who is where. A silo's upload is K delta slots (its delta in its own
cluster's slot, exact zeros elsewhere), a one-hot *count* slot (1 in its cluster) and a
*sizes* slot (the grouping's agreed cluster sizes, times a power-of-two unit so they stay
within the encoding's clip). Zeros, ones and multiples of the unit lie on the fixed-point
grid, so they encode exactly and the masked sum decodes to integer counts and to
participants × sizes; a delta slot is encoded exactly as per-cluster masking encodes it.
The aggregator divides each cluster sum by ``max(size, count)`` as today.

Under CKKS the same K delta slots travel as K encrypted vectors, so the aggregator adds
slot k of every upload onto cluster k's encrypted global without decrypting; the count and
sizes are not needed there (a dropout's weight stays on the previous global).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from privacy.secagg.params import EncodingParams
from protos.errors import InvalidInput

__all__ = ["ClusterSums", "CkksSlotLayout", "KSlotLayout"]


@dataclass(frozen=True)
class ClusterSums:
    """A decoded K-slot sum: per-cluster delta sums, participants and agreed sizes."""

    sums: tuple[np.ndarray, ...]
    counts: tuple[int, ...]
    sizes: tuple[int, ...]


def _exact_ints(values: np.ndarray, what: str) -> tuple[int, ...]:
    rounded = np.rint(values)
    if not np.array_equal(rounded, values) or (rounded < 0).any():
        raise InvalidInput(f"the K-slot {what} slot does not decode to whole counts")
    return tuple(int(v) for v in rounded)


@dataclass(frozen=True)
class KSlotLayout:
    """Where each part of a masked K-slot upload lies (length ``clusters*dim + 2*clusters``)."""

    dim: int
    clusters: int
    size_unit: float  # 2**-ceil(log2(max_silos)): sizes * unit <= 1 <= clip

    @classmethod
    def for_encoding(cls, dim: int, clusters: int, encoding: EncodingParams) -> KSlotLayout:
        """The layout for a plan's secure-aggregation encoding; refused if not exact."""
        if dim < 1 or clusters < 2:
            raise InvalidInput(f"a K-slot layout needs dim >= 1 and K >= 2, got {dim}, {clusters}")
        unit = math.ldexp(1.0, -math.ceil(math.log2(encoding.max_silos)))
        if encoding.clip < 1.0 or unit * encoding.scale < 1.0:
            raise InvalidInput(
                "the secagg encoding cannot carry K-slot counts exactly (needs clip >= 1 and "
                f"scale >= {1 / unit:g})"
            )
        return cls(dim, clusters, unit)

    @property
    def length(self) -> int:
        return self.clusters * self.dim + 2 * self.clusters

    def encode(self, delta: np.ndarray, cluster: int, sizes: tuple[int, ...]) -> np.ndarray:
        """One silo's upload (float64, to be masked): the same length for every silo."""
        flat = np.asarray(delta)
        if flat.shape != (self.dim,):
            raise InvalidInput(f"K-slot delta must have shape ({self.dim},), got {flat.shape}")
        if not 0 <= cluster < self.clusters:
            raise InvalidInput(f"cluster {cluster} is outside 0..{self.clusters - 1}")
        if len(sizes) != self.clusters or min(sizes) < 1 or max(sizes) * self.size_unit > 1:
            raise InvalidInput(f"cluster sizes {sizes} do not fit this layout")
        out = np.zeros(self.length, dtype=np.float64)
        out[cluster * self.dim : (cluster + 1) * self.dim] = flat
        tail = self.clusters * self.dim
        out[tail + cluster] = 1.0
        out[tail + self.clusters :] = np.asarray(sizes, dtype=np.float64) * self.size_unit
        return out

    def decode(self, total: np.ndarray) -> ClusterSums:
        """Per-cluster sums, participants and sizes from the decoded secure sum.

        Refuses a sum whose count or sizes slots are not whole numbers, or whose silos did
        not all state the same sizes (a tampered upload or a silo outside the grouping).
        """
        values = np.asarray(total, dtype=np.float64)
        if values.shape != (self.length,):
            raise InvalidInput(f"K-slot sum must have shape ({self.length},), got {values.shape}")
        tail = self.clusters * self.dim
        counts = _exact_ints(values[tail : tail + self.clusters], "count")
        participants = sum(counts)
        if participants < 1:
            raise InvalidInput("the K-slot sum has no participants")
        scaled = values[tail + self.clusters :] / (self.size_unit * participants)
        sizes = _exact_ints(scaled, "sizes")
        if any(c > s for c, s in zip(counts, sizes, strict=True)):
            raise InvalidInput(f"K-slot counts {counts} exceed the agreed sizes {sizes}")
        sums = tuple(values[k * self.dim : (k + 1) * self.dim] for k in range(self.clusters))
        return ClusterSums(sums, counts, sizes)


@dataclass(frozen=True)
class CkksSlotLayout:
    """K slots of ``dim`` values under CKKS: each silo encrypts K vectors, its own
    (1/N-weighted) delta in its cluster's slot and zeros in the others.

    Every silo's upload is K encrypted vectors of ``dim`` values, the same number of
    ciphertexts whatever its cluster, and the aggregator adds slot k of every upload onto
    cluster k's encrypted global without decrypting. (CKKS ciphertexts are randomised, so
    an encryption of zeros cannot be told from one of a delta.)
    """

    dim: int
    clusters: int

    def encode(self, weighted_delta: np.ndarray, cluster: int) -> list[np.ndarray]:
        """A silo's K plaintext slots (float32, as the CKKS packing takes them)."""
        flat = np.asarray(weighted_delta, dtype=np.float32)
        if flat.shape != (self.dim,) or not 0 <= cluster < self.clusters:
            raise InvalidInput(f"CKKS K-slot: delta {flat.shape} or cluster {cluster} invalid")
        return [
            flat.copy() if k == cluster else np.zeros(self.dim, dtype=np.float32)
            for k in range(self.clusters)
        ]
