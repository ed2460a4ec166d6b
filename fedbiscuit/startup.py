"""Start-up of the commands that load torch & co. (`silo run`, `aggregator run`, `demo`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def heavy_imports() -> Iterator[None]:
    """Import torch, opacus, peft and transformers with cyclic collection off, then freeze.

    Why: those imports build ~0.5M objects that live until exit, and the growth triggers ~7
    full collections that each walk all of them: ~1 CPU-s per process, paid by all ten
    parties of a demo at once, and by the demo itself. Frozen, later collections skip them
    too. Garbage cycles made during the imports (few) are never freed; the process holds
    those modules to the end anyway.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
