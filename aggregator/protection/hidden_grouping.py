"""Hidden membership's grouping (DESIGN.md §3): the aggregator relays, the silos agree.

Each grouping attempt drives one :class:`~privacy.membership.GroupingRelay` over the
candidates (the silos asked to report, with the certificates they joined with): sealed loss
reports close when every candidate reported or declined, when too few still can, or at the
grouping deadline (the final roster is whoever reported); confirmations close when every
final-roster silo confirmed, or abort `secagg.phase_timeout_s` after the reports closed.
What the round state keeps of an agreed grouping is its digest and final roster, never a
loss or an assignment (the aggregator never has either). Relays live in memory only: an
aggregator restart mid-grouping finds none, and the round machine re-runs the grouping as a
new attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509

from aggregator.federation_trust import FederationTrust
from aggregator.protection.grouping import Grouping
from aggregator.rounds.round_table import Phase, RoundState
from aggregator.store import FederationStore, TaskRecord
from privacy.membership import (
    CandidateRoster,
    Confirmation,
    GroupingAborted,
    GroupingContext,
    GroupingRelay,
    RelayPhase,
)
from privacy.secagg.keys import verify_silo_certificate
from protos.errors import FailedPrecondition, FedbiscuitError, InvalidInput

log = logging.getLogger(__name__)

_CERT_KEY = "membership/certs/"


@dataclass
class GroupingAttempt:
    """One grouping attempt's relay and what the aggregator may keep of it."""

    round: int
    attempt: int
    relay: GroupingRelay | None  # None: it could not even start (abort_reason says why)
    abort_reason: str = ""
    reports_closed_s: float | None = None
    final_roster: tuple[str, ...] = ()
    confirmed: dict[str, Confirmation] = field(default_factory=dict)

    @property
    def agreed(self) -> bool:
        return self.relay is not None and self.relay.phase is RelayPhase.AGREED

    @property
    def aborted(self) -> bool:
        return bool(self.abort_reason)


class HiddenGrouping(Grouping):
    """The relay of the grouping attempt in progress (and of the one before it, so silos of
    an aborted attempt learn why after the machine moved on)."""

    def __init__(self, store: FederationStore, trust: FederationTrust) -> None:
        super().__init__(store)
        self._trust = trust
        self._current: GroupingAttempt | None = None
        self._previous: GroupingAttempt | None = None
        self._pems: dict[str, bytes] = {}  # the certificates on file, read once
        self._serials: dict[bytes, int] = {}

    # -- certificates: what candidates are shown of each other ---------------------------------

    def remember_certificate(self, silo_id: str, cert_pem: bytes) -> None:
        """The certificate a silo joined with (relayed to the other candidates, who check it)."""
        if self._certificate(silo_id) != cert_pem:
            self._store.put_artifact(_CERT_KEY + silo_id, cert_pem)
            self._pems[silo_id] = cert_pem

    def _certificate(self, silo_id: str) -> bytes | None:
        if silo_id not in self._pems:
            pem = self._store.artifact(_CERT_KEY + silo_id)
            if pem is None:
                return None
            self._pems[silo_id] = pem
        return self._pems[silo_id]

    def without_certificate(self, silo_ids: Collection[str]) -> frozenset[str]:
        """Silos no grouping can name: no joined certificate on file, or a revoked one (so
        the round machine neither samples them nor starts a grouping it cannot finish)."""
        revoked = self._trust.revoked_serials()
        out = set()
        for silo_id in silo_ids:
            pem = self._certificate(silo_id)
            if pem is None or self._serial(pem) in revoked:
                out.add(silo_id)
        return frozenset(out)

    def _serial(self, pem: bytes) -> int:
        if pem not in self._serials:
            self._serials[pem] = x509.load_pem_x509_certificate(pem).serial_number
        return self._serials[pem]

    def _candidates(self, state: RoundState, now: datetime) -> dict[str, bytes]:
        """The sampled silos whose joined certificate passes the CA checks now; any other is
        left out of the grouping (it could not check, nor be checked by, the others)."""
        certs = {}
        for silo_id in state.sampled:
            pem = self._certificate(silo_id)
            try:
                if pem is None:
                    raise InvalidInput("no certificate on file")
                verify_silo_certificate(
                    pem,
                    self._trust.ca_certs[0],
                    self._plan.federation_id,
                    silo_id,
                    now,
                    self._trust.revoked_serials(),
                )
            except FedbiscuitError as error:
                log.warning(
                    "federation=%s round=%d silo=%s left out of the grouping: %s",
                    self._plan.federation_id,
                    state.round,
                    silo_id,
                    error,
                )
                continue
            certs[silo_id] = pem
        return certs

    # -- the round machine's hook --------------------------------------------------------------

    def open(self, state: RoundState) -> None:
        plan = self._plan
        now = datetime.fromtimestamp(state.started_at_s, UTC)
        certs = self._candidates(state, now)
        context = GroupingContext(
            plan.federation_id, state.round, state.attempt, plan.sha256(), plan.adapters
        )
        attempt = GroupingAttempt(state.round, state.attempt, None)
        try:
            attempt.relay = GroupingRelay(
                CandidateRoster(context, certs),
                plan.fedbiscuit.min_cluster_silos,
                self._trust.ca_certs[0],
                now,
                revoked_serials=self._trust.revoked_serials(),
            )
        except FedbiscuitError as error:
            attempt.abort_reason = f"the grouping cannot start: {error}"
            self._log_abort(attempt)
        self._previous, self._current = self._current, attempt

    def evaluate_carries(self, state: RoundState, task: TaskRecord) -> CandidateRoster:
        attempt = self.attempt_of(task)
        if attempt is None or attempt.relay is None or attempt.aborted:
            raise FailedPrecondition(f"task {task.task_id!r}: its grouping attempt is not running")
        roster = attempt.relay.roster
        if task.silo_id not in roster.certificates:
            raise FailedPrecondition(f"silo {task.silo_id!r} is not a candidate of this grouping")
        return roster

    def take_report(
        self, task: TaskRecord, losses: tuple[float, ...], sealed: Mapping[str, bytes]
    ) -> None:
        if losses:
            raise InvalidInput(
                "this plan hides cluster membership (fedbiscuit membership 'hidden'): a loss "
                "report's losses travel sealed to the other silos and `losses` must be empty"
            )
        if not sealed:
            raise InvalidInput("a hidden-membership loss report must carry its sealed blobs")
        attempt = self.attempt_of(task)
        if attempt is None or attempt.relay is None or attempt.aborted:
            raise FailedPrecondition(f"task {task.task_id!r}: its grouping attempt is not running")
        attempt.relay.receive_reports(task.silo_id, sealed)

    def outcome(
        self, state: RoundState, reported: frozenset[str]
    ) -> tuple[frozenset[str], bool | None]:
        """In GROUPING: the final roster once agreed, nobody if aborted or lost (a restart),
        else still running."""
        if state.phase != Phase.GROUPING:
            return reported, None
        attempt = self._covering(state.round, state.attempt)
        if attempt is None or attempt.aborted:
            return frozenset(), False
        if attempt.agreed:
            return frozenset(attempt.final_roster), False
        return reported, True

    def step(self, state: RoundState, now_s: float) -> bool:
        """Close the reports or the confirmations when their time has come."""
        attempt = self._covering(state.round, state.attempt)
        if state.phase != Phase.GROUPING or attempt is None or attempt.relay is None:
            return False
        if attempt.aborted or attempt.agreed:
            return False
        relay = attempt.relay
        try:
            if relay.phase is RelayPhase.REPORTS:
                if not self._reports_due(state, attempt, now_s):
                    return False
                attempt.final_roster = relay.close_reports()
                attempt.reports_closed_s = now_s
                log.info(
                    "federation=%s round=%d attempt=%d grouping reports closed reporters=%d",
                    self._plan.federation_id,
                    attempt.round,
                    attempt.attempt,
                    len(attempt.final_roster),
                )
                return True
            everyone = set(attempt.confirmed) >= set(attempt.final_roster)
            timeout = self._plan.secagg.phase_timeout_s
            if not everyone and now_s < (attempt.reports_closed_s or 0.0) + timeout:
                return False
            relay.close_confirmations()
        except GroupingAborted as error:
            attempt.abort_reason = str(error)
            self._log_abort(attempt)
        return True

    def assign(self, state: RoundState) -> tuple[dict, str]:
        attempt = self._covering(state.round, state.attempt)
        if attempt is None or not attempt.agreed:
            raise FailedPrecondition(f"round {state.round}: no agreed grouping to assign")
        digest = attempt.relay.digest.hex()
        fields = {"assignment": (), "grouping_digest": digest}
        fields["grouped_silos"] = attempt.final_roster
        return fields, f"silos={len(attempt.final_roster)} digest={digest[:16]}"

    def sample(self, state: RoundState, trainable: tuple[str, ...]) -> tuple[str, ...]:
        """Warm-up rounds draw as visible; a grouped round asks every grouped silo. A draw made
        without knowing the clusters could leave one below `min_cluster_silos`; the silos would
        refuse that round, and each refusal would tell the aggregator something about who is in
        which cluster."""
        if self._plan.warmup_adapter(state.round) is not None:
            return super().sample(state, trainable)
        return tuple(sorted(trainable))

    def adapter_of(self, state: RoundState, silo_id: str) -> int:
        """The warm-up's adapter; afterwards 0, meaningless: every sampled silo uploads K slots
        into one secure sum, and no task names a silo's cluster."""
        warmup = self._plan.warmup_adapter(state.round)
        if warmup is not None:
            return warmup
        if silo_id not in state.grouped_silos:
            raise ValueError(f"silo {silo_id!r} is not grouped in round {state.round}")
        return 0

    def cluster_sizes(self, state: RoundState) -> dict[int, int]:
        """Unknown to the aggregator: each round's secure sum carries the agreed sizes."""
        return {}

    # -- the grouping RPCs (under the machine's lock) -----------------------------------------

    def attempt_of(self, task: TaskRecord) -> GroupingAttempt | None:
        if task.kind != "evaluate":
            raise FailedPrecondition(f"task {task.task_id!r} is a {task.kind} task, not evaluate")
        return self._covering(task.round, task.attempt)

    def confirm(self, task: TaskRecord, confirmation: Confirmation) -> None:
        attempt = self.attempt_of(task)
        if attempt is None or attempt.relay is None or attempt.aborted:
            raise FailedPrecondition(f"task {task.task_id!r}: its grouping attempt is not running")
        attempt.relay.receive_confirmation(task.silo_id, confirmation)
        attempt.confirmed[task.silo_id] = confirmation

    def _covering(self, round_: int, attempt: int) -> GroupingAttempt | None:
        for candidate in (self._current, self._previous):
            if candidate is not None and (candidate.round, candidate.attempt) == (round_, attempt):
                return candidate
        return None

    def _reports_due(self, state: RoundState, attempt: GroupingAttempt, now_s: float) -> bool:
        relay = attempt.relay
        declines = self._store.declines(round_=state.round, attempt=state.attempt)
        declined = {d.silo_id for d in declines}
        pending = set(relay.roster.silo_ids) - set(relay.reporters) - declined
        needed = self._plan.fedbiscuit.clusters * self._plan.fedbiscuit.min_cluster_silos
        hopeless = len(relay.reporters) + len(pending) < needed
        return not pending or hopeless or now_s >= state.started_at_s + self._plan.round_deadline_s

    def _log_abort(self, attempt: GroupingAttempt) -> None:
        log.warning(
            "federation=%s round=%d attempt=%d grouping aborted: %s",
            self._plan.federation_id,
            attempt.round,
            attempt.attempt,
            attempt.abort_reason,
        )
