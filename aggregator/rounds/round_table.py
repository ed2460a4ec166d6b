"""The round lifecycle as data: phases, the transition table and its guards.

FedBis is WAITING_FOR_SILOS ⇄ TRAINING. FedBiscuit adds GROUPING (DESIGN.md §1 phase 2):
warm-up rounds [k·w, (k+1)·w) train adapter k on the sampled silos; before every round in
`plan.grouping_rounds()` all eligible silos evaluate every adapter and report DP-noised losses,
the aggregator assigns balanced clusters (persisted in the state) and, until the next
grouping, only assigned silos are sampled and each trains its cluster's adapter.

Read `TRANSITIONS` top to bottom: in a phase, the first row whose guard holds fires. Everything
here is pure (state, facts and plan in, a row out), so the table can be read and tested on its
own; `aggregator.rounds.round_machine.RoundMachine` applies it through the store, persisting every
state it enters before anything is acknowledged, so a restarted aggregator re-reads the state
and re-evaluates the same table (aggregation is deterministic, re-running it after a crash
gives the same globals).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from protos.plan import Plan


class Phase(enum.StrEnum):
    WAITING_FOR_SILOS = "WAITING_FOR_SILOS"
    TRAINING = "TRAINING"
    GROUPING = "GROUPING"
    DONE = "DONE"
    FAILED = "FAILED"


@dataclass(frozen=True)
class RoundState:
    """Where the federation is. `round` is 0-based; in DONE it equals plan.rounds.

    `started_at_s` is when this phase began (waiting, training or grouping): deadlines count
    from it. In GROUPING `sampled` holds the silos asked to report losses. FedBiscuit only:
    `grouped_round` is the round whose grouping last completed (-1: none yet) and
    `assignment` the (silo, cluster) pairs it left, sorted by silo. With hidden membership the
    aggregator never learns an assignment: `grouping_digest` (hex) is the digest every silo of
    the grouping confirmed and `grouped_silos` its final roster (sorted), the silos that may
    be sampled until the next grouping.
    """

    phase: Phase
    round: int
    attempt: int
    started_at_s: float
    sampled: tuple[str, ...] = ()
    reason: str = ""
    grouped_round: int = -1
    assignment: tuple[tuple[str, int], ...] = ()
    grouping_digest: str = ""
    grouped_silos: tuple[str, ...] = ()

    @property
    def clusters(self) -> dict[str, int]:
        return dict(self.assignment)

    @property
    def grouped(self) -> frozenset[str]:
        """Silos the last grouping placed in some cluster (known to the aggregator or not)."""
        return frozenset(self.clusters) | frozenset(self.grouped_silos)

    def grouping_fields(self) -> dict:
        """What every later state of this federation carries over: the grouping it is under."""
        return {
            "grouped_round": self.grouped_round,
            "assignment": self.assignment,
            "grouping_digest": self.grouping_digest,
            "grouped_silos": self.grouped_silos,
        }

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "phase": self.phase.value,
            "sampled": list(self.sampled),
            "assignment": [list(pair) for pair in self.assignment],
            "grouped_silos": list(self.grouped_silos),
        }

    @classmethod
    def from_dict(cls, data: dict) -> RoundState:
        return cls(
            **{
                **data,
                "phase": Phase(data["phase"]),
                "sampled": tuple(data["sampled"]),
                "assignment": tuple((silo, int(k)) for silo, k in data.get("assignment", ())),
                "grouped_silos": tuple(data.get("grouped_silos", ())),
            }
        )


@dataclass(frozen=True)
class Facts:
    """What the guards look at, read from the store at one instant."""

    now_s: float
    eligible: tuple[str, ...]  # joined and not budget-exhausted, sorted
    uploaded: frozenset[str]  # sampled silos with an accepted upload in this attempt
    declined: frozenset[str]  # sampled silos that declined this attempt
    reported: frozenset[str] = frozenset()  # sampled silos with a stored loss report (GROUPING)
    # Modes with a protocol of their own clock (SecAgg+): whether it still runs; None: none.
    protocol_running: bool | None = None
    # Groupings with a protocol of their own (hidden membership: the silos agree among
    # themselves): whether it still runs, None: none; `reported` then holds the silos of an
    # agreed grouping only.
    grouping_running: bool | None = None


class Action(enum.StrEnum):
    START_ATTEMPT = "start_attempt"  # sample silos; they get TRAIN tasks when they pull
    AGGREGATE = "aggregate"  # FedAvg the uploads into the next round's globals
    FINISH = "finish"  # aggregate the last round and export the selector
    RETRY = "retry"  # too few uploads: re-run the round with a fresh sample
    FAIL = "fail"  # too few eligible silos remain to ever complete a round
    START_GROUPING = "start_grouping"  # every eligible silo gets an EVALUATE task
    ASSIGN = "assign"  # balanced clusters from the loss reports, persisted in the state
    RETRY_GROUPING = "retry_grouping"  # too few reports: group again with a fresh attempt


@dataclass(frozen=True)
class Transition:
    source: Phase
    guard: str
    action: Action
    target: Phase


TRANSITIONS: tuple[Transition, ...] = (
    #          from                      when                  do                    to
    Transition(Phase.WAITING_FOR_SILOS, "grouping_ready", Action.START_GROUPING, Phase.GROUPING),
    Transition(Phase.WAITING_FOR_SILOS, "grouping_lost", Action.FAIL, Phase.FAILED),
    Transition(Phase.WAITING_FOR_SILOS, "silos_ready", Action.START_ATTEMPT, Phase.TRAINING),
    Transition(Phase.WAITING_FOR_SILOS, "silos_lost", Action.FAIL, Phase.FAILED),
    Transition(Phase.GROUPING, "reports_enough", Action.ASSIGN, Phase.WAITING_FOR_SILOS),
    Transition(Phase.GROUPING, "reports_short", Action.RETRY_GROUPING, Phase.WAITING_FOR_SILOS),
    Transition(Phase.TRAINING, "quorum_last_round", Action.FINISH, Phase.DONE),
    Transition(Phase.TRAINING, "quorum", Action.AGGREGATE, Phase.WAITING_FOR_SILOS),
    Transition(Phase.TRAINING, "short", Action.RETRY, Phase.WAITING_FOR_SILOS),
)


def _deadline_passed(s: RoundState, f: Facts, p: Plan) -> bool:
    return f.now_s >= s.started_at_s + p.round_deadline_s


def _first_wait(s: RoundState) -> bool:
    return (s.round, s.attempt) == (0, 0)


def _closed(s: RoundState, f: Facts, p: Plan) -> bool:
    """Every sampled silo reported, the deadline passed, or min_silos became unreachable.

    In a mode with a protocol of its own (masking: when every secure sum finished or aborted,
    they keep their own clocks), when that protocol ended; `uploaded` then holds the silos
    inside a completed sum."""
    if f.protocol_running is not None:
        return not f.protocol_running
    pending = set(s.sampled) - f.uploaded - f.declined
    hopeless = len(f.uploaded) + len(pending) < p.min_silos
    return not pending or hopeless or _deadline_passed(s, f, p)


def grouping_due(s: RoundState, p: Plan) -> bool:
    """A grouping precedes this round and has not completed yet."""
    return s.round in p.grouping_rounds() and s.grouped_round != s.round


def reports_needed(p: Plan) -> int:
    """Fewest loss reports a grouping needs: K clusters of at least min_cluster_silos each."""
    fb = p.fedbiscuit
    return 0 if fb is None else fb.clusters * fb.min_cluster_silos


def trainable(s: RoundState, f: Facts, p: Plan) -> tuple[str, ...]:
    """Silos that may be sampled: all eligible ones in warm-up (and FedBis), afterwards only
    those with a cluster (a silo that missed grouping waits for the next one)."""
    if p.warmup_adapter(s.round) is not None:
        return f.eligible
    grouped = s.grouped
    return tuple(silo for silo in f.eligible if silo in grouped)


def _grouping_closed(s: RoundState, f: Facts, p: Plan) -> bool:
    if f.grouping_running is not None:
        return not f.grouping_running
    pending = set(s.sampled) - f.reported - f.declined
    hopeless = len(f.reported) + len(pending) < reports_needed(p)
    return not pending or hopeless or _deadline_passed(s, f, p)


GUARDS: dict[str, Callable[[RoundState, Facts, Plan], bool]] = {
    "grouping_ready": lambda s, f, p: grouping_due(s, p) and len(f.eligible) >= reports_needed(p),
    "grouping_lost": lambda s, f, p: grouping_due(s, p) and len(f.eligible) < reports_needed(p),
    # Start with a full sample at once; with min_silos only after the first deadline (later
    # attempts start at once with whoever is still eligible).
    "silos_ready": lambda s, f, p: (
        not grouping_due(s, p)
        and (
            len(trainable(s, f, p)) >= p.silos_per_round
            or (
                len(trainable(s, f, p)) >= p.min_silos
                and (not _first_wait(s) or _deadline_passed(s, f, p))
            )
        )
    ),
    "silos_lost": lambda s, f, p: (
        not grouping_due(s, p) and not _first_wait(s) and len(trainable(s, f, p)) < p.min_silos
    ),
    "reports_enough": lambda s, f, p: (
        _grouping_closed(s, f, p) and len(f.reported) >= reports_needed(p)
    ),
    "reports_short": lambda s, f, p: (
        _grouping_closed(s, f, p) and len(f.reported) < reports_needed(p)
    ),
    "quorum_last_round": lambda s, f, p: (
        _closed(s, f, p) and len(f.uploaded) >= p.min_silos and s.round + 1 == p.rounds
    ),
    "quorum": lambda s, f, p: _closed(s, f, p) and len(f.uploaded) >= p.min_silos,
    "short": lambda s, f, p: _closed(s, f, p) and len(f.uploaded) < p.min_silos,
}


def next_transition(state: RoundState, facts: Facts, plan: Plan) -> Transition | None:
    """The first row of the table that fires now, if any."""
    for row in TRANSITIONS:
        if row.source == state.phase and GUARDS[row.guard](state, facts, plan):
            return row
    return None


def sample_silos(
    plan: Plan, round_: int, attempt: int, eligible: tuple[str, ...]
) -> tuple[str, ...]:
    """Seeded by (plan.seed, round, attempt): a restart or an auditor draws the same sample."""
    ids = sorted(eligible)
    size = min(plan.silos_per_round, len(ids))
    rng = np.random.default_rng([plan.seed, round_, attempt])
    return tuple(sorted(ids[i] for i in rng.choice(len(ids), size=size, replace=False)))


def adapter_for(state: RoundState, plan: Plan, silo_id: str) -> int:
    """The adapter `silo_id` trains in this round: the warm-up's, else its cluster's."""
    warmup = plan.warmup_adapter(state.round)
    if warmup is not None:
        return warmup
    clusters = state.clusters
    if silo_id not in clusters:
        raise ValueError(f"silo {silo_id!r} has no cluster in round {state.round}")
    return clusters[silo_id]


def task_id_for(round_: int, attempt: int, silo_id: str, kind: str = "train") -> str:
    if kind == "evaluate":
        return f"r{round_}.a{attempt}.eval.{silo_id}"
    return f"r{round_}.a{attempt}.{silo_id}"
