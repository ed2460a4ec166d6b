"""The round machine's driver: applies the phase table through the store, thread-safe.

`aggregator.rounds.round_table` says *what* happens (the table, pure); this module does it: it
reads the facts from the store, fires rows, aggregates, persists every state it enters before
returning, and answers the servicer's questions (what a pulling silo should do, whether an
upload or decline may proceed). Handlers ask it; they keep no flags of their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from aggregator.protection.he_vault import EncryptedGlobal, HeVault
from aggregator.protection.masked_session import (
    MaskedAttempt,
    MaskedSession,
    MaskingTrust,
    Stage,
    open_sessions,
)
from aggregator.rounds.budget_schedule import BudgetSchedule
from aggregator.rounds.fedavg import add_summed_deltas, aggregate_on_model, fedavg
from aggregator.rounds.round_table import (
    Action,
    Facts,
    Phase,
    RoundState,
    Transition,
    adapter_for,
    next_transition,
    reports_needed,
    sample_silos,
    task_id_for,
    trainable,
)
from aggregator.store import (
    ClosedAttempt,
    Decline,
    FederationStore,
    LossReport,
    Submission,
    TaskRecord,
)
from privacy.balanced_assignment import assign_clusters
from privacy.he import EncryptedVector, PublicContext, SignedCommitment
from privacy.secagg import MaskedInput, RoundContext, for_plan
from protos import codec
from protos.errors import FailedPrecondition, InvalidInput, PermissionDenied

log = logging.getLogger(__name__)

BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(frozen=True)
class Assignment:
    """What a pulling silo is told to do now (EVALUATE: a FedBiscuit grouping task, with
    the hash of every adapter's globals in `adapter_sha256`)."""

    kind: str  # "WAIT", "TRAIN", "EVALUATE" or "DONE"
    task: TaskRecord | None = None
    globals_sha256: str = ""
    deadline_s: float = 0.0
    message: str = ""
    adapter_sha256: tuple[str, ...] = ()
    secagg: RoundContext | None = None  # masked TRAIN tasks: the secure sum they join
    he_weight_denominator: int = 0  # HE TRAIN tasks: N, the silo encrypts 1/N times its delta


Export = Callable[[list[dict[str, np.ndarray]], Mapping[str, int]], None]
"""Receives the final globals of every adapter and the final cluster assignment (empty for
FedBis) before DONE is persisted."""


class RoundMachine:
    """Applies the table through a store. All methods are thread-safe (one condition).

    `clock` drives deadlines (seconds since the epoch); `export` receives the final globals
    (one dict per adapter) and cluster assignment before DONE is persisted, so DONE always
    means "exported". A masking plan needs `masking` (what silos' keys are checked against);
    its secure sums live only in memory, so an attempt a restart interrupted is re-run.
    """

    def __init__(
        self,
        store: FederationStore,
        clock: Callable[[], float],
        export: Export | None = None,
        masking: MaskingTrust | None = None,
        he: HeVault | None = None,
    ):
        self._store = store
        self._plan = store.plan
        self._clock = clock
        self._export = export
        if self._plan.protection == "masking" and masking is None:
            raise InvalidInput("a masking plan needs the federation CA to check silos' keys")
        self._masking = masking
        if (self._plan.protection == "he") != (he is not None):
            raise InvalidInput("an 'he' plan needs an HeVault, and only an 'he' plan has one")
        self._he = he
        # The secure sums of the attempt in progress, and of the one before it (so silos of an
        # aborted sum learn why, even after the machine moved on to a fresh attempt).
        self._masked: MaskedAttempt | None = None
        self._previous_masked: MaskedAttempt | None = None
        self._schedule = BudgetSchedule(self._plan)
        self._cond = threading.Condition(threading.RLock())
        self._globals_cache: dict[tuple[int, int], tuple[codec.Manifest, np.ndarray]] = {}
        # Silos that have been told the federation finished (in memory: after a restart they
        # simply ask again); the server keeps serving until all know, so none is cut off.
        self._told_finished: set[str] = set()
        with self._cond:
            saved = store.load_state()
            if saved is None:
                state = RoundState(Phase.WAITING_FOR_SILOS, 0, 0, clock())
                store.save_state(state.to_dict())
            else:
                state = RoundState.from_dict(saved)
            self._state = state
            log.info(
                "federation=%s state phase=%s round=%d attempt=%d",
                self._plan.federation_id,
                state.phase,
                state.round,
                state.attempt,
            )
            self._advance()

    @property
    def state(self) -> RoundState:
        with self._cond:
            return self._state

    def tick(self) -> RoundState:
        """Fire whatever the clock now allows (deadlines); the server calls this periodically."""
        with self._cond:
            self._advance()
            return self._state

    def join(self, silo_id: str) -> None:
        with self._cond:
            self._store.join_silo(silo_id, self._clock())
            log.info("federation=%s silo=%s joined", self._plan.federation_id, silo_id)
            self._advance()

    def pull(self, silo_id: str, wait_s: float) -> Assignment:
        """Long-poll up to `wait_s` (real time) for something other than WAIT."""
        give_up = time.monotonic() + max(0.0, wait_s)
        with self._cond:
            if self._store.see_silo(silo_id, self._clock()) is None:
                raise FailedPrecondition(
                    f"silo {silo_id!r} has not joined federation {self._plan.federation_id!r}; "
                    "call Join first"
                )
            while True:
                self._advance()
                if self._state.phase in (Phase.DONE, Phase.FAILED):
                    self._told_finished.add(silo_id)
                    self._cond.notify_all()
                assignment = self._assignment_for(silo_id)
                remaining = give_up - time.monotonic()
                if assignment.kind != "WAIT" or remaining <= 0:
                    return assignment
                self._cond.wait(remaining)

    def current_task(self, silo_id: str, task_id: str) -> TaskRecord:
        """The caller's task if it belongs to the attempt in progress (replays are refused)."""
        with self._cond:
            task = self._owned_task(silo_id, task_id)
            self._advance()
            self._require_current(task)
            return task

    def globals_layout(self, round_: int, adapter: int = 0) -> tuple[codec.TensorSpec, ...]:
        record = self._store.globals_record(round_, adapter)
        if record is None:
            raise FailedPrecondition(f"no globals for round {round_} adapter {adapter}")
        return record.layout

    def globals_vector(self, round_: int, adapter: int = 0) -> tuple[codec.Manifest, np.ndarray]:
        """One adapter's globals at the start of `round_` (cached for the latest round)."""
        if not 0 <= adapter < self._plan.adapters:
            raise InvalidInput(
                f"adapter_index {adapter} does not exist: the plan has {self._plan.adapters}"
            )
        with self._cond:
            key = (round_, adapter)
            if key not in self._globals_cache:
                if any(cached[0] != round_ for cached in self._globals_cache):
                    self._globals_cache.clear()
                self._globals_cache[key] = codec.flatten(self._store.load_globals(round_, adapter))
            return self._globals_cache[key]

    def accept_loss_report(
        self, silo_id: str, task_id: str, losses: tuple[float, ...], ledger_seq: int
    ) -> bool:
        """Store a grouping's loss vector durably; False if it was an identical resend.

        `ledger_seq` is the silo's (already stored) ledger entry for this release."""
        with self._cond:
            task = self._owned_task(silo_id, task_id)
            previous = self._store.loss_report(task_id)
            if previous is not None:
                if previous.losses != losses:
                    raise FailedPrecondition(
                        f"task {task_id!r} already has a different loss report; a release "
                        "cannot be replaced"
                    )
                return False
            self._advance()
            self._require_open(task)
            if task.kind != "evaluate":
                raise FailedPrecondition(f"task {task_id!r} is a {task.kind} task, not evaluate")
            if len(losses) != self._plan.adapters:
                raise InvalidInput(
                    f"loss report has {len(losses)} values; the plan has "
                    f"{self._plan.adapters} adapters"
                )
            report = LossReport(
                task_id, silo_id, task.round, task.attempt, losses, self._clock(), ledger_seq
            )
            self._store.add_loss_report(report)
            log.info(
                "federation=%s round=%d attempt=%d silo=%s loss report accepted",
                self._plan.federation_id,
                task.round,
                task.attempt,
                silo_id,
            )
            self._advance()
            return True

    def upload_target(self, silo_id: str, task_id: str, sha256: str) -> TaskRecord:
        """Check an upload may proceed before its payload is read (a re-upload of the same
        accepted payload may; a different payload for an accepted task may not)."""
        with self._cond:
            task = self._owned_task(silo_id, task_id)
            accepted = self._store.submission(task_id)
            if accepted is not None:
                if accepted.sha256 != sha256:
                    raise FailedPrecondition(
                        f"task {task_id!r} already has an accepted update with a different "
                        "payload; an accepted update cannot be replaced"
                    )
                return task
            self._advance()
            self._require_open(task)
            return task

    def accept_upload(
        self,
        silo_id: str,
        task_id: str,
        update: np.ndarray,
        num_examples: int,
        ledger_seq: int,
    ) -> bool:
        """Store a verified update durably; False if it was an identical re-upload.

        Under masking `update` is the silo's masked ring words: they go into the secure sum
        and only the record that the silo uploaded is stored, never the vector.
        `ledger_seq` is the silo's (already stored) ledger entry for this release: each
        accepted update needs its own, later than those of the silo's earlier updates."""
        sha256 = codec.sha256_of(update)
        with self._cond:
            task = self.upload_target(silo_id, task_id, sha256)
            if self._store.submission(task_id) is not None:
                return False
            self._check_fresh_release(silo_id, ledger_seq)
            now = self._clock()
            submission = Submission(
                task_id, silo_id, task.round, task.attempt, sha256, num_examples, now,
                ledger_seq=ledger_seq,
            )  # fmt: skip
            if self._plan.protection == "masking":
                session = self._session_of(task)
                session.masked_input(silo_id, MaskedInput(session.context, silo_id, update))
                update = None
            self._store.add_submission(submission, update)
            log.info(
                "federation=%s round=%d attempt=%d silo=%s update accepted",
                self._plan.federation_id,
                task.round,
                task.attempt,
                silo_id,
            )
            self._advance()
            return True

    def accept_encrypted_upload(
        self,
        silo_id: str,
        task_id: str,
        encrypted: EncryptedVector,
        signed: SignedCommitment,
        ledger_seq: int,
    ) -> bool:
        """Store a checked HE contribution (ciphertexts and the silo's signed commitment)
        durably; False if it was an identical re-upload. Only ciphertexts are kept."""
        digest = encrypted.manifest.digest()
        with self._cond:
            task = self.upload_target(silo_id, task_id, digest)
            if self._store.submission(task_id) is not None:
                return False
            c = signed.commitment
            expected = (task.round, 1.0 / self._he_denominator(task.adapter_index))
            base = self._globals_digest(task.round, task.adapter_index)
            if (c.round, c.weight) != expected or c.base_digest != base:
                raise FailedPrecondition(
                    f"the commitment of task {task_id!r} is for round {c.round}, weight "
                    f"{c.weight} on base {str(c.base_digest)[:12]}; the task is round "
                    f"{task.round}, weight {expected[1]} on base {base[:12]}"
                )
            self._check_fresh_release(silo_id, ledger_seq)
            self._he.add_contribution(task_id, encrypted, signed)
            submission = Submission(
                task_id, silo_id, task.round, task.attempt, digest, 0, self._clock(),
                ledger_seq=ledger_seq,
            )  # fmt: skip
            self._store.add_submission(submission, None)
            log.info(
                "federation=%s round=%d attempt=%d silo=%s encrypted update accepted",
                self._plan.federation_id,
                task.round,
                task.attempt,
                silo_id,
            )
            self._advance()
            return True

    def _check_fresh_release(self, silo_id: str, ledger_seq: int) -> None:
        used = [s.ledger_seq for s in self._store.submissions(silo_id=silo_id)]
        if used and ledger_seq <= max(used):
            raise FailedPrecondition(
                f"ledger entry seq {ledger_seq} of silo {silo_id!r} already covers an earlier "
                f"update (the last covered seq is {max(used)}); each release needs its own "
                "entry"
            )

    def he_keys(self, silo_id: str) -> tuple[bytes | None, bytes | None, dict[str, bytes]]:
        """(public context, the caller's sealed context, and for the custodian the joined silos
        still without a key with their certificates)."""
        he = self._require_he()
        with self._cond:
            waiting: dict[str, bytes] = {}
            if silo_id == self._plan.he.key_custodian:
                joined = {r.silo_id for r in self._store.silos()}
                waiting = he.certificates(joined - he.keyed_silos() - {silo_id})
            return he.public_bytes(), he.sealed_for(silo_id), waiting

    def he_provide_keys(self, silo_id: str, public: bytes, sealed: Mapping[str, bytes]) -> None:
        he = self._require_he()
        with self._cond:
            joined = {r.silo_id for r in self._store.silos()}
            he.provide_keys(silo_id, public, sealed, joined)
            log.info(
                "federation=%s key_epoch=%d keys provided for silos=%s",
                self._plan.federation_id,
                he.key_epoch,
                ",".join(sorted(sealed)),
            )
            self._advance()

    def he_globals(
        self, silo_id: str, task_id: str | None, adapter: int
    ) -> tuple[int, EncryptedGlobal, dict[str, str]]:
        """(round, the encrypted globals, silo -> task id of what they sum) that the caller's
        current task starts from, or with no task, the final ones of a finished federation."""
        he = self._require_he()
        if not 0 <= adapter < self._plan.adapters:
            raise InvalidInput(
                f"adapter_index {adapter} does not exist: the plan has {self._plan.adapters}"
            )
        with self._cond:
            if task_id is None:
                if self._state.phase != Phase.DONE:
                    raise FailedPrecondition(
                        f"federation {self._plan.federation_id!r} has not finished "
                        f"({self._state.phase}); final globals do not exist yet"
                    )
                round_ = self._plan.rounds
            else:
                task = self.current_task(silo_id, task_id)
                if task.kind == "train" and adapter != task.adapter_index:
                    raise InvalidInput(
                        f"task {task_id!r} trains adapter {task.adapter_index}, not {adapter}"
                    )
                round_ = task.round
            return round_, he.globals(round_, adapter), he.sources(round_, adapter)

    def he_contribution(self, task_id: str) -> tuple[EncryptedVector, SignedCommitment]:
        return self._require_he().contribution(task_id)

    def he_globals_at(self, round_: int, adapter: int) -> EncryptedGlobal:
        return self._require_he().globals(round_, adapter)

    def he_certificates(self, silo_ids: set[str]) -> dict[str, bytes]:
        return self._require_he().certificates(silo_ids)

    def he_public_context(self) -> PublicContext:
        ctx = self._require_he().public_context()
        if ctx is None:
            raise FailedPrecondition("the key custodian has not provided the CKKS keys yet")
        return ctx

    def he_length(self, adapter: int) -> int:
        """Values in adapter `adapter`'s flat vector (fixed by the initial globals)."""
        return self._require_he().globals(0, adapter).vector.manifest.length

    def he_remember_certificate(self, silo_id: str, cert_pem: bytes) -> None:
        he = self._require_he()
        with self._cond:
            he.remember_certificate(silo_id, cert_pem)

    def _require_he(self) -> HeVault:
        if self._he is None:
            raise FailedPrecondition(
                f"federation {self._plan.federation_id!r} does not use homomorphic mode "
                f"(protection {self._plan.protection!r})"
            )
        return self._he

    def decline(
        self, silo_id: str, task_id: str, reason_code: str, message: str, epsilon_spent: float
    ) -> None:
        """Record a refusal; `budget_exhausted` takes the silo out of all future samples."""
        with self._cond:
            task = self._owned_task(silo_id, task_id)
            if self._store.decline(task_id) is not None:
                return
            self._advance()
            self._require_open(task)
            decline = Decline(
                task_id,
                silo_id,
                task.round,
                task.attempt,
                reason_code,
                message,
                epsilon_spent,
                self._clock(),
            )
            exhausted = reason_code == BUDGET_EXHAUSTED
            self._store.add_decline(decline, mark_exhausted=exhausted)
            log.info(
                "federation=%s round=%d attempt=%d silo=%s declined reason=%s",
                self._plan.federation_id,
                task.round,
                task.attempt,
                silo_id,
                reason_code,
            )
            self._advance()

    def secagg_submit(
        self, silo_id: str, task_id: str, deliver: Callable[[MaskedSession], None]
    ) -> None:
        """Hand one SecAgg+ message of a masked TRAIN task to its session (`deliver` calls
        the session's method for that message), then close whatever that completes."""
        with self._cond:
            task = self.current_task(silo_id, task_id)
            deliver(self._session_of(task))
            self._advance()

    def secagg_fetch(
        self, silo_id: str, task_id: str, stage: Stage, wait_s: float
    ) -> tuple[RoundContext, object | None, str]:
        """Long-poll up to `wait_s` (real time) for a stage's broadcast to this silo:
        (context, broadcast or None if not ready, abort reason or "")."""
        give_up = time.monotonic() + max(0.0, wait_s)
        with self._cond:
            while True:
                aborted = self._aborted_session(self._owned_task(silo_id, task_id))
                if aborted is not None:
                    return aborted.context, None, aborted.abort_reason
                task = self.current_task(silo_id, task_id)
                session = self._session_of(task)
                if stage in session.broadcasts:
                    return session.context, self._broadcast_for(session, stage, silo_id), ""
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    return session.context, None, ""
                self._cond.wait(min(remaining, 1.0))

    def _broadcast_for(self, session: MaskedSession, stage: Stage, silo_id: str) -> object:
        broadcast = session.broadcasts[stage]
        if stage is Stage.SHARES:
            if silo_id not in broadcast:
                raise FailedPrecondition(
                    f"silo {silo_id!r} did not share its keys in time for round "
                    f"{session.context.round}; it takes no further part"
                )
            return broadcast[silo_id]
        return broadcast

    def _aborted_session(self, task: TaskRecord) -> MaskedSession | None:
        for masked in (self._masked, self._previous_masked):
            if masked is not None and masked.covers(task.round, task.attempt):
                session = masked.session(task.adapter_index)
                if session is not None and session.abort_reason:
                    return session
        return None

    def _session_of(self, task: TaskRecord) -> MaskedSession:
        masked = self._masked
        session = None
        if masked is not None and masked.covers(task.round, task.attempt):
            session = masked.session(task.adapter_index)
        if task.kind != "train" or session is None or task.silo_id not in session.members:
            raise FailedPrecondition(
                f"task {task.task_id!r} has no secure aggregation session (not a masked "
                "training task of the attempt in progress)"
            )
        return session

    def wait_until_finished(self, timeout_s: float | None) -> Phase:
        """Block (real time) until DONE or FAILED or the timeout; returns the phase then."""
        give_up = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._state.phase not in (Phase.DONE, Phase.FAILED):
                remaining = None if give_up is None else give_up - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._state.phase

    def wait_until_all_told_finished(self, timeout_s: float) -> bool:
        """Block (real time) until every joined silo has pulled since the federation finished;
        False if some had not by the timeout (e.g. a silo that crashed)."""
        give_up = time.monotonic() + timeout_s
        with self._cond:
            while True:
                joined = {record.silo_id for record in self._store.silos()}
                if joined <= self._told_finished:
                    return True
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def _owned_task(self, silo_id: str, task_id: str) -> TaskRecord:
        task = self._store.task(task_id)
        if task is None:
            raise FailedPrecondition(f"task {task_id!r} was never issued by this aggregator")
        if task.silo_id != silo_id:
            raise PermissionDenied(f"task {task_id!r} was not issued to silo {silo_id!r}")
        return task

    def _require_current(self, task: TaskRecord) -> None:
        s = self._state
        phase = Phase.GROUPING if task.kind == "evaluate" else Phase.TRAINING
        if s.phase != phase or (task.round, task.attempt) != (s.round, s.attempt):
            raise FailedPrecondition(
                f"task {task.task_id!r} is for round {task.round} attempt {task.attempt}, but the "
                f"federation is {s.phase} at round {s.round} attempt {s.attempt}"
            )

    def _require_open(self, task: TaskRecord) -> None:
        self._require_current(task)
        if self._store.submission(task.task_id) is not None:
            raise FailedPrecondition(f"task {task.task_id!r} already has an accepted update")
        if self._store.loss_report(task.task_id) is not None:
            raise FailedPrecondition(f"task {task.task_id!r} already has a loss report")
        if self._store.decline(task.task_id) is not None:
            raise FailedPrecondition(f"task {task.task_id!r} was declined")

    def _assignment_for(self, silo_id: str) -> Assignment:
        s = self._state
        if s.phase == Phase.DONE:
            return Assignment("DONE", message=f"federation finished after {s.round} rounds")
        if s.phase == Phase.FAILED:
            raise FailedPrecondition(f"federation {self._plan.federation_id!r} failed: {s.reason}")
        if s.phase == Phase.TRAINING and silo_id in s.sampled:
            task_id = task_id_for(s.round, s.attempt, silo_id)
            if self._store.submission(task_id) is None and self._store.decline(task_id) is None:
                task = self._store.task(task_id)
                if task is None:
                    adapter = adapter_for(s, self._plan, silo_id)
                    task = TaskRecord(
                        task_id, silo_id, s.round, s.attempt, self._clock(), "train", adapter
                    )
                    self._store.add_task(task)
                return Assignment(
                    "TRAIN",
                    task,
                    self._globals_digest(s.round, task.adapter_index),
                    s.started_at_s + self._plan.round_deadline_s,
                    secagg=self._masked_context(task),
                    he_weight_denominator=self._he_denominator(task.adapter_index),
                )
        if s.phase == Phase.GROUPING and silo_id in s.sampled:
            task_id = task_id_for(s.round, s.attempt, silo_id, "evaluate")
            if self._store.loss_report(task_id) is None and self._store.decline(task_id) is None:
                task = self._store.task(task_id)
                if task is None:
                    task = TaskRecord(
                        task_id, silo_id, s.round, s.attempt, self._clock(), "evaluate"
                    )
                    self._store.add_task(task)
                hashes = tuple(self._globals_digest(s.round, k) for k in range(self._plan.adapters))
                return Assignment(
                    "EVALUATE",
                    task,
                    deadline_s=s.started_at_s + self._plan.round_deadline_s,
                    adapter_sha256=hashes,
                )
        silo = next(r for r in self._store.silos() if r.silo_id == silo_id)
        if silo.exhausted or silo_id in self._schedule.unaffordable(self._store):
            return Assignment("WAIT", message="this silo's privacy budget is exhausted")
        return Assignment("WAIT", message=f"{s.phase} round {s.round}: no task for this silo")

    def _globals_digest(self, round_: int, adapter: int) -> str:
        """What a task names as its starting globals: the SHA-256 of the plaintext vector, or
        under HE the digest of the ciphertext manifest (which commits to every ciphertext)."""
        if self._he is not None:
            return self._he.globals(round_, adapter).vector.manifest.digest()
        return self._store.globals_record(round_, adapter).sha256

    def _he_denominator(self, adapter: int) -> int:
        """N for HE aggregate-on-model: the silos sampled for `adapter` (FedBis, warm-up) or
        its cluster's size; a silo that drops out leaves its 1/N on the previous global."""
        if self._he is None:
            return 0
        s = self._state
        if self._plan.warmup_adapter(s.round) is not None:
            return len(s.sampled)
        return list(s.clusters.values()).count(adapter)

    def _masked_context(self, task: TaskRecord) -> RoundContext | None:
        if self._plan.protection != "masking":
            return None
        return self._session_of(task).context

    def _current_masked(self) -> MaskedAttempt | None:
        """The secure sums of the attempt in progress; None if a restart lost them."""
        s, masked = self._state, self._masked
        if s.phase == Phase.TRAINING and masked is not None and masked.covers(s.round, s.attempt):
            return masked
        return None

    def _facts(self) -> Facts:
        s = self._state
        uploads = self._store.submissions(round_=s.round, attempt=s.attempt)
        declines = self._store.declines(round_=s.round, attempt=s.attempt)
        reports = self._store.loss_reports(round_=s.round, attempt=s.attempt)
        # A silo whose verified ledger cannot afford another round is out, like an exhausted one.
        out = self._schedule.unaffordable(self._store)
        uploaded = frozenset(u.silo_id for u in uploads)
        if self._he is not None:
            # A silo without this epoch's key could neither decrypt nor be summed: not sampled.
            keyed = self._he.keyed_silos()
            out = out | {r.silo_id for r in self._store.silos() if r.silo_id not in keyed}
        masked_open = False
        if self._plan.protection == "masking":
            # Only silos inside a completed secure sum count; none if a restart lost the sums.
            masked = self._current_masked()
            uploaded = masked.survivors if masked is not None else frozenset()
            masked_open = masked is not None and masked.open
        return Facts(
            self._clock(),
            tuple(
                r.silo_id for r in self._store.silos() if not r.exhausted and r.silo_id not in out
            ),
            uploaded,
            frozenset(d.silo_id for d in declines),
            frozenset(r.silo_id for r in reports),
            masked_open,
        )

    def _advance(self) -> None:
        changed = False
        masked = self._current_masked()
        if masked is not None:
            s = self._state
            declined = {d.silo_id for d in self._store.declines(round_=s.round, attempt=s.attempt)}
            changed = masked.step(self._clock(), declined)
        while (row := next_transition(self._state, self._facts(), self._plan)) is not None:
            self._apply(row)
            changed = True
        if changed:
            self._cond.notify_all()

    def _apply(self, row: Transition) -> None:
        s, plan, now = self._state, self._plan, self._clock()
        fields = f"federation={plan.federation_id} round={s.round} attempt={s.attempt}"
        closing = ClosedAttempt(s.round, s.attempt, aggregated=row.action != Action.RETRY)
        # What every later state of this federation carries over: the grouping it is under.
        grouping = {"grouped_round": s.grouped_round, "assignment": s.assignment}
        if row.action == Action.START_ATTEMPT:
            sample = sample_silos(plan, s.round, s.attempt, trainable(s, self._facts(), plan))
            new, closing = replace(s, phase=row.target, started_at_s=now, sampled=sample), None
            if plan.protection == "masking":
                self._previous_masked, self._masked = self._masked, self._open_masked(new)
            log.info("%s round started silos=%s", fields, ",".join(sample))
        elif row.action == Action.START_GROUPING:
            everyone = self._facts().eligible
            new = replace(s, phase=row.target, started_at_s=now, sampled=everyone)
            closing = None
            log.info("%s grouping started silos=%s", fields, ",".join(everyone))
        elif row.action == Action.ASSIGN:
            assignment = self._assign()
            new = RoundState(
                row.target, s.round, s.attempt + 1, now, grouped_round=s.round,
                assignment=assignment,
            )  # fmt: skip
            log.info(
                "%s grouped clusters=%s",
                fields,
                ";".join(f"{silo}:{k}" for silo, k in assignment),
            )
        elif row.action == Action.RETRY_GROUPING:
            new = RoundState(row.target, s.round, s.attempt + 1, now, **grouping)
            log.warning("%s too few loss reports: grouping again", fields)
        elif row.action == Action.FAIL:
            eligible = self._facts().eligible
            reason = (
                f"round {s.round} cannot run: only {len(eligible)} silo(s) are still eligible "
                f"(the others exhausted their privacy budget or have no cluster yet), "
                f"min_silos is {plan.min_silos}"
            )
            if row.guard == "grouping_lost":
                reason = (
                    f"round {s.round} cannot be grouped: only {len(eligible)} silo(s) are still "
                    f"eligible, and {reports_needed(plan)} loss reports are needed "
                    "(clusters × min_cluster_silos)"
                )
            new, closing = replace(s, phase=row.target, reason=reason), None
            log.error("%s federation failed: %s", fields, reason)
        elif row.action == Action.AGGREGATE:
            self._aggregate(s.round + 1)
            new = RoundState(row.target, s.round + 1, 0, now, **grouping)
            log.info("%s round aggregated", fields)
        elif row.action == Action.FINISH:
            final = self._aggregate(plan.rounds)
            if self._export is not None and self._he is None:  # under HE only silos decrypt
                self._export(final, s.clusters)
            new = RoundState(row.target, plan.rounds, 0, now, **grouping)
            log.info("%s federation done", fields)
        else:
            new = RoundState(row.target, s.round, s.attempt + 1, now, **grouping)
            log.warning(
                "%s too few uploads (min_silos=%d): re-running the round with a fresh sample",
                fields,
                plan.min_silos,
            )
        self._store.save_state(new.to_dict(), closing)
        self._state = new

    def _open_masked(self, state: RoundState) -> MaskedAttempt:
        """Fresh secure sums for a new attempt: one per adapter its sampled silos train."""
        members: dict[int, list[str]] = {}
        for silo in state.sampled:
            members.setdefault(adapter_for(state, self._plan, silo), []).append(silo)
        lengths = {k: self.globals_vector(state.round, k)[1].size for k in members}
        assert self._masking is not None and self._plan.secagg is not None
        sessions = open_sessions(
            for_plan(self._plan),
            self._plan.federation_id,
            state.round,
            self._plan.sha256(),
            {k: tuple(silos) for k, silos in members.items()},
            lengths,
            self._masking,
            now_s=state.started_at_s,
            phase_timeout_s=self._plan.secagg.phase_timeout_s,
            masked_deadline_s=state.started_at_s + self._plan.round_deadline_s,
        )
        return MaskedAttempt(state.round, state.attempt, sessions)

    def _assign(self) -> tuple[tuple[str, int], ...]:
        """Balanced clusters from this grouping's loss reports; silos that did not report keep
        the cluster they had (or stay unassigned until the next grouping)."""
        s, fb = self._state, self._plan.fedbiscuit
        reports = sorted(
            self._store.loss_reports(round_=s.round, attempt=s.attempt), key=lambda r: r.silo_id
        )
        losses = np.array([r.losses for r in reports], dtype=np.float64)
        chosen = assign_clusters(losses, fb.assignment)
        clusters = s.clusters
        clusters.update({r.silo_id: k for r, k in zip(reports, chosen, strict=True)})
        return tuple(sorted(clusters.items()))

    def _aggregate(self, next_round: int) -> list[dict[str, np.ndarray]]:
        """This attempt's uploads into the globals of every adapter that `next_round` starts
        from: FedAvg in FedBis and warm-up, aggregate-on-model per cluster afterwards; an
        adapter nobody trained is carried over unchanged."""
        s, plan = self._state, self._plan
        submissions = self._store.submissions(round_=s.round, attempt=s.attempt)
        by_adapter: dict[int, list[Submission]] = {}
        for sub in submissions:
            adapter = self._store.task(sub.task_id).adapter_index
            by_adapter.setdefault(adapter, []).append(sub)
        warmup = plan.warmup_adapter(s.round) is not None
        sizes = {k: list(s.clusters.values()).count(k) for k in range(plan.adapters)}
        min_members = plan.fedbiscuit.min_cluster_silos if plan.fedbiscuit else 1
        finals = []
        if self._he is not None:
            for adapter in range(plan.adapters):
                subs = sorted(by_adapter.get(adapter, []), key=lambda sub: sub.silo_id)
                enough = len(subs) >= max(plan.he.min_contributors, 1 if warmup else min_members)
                tasks = [sub.task_id for sub in subs] if enough else []
                self._he.aggregate(s.round, adapter, tasks, next_round)
            return finals
        for adapter in range(plan.adapters):
            manifest, globals_vec = self.globals_vector(s.round, adapter)
            if plan.protection == "masking":
                vector = self._masked_globals(adapter, globals_vec, warmup, sizes, min_members)
                tensors = codec.unflatten(manifest, vector)
                self._store.put_globals(next_round, tensors, adapter)
                finals.append(tensors)
                continue
            subs = by_adapter.get(adapter, [])
            deltas = [self._store.load_update(sub.task_id) for sub in subs]
            if not deltas or (not warmup and len(deltas) < min_members):
                vector = globals_vec
            elif warmup:
                if plan.weighting == "num_examples":
                    weights = [float(sub.num_examples) for sub in subs]
                else:
                    weights = [1.0] * len(subs)
                vector = fedavg(globals_vec, deltas, weights)
            else:
                vector = aggregate_on_model(globals_vec, deltas, sizes[adapter])
            tensors = codec.unflatten(manifest, vector)
            self._store.put_globals(next_round, tensors, adapter)
            finals.append(tensors)
        return finals

    def _masked_globals(
        self,
        adapter: int,
        globals_vec: np.ndarray,
        warmup: bool,
        sizes: Mapping[int, int],
        min_members: int,
    ) -> np.ndarray:
        """The next globals of `adapter` from its secure sum alone (uniform FedAvg in warm-up
        and FedBis, aggregate-on-model afterwards); unchanged if it has none."""
        masked = self._current_masked()
        session = masked.session(adapter) if masked is not None else None
        result = session.result if session is not None else None
        count = 0 if result is None else len(result.silos)
        if count == 0 or (not warmup and count < min_members):
            return globals_vec
        divisor = count if warmup else max(sizes[adapter], count)
        return add_summed_deltas(globals_vec, result.total, divisor)
