"""`--backbone PATH` of `fedbiscuit eval` and `fedbiscuit align`: this machine's copy of an
export's 'local' backbone (and the check `fedbiscuit demo --backbone` shares).

An export records the operator's path to a 'local' backbone folder; a partner or an auditor
keeps its copy elsewhere. Only the path changes (`selector.checkpoint.load_selector_set`):
the digest the export records is checked against the copy before a byte of it is loaded,
so the flag can move the folder, never swap the model.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from protos.errors import InvalidInput


def add_backbone_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backbone",
        type=Path,
        metavar="PATH",
        help="this machine's copy of the export's 'local' backbone folder, loaded instead of "
        "the path the export records (its digest is still checked)",
    )


def checked_backbone_option(path: Path | None) -> Path | None:
    """`path` if it is a model folder we can load; checked before any loading or process
    start so the error names the flag (eval, align and demo)."""
    from selector.local_backbone import check_model_folder

    if path is None:
        return None
    if not path.exists():
        raise InvalidInput(f"--backbone {path}: no such folder")
    if not path.is_dir():
        raise InvalidInput(f"--backbone {path}: not a folder (give the model folder)")
    try:
        check_model_folder(path)
    except InvalidInput as exc:
        raise InvalidInput(f"--backbone: {exc}") from None
    return path


@contextmanager
def missing_backbone_hint() -> Iterator[None]:
    """Turns an export's 'local' backbone missing at its recorded path into how to fix it."""
    from selector.local_backbone import MissingBackboneFolder

    try:
        yield
    except MissingBackboneFolder as exc:
        raise InvalidInput(
            f"{exc}: the export records the operator's path; pass --backbone PATH, this "
            "machine's copy of that folder (its digest is checked)"
        ) from None
