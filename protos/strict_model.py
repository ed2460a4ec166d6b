"""The one pydantic base every config, plan and signed statement derives from.

Fail closed on input we did not expect: an unknown field is an error, not something we
silently drop, and a validated value cannot change after the checks that admitted it.
`StrictTypedModel` also refuses type coercion ("3" is not 3): for what is signed, hashed
or sent between parties, where a value must arrive exactly as it was written.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel", "StrictTypedModel"]


class StrictModel(BaseModel):
    """Unknown fields rejected, instances frozen; values coerce as pydantic's lax mode allows."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StrictTypedModel(StrictModel):
    """A `StrictModel` that also refuses type coercion (pydantic strict mode)."""

    model_config = ConfigDict(strict=True)
