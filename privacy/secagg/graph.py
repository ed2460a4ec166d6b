"""The round's neighbour graph (SecAgg+, Bell et al. CCS 2020): who masks and shares with whom.

Silos are placed on a ring in a pseudorandom order fixed by the round context (which holds
the aggregator's public round seed) and the roster, and each is joined to the ``k/2``
nearest on either side: a ``k``-regular graph (a Harary graph). When the roster has at most
``k + 1`` silos, or the parameters ask for it, the graph is complete. Every silo computes
the graph itself from the signed roster, so the aggregator cannot show silos different
graphs without the roster check catching it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from privacy.secagg import transcript
from privacy.secagg.errors import SecAggAborted
from privacy.secagg.params import SecAggParams


@dataclass(frozen=True)
class NeighbourGraph:
    """The public structure of one round: roster order, neighbours and threshold."""

    silos: tuple[str, ...]  # sorted ids; a silo's share x-coordinate is its position + 1
    neighbours: Mapping[str, frozenset[str]]
    degree: int
    threshold: int

    def x_of(self, silo_id: str) -> int:
        """The Shamir x-coordinate of shares held by ``silo_id``."""
        return self.silos.index(silo_id) + 1


def roster_digest(context_digest: bytes, silos: Sequence[str]) -> bytes:
    return transcript.digest("roster", context_digest, sorted(silos))


def build_graph(
    silos: Sequence[str], context_digest: bytes, params: SecAggParams
) -> NeighbourGraph:
    """The neighbour graph of a round whose key-advertising silos are ``silos``."""
    ordered = tuple(sorted(silos))
    if len(set(ordered)) != len(ordered):
        raise SecAggAborted("the roster names a silo twice")
    n = len(ordered)
    if n < params.min_silos:
        raise SecAggAborted(
            f"the round has {n} distinct silos, fewer than the plan's minimum {params.min_silos}"
        )
    if n > params.max_silos:
        raise SecAggAborted(
            f"the round has {n} silos, more than the {params.max_silos} the encoding can sum"
        )
    degree = params.degree_for(n)
    threshold = params.threshold_for(degree)
    if degree == n - 1:
        neighbours = {s: frozenset(ordered) - {s} for s in ordered}
    else:
        roster = roster_digest(context_digest, ordered)
        ring = sorted(
            ordered, key=lambda s: transcript.digest("graph-order", context_digest, roster, s)
        )
        half = degree // 2
        neighbours = {
            silo: frozenset(ring[(p + d) % n] for d in range(-half, half + 1) if d)
            for p, silo in enumerate(ring)
        }
    return NeighbourGraph(ordered, neighbours, degree, threshold)
