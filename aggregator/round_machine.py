"""The FedBis round lifecycle as data: phases, the transition table and its guards.

Read `TRANSITIONS` top to bottom: in a phase, the first row whose guard holds fires. Everything
here is pure (state, facts and plan in, a row out), so the table can be read and tested on its
own; `aggregator.coordinator.RoundMachine` applies it through the store, persisting every
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
    DONE = "DONE"
    FAILED = "FAILED"


@dataclass(frozen=True)
class RoundState:
    """Where the federation is. `round` is 0-based; in DONE it equals plan.rounds.

    `started_at_s` is when this phase began (waiting or training): deadlines count from it.
    """

    phase: Phase
    round: int
    attempt: int
    started_at_s: float
    sampled: tuple[str, ...] = ()
    reason: str = ""

    def to_dict(self) -> dict:
        return {**asdict(self), "phase": self.phase.value, "sampled": list(self.sampled)}

    @classmethod
    def from_dict(cls, data: dict) -> RoundState:
        return cls(**{**data, "phase": Phase(data["phase"]), "sampled": tuple(data["sampled"])})


@dataclass(frozen=True)
class Facts:
    """What the guards look at, read from the store at one instant."""

    now_s: float
    eligible: tuple[str, ...]  # joined and not budget-exhausted, sorted
    uploaded: frozenset[str]  # sampled silos with an accepted upload in this attempt
    declined: frozenset[str]  # sampled silos that declined this attempt


class Action(enum.StrEnum):
    START_ATTEMPT = "start_attempt"  # sample silos; they get TRAIN tasks when they pull
    AGGREGATE = "aggregate"  # FedAvg the uploads into the next round's globals
    FINISH = "finish"  # aggregate the last round and export the selector
    RETRY = "retry"  # too few uploads: re-run the round with a fresh sample
    FAIL = "fail"  # too few eligible silos remain to ever complete a round


@dataclass(frozen=True)
class Transition:
    source: Phase
    guard: str
    action: Action
    target: Phase


TRANSITIONS: tuple[Transition, ...] = (
    #          from                      when                  do                    to
    Transition(Phase.WAITING_FOR_SILOS, "silos_ready", Action.START_ATTEMPT, Phase.TRAINING),
    Transition(Phase.WAITING_FOR_SILOS, "silos_lost", Action.FAIL, Phase.FAILED),
    Transition(Phase.TRAINING, "quorum_last_round", Action.FINISH, Phase.DONE),
    Transition(Phase.TRAINING, "quorum", Action.AGGREGATE, Phase.WAITING_FOR_SILOS),
    Transition(Phase.TRAINING, "short", Action.RETRY, Phase.WAITING_FOR_SILOS),
)


def _deadline_passed(s: RoundState, f: Facts, p: Plan) -> bool:
    return f.now_s >= s.started_at_s + p.round_deadline_s


def _first_wait(s: RoundState) -> bool:
    return (s.round, s.attempt) == (0, 0)


def _closed(s: RoundState, f: Facts, p: Plan) -> bool:
    """Every sampled silo reported, the deadline passed, or min_silos became unreachable."""
    pending = set(s.sampled) - f.uploaded - f.declined
    hopeless = len(f.uploaded) + len(pending) < p.min_silos
    return not pending or hopeless or _deadline_passed(s, f, p)


GUARDS: dict[str, Callable[[RoundState, Facts, Plan], bool]] = {
    # Start with a full sample at once; with min_silos only after the first deadline (later
    # attempts start at once with whoever is still eligible).
    "silos_ready": lambda s, f, p: (
        len(f.eligible) >= p.silos_per_round
        or (len(f.eligible) >= p.min_silos and (not _first_wait(s) or _deadline_passed(s, f, p)))
    ),
    "silos_lost": lambda s, f, p: not _first_wait(s) and len(f.eligible) < p.min_silos,
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


def task_id_for(round_: int, attempt: int, silo_id: str) -> str:
    return f"r{round_}.a{attempt}.{silo_id}"
