"""The demo's --workdir rule, light to import so a wrong folder is refused before torch loads."""

from __future__ import annotations

from pathlib import Path

from protos.errors import FailedPrecondition


def check_new_workdir(root: Path) -> None:
    """Refuse a folder that holds anything: the demo would write over it."""
    if root.exists() and any(root.iterdir()):
        raise FailedPrecondition(
            f"--workdir {root} is not empty; choose a new folder so nothing is overwritten"
        )
