"""The aggregator's side of masked training (plan protection "masking", DESIGN.md §5).

One :class:`MaskedSession` per adapter trained in an attempt drives a
:class:`~privacy.secagg.SecAggServer` through its phases on the aggregator's clock: a phase
closes as soon as every silo expected in it has answered, or when its time is up (the
masked-input phase, which includes training, gets the round deadline; the others the plan's
`secagg.phase_timeout_s`). What a phase's closing produces is kept as that stage's
broadcast for the silos to fetch.

Sessions live in memory only and hold no individual update (the SecAgg+ server keeps only
the running masked sum). An aggregator restart loses them, and the round machine re-runs
the attempt with fresh keys and seeds: masks are never reused.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Collection, Mapping
from datetime import UTC, datetime

from aggregator.federation_trust import FederationTrust
from privacy.secagg import (
    AggregateResult,
    RoundContext,
    SecAggAborted,
    SecAggParams,
    SecAggServer,
    ServerPhase,
)
from privacy.secagg.messages import (
    EncryptedShares,
    KeyAdvertisement,
    MaskedInput,
    SurvivorSignature,
    UnmaskResponse,
)
from protos.errors import FailedPrecondition

log = logging.getLogger(__name__)


class Stage(enum.StrEnum):
    """What silos fetch, in order; each is produced by closing the phase before it."""

    ROSTER = "roster"
    SHARES = "shares"
    SURVIVORS = "survivors"
    UNMASK = "unmask"


_PRODUCES = {
    ServerPhase.KEYS: Stage.ROSTER,
    ServerPhase.SHARES: Stage.SHARES,
    ServerPhase.MASKED: Stage.SURVIVORS,
    ServerPhase.SIGNATURES: Stage.UNMASK,
}


class MaskedSession:
    """One secure sum: the silos sampled to train one adapter in one attempt."""

    def __init__(
        self,
        params: SecAggParams,
        context: RoundContext,
        members: tuple[str, ...],
        vector_length: int,
        trust: FederationTrust,
        *,
        now_s: float,
        phase_timeout_s: float,
        masked_deadline_s: float,
    ):
        self.context = context
        self.members = members
        self._server = SecAggServer(
            params,
            context,
            vector_length,
            trust.ca_certs[0],
            datetime.fromtimestamp(now_s, UTC),
            revoked_serials=trust.revoked_serials(),
        )
        self._phase_timeout_s = phase_timeout_s
        self._masked_deadline_s = masked_deadline_s
        self._phase_started_s = now_s
        self._answered: set[str] = set()
        self._expected: frozenset[str] = frozenset(members)
        self.broadcasts: dict[Stage, object] = {}
        self.result: AggregateResult | None = None
        self.abort_reason = ""

    @property
    def finished(self) -> bool:
        return self.result is not None or bool(self.abort_reason)

    @property
    def phase(self) -> ServerPhase:
        return self._server.phase

    # -- what silos send --------------------------------------------------------------------

    def advertise(self, sender: str, message: KeyAdvertisement) -> None:
        self._receive(ServerPhase.KEYS, sender, self._server.receive_advertisement, message)

    def share(self, sender: str, message: EncryptedShares) -> None:
        self._receive(ServerPhase.SHARES, sender, self._server.receive_shares, message)

    def masked_input(self, sender: str, message: MaskedInput) -> None:
        self._receive(ServerPhase.MASKED, sender, self._server.receive_masked_input, message)

    def sign(self, sender: str, message: SurvivorSignature) -> None:
        self._receive(
            ServerPhase.SIGNATURES, sender, self._server.receive_survivor_signature, message
        )

    def unmask(self, sender: str, message: UnmaskResponse) -> None:
        self._receive(ServerPhase.UNMASK, sender, self._server.receive_unmask_response, message)

    def _receive(self, phase: ServerPhase, sender: str, receive, message: object) -> None:
        if self.abort_reason:
            raise FailedPrecondition(f"secure aggregation aborted: {self.abort_reason}")
        if self._server.phase is not phase:
            raise FailedPrecondition(
                f"silo {sender!r}: secure aggregation is in phase {self._server.phase.value}, "
                f"not {phase.value}"
            )
        receive(sender, message)
        self._answered.add(sender)

    # -- the clock --------------------------------------------------------------------------

    def step(self, now_s: float, declined: Collection[str]) -> bool:
        """Close every phase that is complete or out of time; True if anything changed."""
        changed = False
        while not self.finished and self._closable(now_s, declined):
            self._close(now_s)
            changed = True
        return changed

    def _closable(self, now_s: float, declined: Collection[str]) -> bool:
        waiting = self._expected - self._answered - set(declined)
        if not waiting:
            return True
        timeout = self._phase_started_s + self._phase_timeout_s
        if self._server.phase is ServerPhase.MASKED:
            timeout = max(timeout, self._masked_deadline_s)
        return now_s >= timeout

    def _close(self, now_s: float) -> None:
        phase = self._server.phase
        try:
            if phase is ServerPhase.KEYS:
                produced: object = self._server.close_advertising()
                expected = produced.silo_ids
            elif phase is ServerPhase.SHARES:
                produced = self._server.close_sharing()
                expected = tuple(produced)
            elif phase is ServerPhase.MASKED:
                produced = self._server.close_masking()
                expected = produced.survivors
            elif phase is ServerPhase.SIGNATURES:
                produced = self._server.close_consistency()
                expected = tuple(produced.signatures)
            else:
                self.result = self._server.finish()
                log.info(
                    "round=%d secagg finished silos=%s",
                    self.context.round,
                    ",".join(self.result.silos),
                )
                return
        except SecAggAborted as error:
            self.abort_reason = str(error)
            log.warning("round=%d secagg aborted: %s", self.context.round, error)
            return
        self.broadcasts[_PRODUCES[phase]] = produced
        self._expected = frozenset(expected)
        self._answered = set()
        self._phase_started_s = now_s


def open_sessions(
    params: SecAggParams,
    federation_id: str,
    round_: int,
    plan_sha256: str,
    members_by_adapter: Mapping[int, tuple[str, ...]],
    vector_length: Mapping[int, int],
    trust: FederationTrust,
    *,
    now_s: float,
    phase_timeout_s: float,
    masked_deadline_s: float,
    grouping_digest: bytes = b"",
) -> dict[int, MaskedSession]:
    """One fresh session per adapter, each with a new random public seed (never reused);
    `grouping_digest` binds a hidden-membership round to the grouping its silos confirmed."""
    return {
        adapter: MaskedSession(
            params,
            RoundContext(federation_id, round_, plan_sha256, os.urandom(32), grouping_digest),
            members,
            vector_length[adapter],
            trust,
            now_s=now_s,
            phase_timeout_s=phase_timeout_s,
            masked_deadline_s=masked_deadline_s,
        )
        for adapter, members in sorted(members_by_adapter.items())
    }


class MaskedAttempt:
    """The sessions of the training attempt in progress, one per adapter being trained."""

    def __init__(self, round_: int, attempt: int, sessions: Mapping[int, MaskedSession]):
        self.round = round_
        self.attempt = attempt
        self._sessions = dict(sessions)

    def covers(self, round_: int, attempt: int) -> bool:
        return (self.round, self.attempt) == (round_, attempt)

    @property
    def open(self) -> bool:
        """Some session is still running its protocol."""
        return any(not session.finished for session in self._sessions.values())

    @property
    def survivors(self) -> frozenset[str]:
        """Silos whose masked update is inside a completed secure sum."""
        return frozenset(
            silo
            for session in self._sessions.values()
            if session.result is not None
            for silo in session.result.silos
        )

    def session(self, adapter: int) -> MaskedSession | None:
        return self._sessions.get(adapter)

    def step(self, now_s: float, declined: Collection[str]) -> bool:
        changed = False
        for session in self._sessions.values():
            changed |= session.step(now_s, declined)
        return changed
