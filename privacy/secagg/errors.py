"""Errors of the secure-aggregation mechanism.

A round that cannot go on safely stops with :class:`SecAggAborted`; the caller re-runs the
round with fresh keys (masks are never reused). Parameters that could overflow the ring or
weaken the threshold are refused up front with :class:`UnsafeParameters`.
"""

from __future__ import annotations

from protos.errors import FailedPrecondition, InvalidInput


class UnsafeParameters(InvalidInput):
    """Secure-aggregation parameters that could overflow the ring or weaken the protocol."""


class SecAggAborted(FailedPrecondition):
    """The round stopped; nothing secret was revealed by the party that raised this.

    Once a client or server has aborted, every later call on it raises this again.
    """
