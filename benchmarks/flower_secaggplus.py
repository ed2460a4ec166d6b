"""Time one Flower SecAgg+ round and one Flower plaintext round, for comparison with ours.

Run it with the Python of a separate virtualenv that has ``flwr`` (it is never a dependency
of fedbiscuit and this script imports nothing of ours)::

    /tmp/flwr-venv/bin/python benchmarks/flower_secaggplus.py --params 75000 --clients 10

It prints one JSON line. ``benchmarks/secagg.py --flower-python PATH`` runs it per row.

What runs is Flower's own code, unmodified: the server side is ``SecAggPlusWorkflow`` (all
four stages, via its ``__call__``) and, for the plaintext round, Flower's
``default_fit_workflow``; both with a ``LegacyContext`` holding ``FedAvg`` and a
``SimpleClientManager``. Every client is a ``ClientApp`` whose ``NumPyClient.fit`` returns
a prepared float32 update (``num_examples=1``), wrapped in ``secaggplus_mod`` for the
SecAgg+ round. The only thing of ours is ``InProcessGrid``, a ``Grid`` that replaces the
SuperLink: it serialises each message to Flower's protobuf and back (so every node gets its
own copy, as over the wire), calls the destination node's ``ClientApp`` with that node's
persistent ``Context``, and does the same with the reply.

What is timed, the same way as ``benchmarks/secagg.py`` times ours:

* client time: each ``ClientApp`` call, per node and per SecAgg+ stage (setup, share_keys,
  collect_masked_vectors, unmask; ``fit`` for plaintext). That includes the mod's crypto,
  quantisation, masking and ``ndarray_to_bytes`` of the upload (like our bytes + SHA-256).
  Wall seconds, and CPU seconds of the calling thread (``client_cpu_*``: what
  ``benchmarks/speed_targets.py`` compares, since a shared box's other processes don't count);
* server time: the workflow's wall time minus the time spent inside the grid (client calls
  and the protobuf round trips), i.e. everything Flower's server does: building messages,
  routing shares, summing masked vectors, rebuilding secrets, unmasking, dequantising and
  ``FedAvg.aggregate_fit``;
* round time: clients run in parallel (separate machines), so the sum over stages of the
  slowest client, plus the server. Transport (protobuf encoding, network) counts on
  neither side, as on ours. The global model sent down with ``FitIns`` is empty, because
  ours does not time the model broadcast either.

Dropouts: ``--dropout F [F ...]`` times one SecAgg+ round per fraction F. In each,
``round(F * clients)`` nodes answer the collect-masked-vectors stage with an error (they
dropped after sharing keys, as in ours), drawn at random among sets that leave every node
at least ``threshold`` live nodes in its neighbour set (Flower's own ``_check_threshold``
aborts the round otherwise). Each printed figure is the fastest of ``--repeats`` runs.

``--num-shares``/``--threshold`` change the neighbourhood: with ``--num-shares`` equal to
``--clients`` every node is every other's neighbour (Flower allows that even count).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Iterable

import flwr
import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.client import Client, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Stage
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.server import LegacyContext, ServerConfig, SimpleClientManager
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.strategy import FedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.default_workflows import default_fit_workflow
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

POOL = 4  # distinct update vectors, reused across clients to bound memory (as in ours)
# Our preset MEDIUM: 8 neighbours, threshold 5. Flower counts the node itself among the
# holders of its shares and wants an odd count, so 8 neighbours + self = 9 shares.
NUM_SHARES = 9
THRESHOLD = 5
CLIPPING_RANGE = 1.0  # ours clips updates to [-1, 1]; Flower's mod_range stays 2**32 like ours


class _UpdateClient(NumPyClient):
    """Returns a fixed update: training is not what we time."""

    def __init__(self, update: np.ndarray) -> None:
        self.update = update

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple[list[np.ndarray], int, dict]:
        return [self.update], 1, {}


def _app(update: np.ndarray, masked: bool) -> ClientApp:
    def client_fn(context: Context) -> Client:
        return _UpdateClient(update).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod] if masked else [])


class InProcessGrid(Grid):
    """Delivers messages to in-process ``ClientApp``s, timing each client call.

    ``client_s[phase][node]`` accumulates client seconds; ``grid_s`` is all time spent in
    here (clients + protobuf round trips), which the caller subtracts from the server's.
    """

    def __init__(
        self, apps: dict[int, ClientApp], dropout: float, seed: int, threshold: int
    ) -> None:
        self.apps = apps
        self.contexts = {
            nid: Context(run_id=1, node_id=nid, node_config={}, state=RecordDict(), run_config={})
            for nid in apps
        }
        self.client_s: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        self.client_cpu_s: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        self.up_bytes: dict[int, int] = defaultdict(int)
        self.grid_s = 0.0
        self.neighbours: dict[int, set[int]] = {}
        self.dropped: set[int] = set()
        self._dropout = dropout
        self._threshold = threshold
        self._rng = random.Random(seed)

    # The abstract Grid API, reduced to what the workflows call.
    def set_run(self, run: Run) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Run:
        raise NotImplementedError

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.apps)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        start = time.perf_counter()
        messages = list(messages)
        replies = [self._deliver(message) for message in messages]
        self.grid_s += time.perf_counter() - start
        return replies

    def _deliver(self, message: Message) -> Message:
        received = message_from_proto(message_to_proto(message))
        nid = message.metadata.dst_node_id
        configs = received.content.config_records.get(RECORD_KEY_CONFIGS)
        phase = str(configs["stage"]) if configs is not None else "fit"
        if phase == Stage.SHARE_KEYS:
            self.neighbours[nid] = {int(k) for k in configs if k != "stage"}
        if phase == Stage.COLLECT_MASKED_VECTORS:
            if not self.dropped and self._dropout:
                self.dropped = self._draw_dropped()
            if nid in self.dropped:
                error = Error(ErrorCode.NODE_UNAVAILABLE, "dropped after sharing keys")
                return Message(error, reply_to=message)
        start, cpu = time.perf_counter(), time.thread_time()
        reply = self.apps[nid](received, self.contexts[nid])
        self.client_s[phase][nid] += time.perf_counter() - start
        self.client_cpu_s[phase][nid] += time.thread_time() - cpu
        proto = message_to_proto(reply)
        self.up_bytes[nid] += proto.ByteSize()
        return message_from_proto(proto)

    def _draw_dropped(self) -> set[int]:
        """A random set of nodes whose loss Flower's ``_check_threshold`` accepts."""
        nodes = sorted(self.neighbours)
        count = round(self._dropout * len(nodes))
        while True:
            dropped = set(self._rng.sample(nodes, count))
            live = set(nodes) - dropped
            if all(len(self.neighbours[n] & live) >= self._threshold for n in nodes):
                return dropped


def _server_context(node_ids: list[int], grid: Grid) -> LegacyContext:
    n = len(node_ids)
    base = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    strategy = FedAvg(fraction_fit=1.0, min_fit_clients=n, min_available_clients=n)
    context = LegacyContext(base, ServerConfig(num_rounds=1), strategy, SimpleClientManager())
    for nid in node_ids:
        context.client_manager.register(GridClientProxy(nid, grid, run_id=1))
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    context.state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord([])
    return context


def run_round(
    updates: list[np.ndarray],
    clients: int,
    masked: bool,
    dropout: float,
    shares: tuple[int, int] = (NUM_SHARES, THRESHOLD),
) -> dict:
    """One Flower round; returns its timings and the error of its average against numpy's.

    ``shares`` is (num_shares, reconstruction_threshold) of the SecAgg+ workflow.
    """
    num_shares, threshold = shares
    node_ids = [1000 + i for i in range(clients)]
    apps = {nid: _app(updates[i % POOL], masked) for i, nid in enumerate(node_ids)}
    grid = InProcessGrid(apps, dropout if masked else 0.0, seed=clients, threshold=threshold)
    context = _server_context(node_ids, grid)
    random.seed(clients)  # the workflow shuffles nodes into its neighbour ring
    workflow = (
        SecAggPlusWorkflow(num_shares, threshold, max_weight=1.0, clipping_range=CLIPPING_RANGE)
        if masked
        else default_fit_workflow
    )
    start = time.perf_counter()
    workflow(grid, context)
    wall = time.perf_counter() - start

    arrays = context.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()
    live = [i for i, nid in enumerate(node_ids) if nid not in grid.dropped]
    expected = np.mean([updates[i % POOL].astype(np.float64) for i in live], axis=0)
    error = float(np.max(np.abs(arrays[0] - expected)))
    if error > 1e-4:  # quantisation alone stays near 1e-6: the round did not sum the updates
        raise RuntimeError(f"Flower's aggregate is off by {error} ({clients} clients)")
    server_s = wall - grid.grid_s
    client_max = {p: max(t.values()) for p, t in grid.client_s.items()}
    return {
        "round_s": sum(client_max.values()) + server_s,
        "server_s": server_s,
        "client_max_s": client_max,
        "client_mean_s": {p: float(np.mean(list(t.values()))) for p, t in grid.client_s.items()},
        "client_cpu_max_s": {p: max(t.values()) for p, t in grid.client_cpu_s.items()},
        "client_cpu_mean_s": {
            p: float(np.mean(list(t.values()))) for p, t in grid.client_cpu_s.items()
        },
        "up_bytes_per_param": float(np.mean(list(grid.up_bytes.values()))) / updates[0].size,
        "dropped": len(grid.dropped),
        "max_abs_error": error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, required=True, help="update length")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument(
        "--dropout", type=float, nargs="+", default=[0.0], help="fractions, e.g. 0 0.2"
    )
    parser.add_argument("--repeats", type=int, default=2, help="keep each round's fastest run")
    parser.add_argument("--num-shares", type=int, default=NUM_SHARES, help="nodes per share set")
    parser.add_argument("--threshold", type=int, default=THRESHOLD, help="reconstruction threshold")
    args = parser.parse_args()
    shares = (args.num_shares, args.threshold)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    # What Flower's own legacy server runner sets before a workflow builds messages.
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID

    rng = np.random.default_rng(0)
    updates = [(rng.standard_normal(args.params) * 0.05).astype(np.float32) for _ in range(POOL)]

    def fastest(masked: bool, dropout: float) -> dict:
        runs = [
            run_round(updates, args.clients, masked, dropout, shares) for _ in range(args.repeats)
        ]
        return min(runs, key=lambda r: r["round_s"])

    result = {
        "flwr": flwr.__version__,
        "params": args.params,
        "clients": args.clients,
        "num_shares": args.num_shares,
        "reconstruction_threshold": args.threshold,
        "secaggplus": {f"{d:g}": fastest(True, d) for d in args.dropout},
        "plaintext": fastest(False, 0.0),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
