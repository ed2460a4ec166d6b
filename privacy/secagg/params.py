"""Validated secure-aggregation parameters: ring, clipping, scale, graph degree, threshold.

Overflow is impossible by construction: every encoded coordinate lies in ``[-L, L]`` with
``L = ceil(clip * scale)``, and construction refuses parameters unless
``max_silos * L <= 2**(bits-1) - 1``, so the sum of up to ``max_silos`` encoded updates
decodes exactly from its two's-complement residue in Z_2^bits. Rounds with more silos than
``max_silos`` are refused by the graph builder. Prefer the named presets in
:mod:`privacy.secagg.presets` to building these by hand.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from privacy.secagg.errors import UnsafeParameters
from protos.strict_model import StrictTypedModel

# Beyond 2**52 float64 no longer represents every integer, so scaling would lose exactness.
_MAX_EXACT_LEVEL = 2**52


class EncodingParams(StrictTypedModel):
    """Fixed-point encoding of clipped float updates into the ring Z_2^bits."""

    bits: Literal[32, 64] = Field(32, description="Ring size in bits (uint32 or uint64 words).")
    clip: float = Field(gt=0, description="Each coordinate is clipped to [-clip, clip].")
    scale: float = Field(gt=0, description="Quantisation levels per unit (a power of two).")
    max_silos: int = Field(ge=1, description="Most silos whose sum must fit without overflow.")
    rounding: Literal["stochastic", "deterministic"] = Field(
        "stochastic", description="Stochastic rounding is unbiased; deterministic is nearest."
    )

    @model_validator(mode="after")
    def _no_overflow(self) -> EncodingParams:
        if not (math.isfinite(self.clip) and math.isfinite(self.scale)):
            raise UnsafeParameters("secagg encoding: clip and scale must be finite")
        mantissa, _ = math.frexp(self.scale)
        if mantissa != 0.5:
            raise UnsafeParameters(
                f"secagg encoding: scale {self.scale} is not a power of two; use "
                "EncodingParams.fit(...) to choose one"
            )
        level = self.max_level
        if level > _MAX_EXACT_LEVEL:
            raise UnsafeParameters(
                f"secagg encoding: clip*scale = {self.clip * self.scale:g} exceeds 2**52"
            )
        if self.max_silos * level > 2 ** (self.bits - 1) - 1:
            raise UnsafeParameters(
                f"secagg encoding: {self.max_silos} silos x {level} levels overflow a "
                f"{self.bits}-bit ring; lower scale or max_silos, or use bits=64 "
                "(EncodingParams.fit picks a safe scale)"
            )
        return self

    @property
    def max_level(self) -> int:
        """The largest absolute integer one encoded coordinate can take."""
        return math.ceil(self.clip * self.scale)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint32 if self.bits == 32 else np.uint64)

    @property
    def resolution(self) -> float:
        """The quantisation step (1/scale) in update units."""
        return 1.0 / self.scale

    @classmethod
    def fit(
        cls,
        clip: float,
        max_silos: int,
        bits: Literal[32, 64] = 32,
        rounding: Literal["stochastic", "deterministic"] = "stochastic",
    ) -> EncodingParams:
        """The finest power-of-two scale for which ``max_silos`` clipped updates cannot overflow."""
        if not (clip > 0 and math.isfinite(clip)) or max_silos < 1:
            raise UnsafeParameters("secagg encoding: clip must be positive and max_silos >= 1")
        budget = (2 ** (bits - 1) - 1) // max_silos
        exponent = math.floor(math.log2(budget / clip))
        while exponent > -1074:
            scale = math.ldexp(1.0, exponent)
            if math.ceil(clip * scale) <= min(budget, _MAX_EXACT_LEVEL):
                return cls(
                    bits=bits, clip=clip, scale=scale, max_silos=max_silos, rounding=rounding
                )
            exponent -= 1
        raise UnsafeParameters("secagg encoding: no safe scale exists for these parameters")


class SecAggParams(StrictTypedModel):
    """One plan's secure-aggregation settings (what the plan hash commits to)."""

    encoding: EncodingParams
    degree: int | None = Field(
        description="Neighbours per silo (even); None or >= silos-1 means the complete graph."
    )
    threshold_fraction: float = Field(
        gt=0.5, le=1.0, description="Shares needed, as a fraction of a silo's neighbours."
    )
    min_silos: int = Field(
        ge=2, description="Fewest distinct silos any honest silo lets a round aggregate."
    )

    @model_validator(mode="after")
    def _consistent(self) -> SecAggParams:
        if self.degree is not None and (self.degree < 2 or self.degree % 2):
            raise UnsafeParameters(
                f"secagg: degree must be an even number >= 2 (or None), got {self.degree}"
            )
        if self.min_silos > self.encoding.max_silos:
            raise UnsafeParameters(
                f"secagg: min_silos {self.min_silos} exceeds the encoding's max_silos "
                f"{self.encoding.max_silos}"
            )
        return self

    @property
    def max_silos(self) -> int:
        return self.encoding.max_silos

    def degree_for(self, num_silos: int) -> int:
        """Neighbours per silo in a round of ``num_silos`` silos."""
        if self.degree is None or num_silos - 1 <= self.degree:
            return num_silos - 1
        return self.degree

    def threshold_for(self, degree: int) -> int:
        """Shares needed to rebuild a secret shared among ``degree`` neighbours (> degree/2)."""
        t = max(degree // 2 + 1, math.ceil(self.threshold_fraction * degree - 1e-9))
        if not degree // 2 < t <= degree:
            raise UnsafeParameters(f"secagg: threshold {t} is invalid for {degree} neighbours")
        return t
