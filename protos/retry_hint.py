"""The wire hint that a refusal is momentary (the aggregator was busy), not a verdict.

Why: RESOURCE_EXHAUSTED means both "this is too big, never send it again" (size limits) and
"too many of your calls are in flight right now" (admission limits); only the second is
worth retrying. The aggregator marks the second with this trailing metadata entry and the
silo client retries it with backoff like UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Iterable

BUSY = ("fedbiscuit-retry", "busy")


def is_busy(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """Whether a call's trailing metadata carries the busy hint."""
    return any((key, value) == BUSY for key, value in trailing_metadata or ())
