"""How much of the aggregator one caller may hold at once (issue 14: hostile peers).

Every RPC holds one of the server's worker threads while it runs, so a peer that opens calls
and stalls them (streams without a header, long-polls, health watches) could starve honest
silos. These limits bound what is admitted: a server-wide cap below the worker count (the
rest stay free to refuse calls quickly), a per-silo cap, a per-silo cap on calls that wait
(long-polls beyond it are answered at once instead of waiting), and deadlines for a stream's
first message and each next one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Workers kept free of admitted calls, so refusals (UNAUTHENTICATED, RESOURCE_EXHAUSTED) and
# quick calls are answered while every admitted slot is held.
SPARE_WORKERS = 16


class CallerLimits(BaseModel):
    """Per-caller and server-wide bounds on calls in flight; defaults suit a few dozen silos."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_concurrent_rpcs: int = Field(
        48,
        ge=4,
        le=1024,
        description="Calls admitted at once over all silos (after authentication); the server "
        f"runs this many worker threads plus {SPARE_WORKERS} spare for refusals.",
    )
    max_concurrent_rpcs_per_silo: int = Field(
        8,
        ge=2,
        le=256,
        description="Calls one silo may have admitted at once; more are RESOURCE_EXHAUSTED. "
        "An honest silo holds at most a long-poll, a key-exchange fetch and an upload.",
    )
    max_waiting_per_silo: int = Field(
        2,
        ge=1,
        le=64,
        description="Waiting calls (PullTask, SecAggFetch and GroupingFetch long-polls, health "
        "Watch streams) one silo may hold; beyond it a long-poll answers at once and a Watch is "
        "refused.",
    )
    max_waiting: int = Field(
        32,
        ge=1,
        le=1024,
        description="Waiting calls over all silos; beyond it long-polls answer at once.",
    )
    stream_header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="How long an upload stream may take to send its first message (the "
        "header); a stream that stalls longer is cancelled and counted.",
    )
    stream_chunk_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="How long an upload stream may take between two messages.",
    )
    malformed_log_interval_s: float = Field(
        60.0,
        ge=0,
        description="At most one log line per silo per this many seconds about malformed "
        "requests (the rest are counted, and summed into the next line).",
    )

    @model_validator(mode="after")
    def _per_silo_fits(self) -> CallerLimits:
        if self.max_concurrent_rpcs_per_silo > self.max_concurrent_rpcs:
            raise ValueError(
                f"max_concurrent_rpcs_per_silo ({self.max_concurrent_rpcs_per_silo}) exceeds "
                f"max_concurrent_rpcs ({self.max_concurrent_rpcs})"
            )
        if self.max_waiting_per_silo >= self.max_concurrent_rpcs_per_silo:
            raise ValueError(
                f"max_waiting_per_silo ({self.max_waiting_per_silo}) must leave room under "
                f"max_concurrent_rpcs_per_silo ({self.max_concurrent_rpcs_per_silo}) for the "
                "silo's other calls"
            )
        return self

    @property
    def worker_threads(self) -> int:
        return self.max_concurrent_rpcs + SPARE_WORKERS
