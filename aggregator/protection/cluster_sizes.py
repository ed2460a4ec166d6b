"""What the aggregator may record of clusters it cannot see (hidden membership): per round,
each cluster's agreed size and how many of its silos took part, from the K-slot secure sum.

Kept as one store artifact (the latest hidden aggregation's), which `aggregator status` and
the metrics read: sizes and counts only, never a silo id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aggregator.store import FederationStore
from protos.errors import InvalidInput

_KEY = "membership/cluster_sizes"


@dataclass(frozen=True)
class ClusterSizes:
    round: int  # the round whose secure sum gave these
    sizes: tuple[int, ...]  # silos per cluster, as the grouping's silos agreed
    participants: tuple[int, ...]  # of them, how many were inside the round's sum


def record_cluster_sizes(store: FederationStore, sizes: ClusterSizes) -> None:
    body = {"round": sizes.round, "sizes": sizes.sizes, "participants": sizes.participants}
    store.put_artifact(_KEY, json.dumps(body, separators=(",", ":")).encode())


def latest_cluster_sizes(store: FederationStore) -> ClusterSizes | None:
    """The last hidden aggregation's cluster sizes, or None if there was none."""
    data = store.artifact(_KEY)
    if data is None:
        return None
    try:
        body = json.loads(data)
        return ClusterSizes(
            int(body["round"]),
            tuple(int(v) for v in body["sizes"]),
            tuple(int(v) for v in body["participants"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidInput(f"artifact {_KEY!r} is malformed: {error}") from None
