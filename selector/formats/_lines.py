"""What every line-oriented reader shares: JSON objects by file:line, and field checks.

Public preference datasets ship as JSON Lines (HH-RLHF as `.jsonl.gz`, SHP and
summarize-from-feedback as `.json` files holding one object per line). Every error names
the file, the line and the field; `rows.read_rows` decides whether a bad row stops the read.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protos.errors import InvalidInput
from selector.data import PreferencePair


def numbered_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) for every non-blank line; `.gz` files are decompressed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (EOFError, gzip.BadGzipFile):
        raise InvalidInput(f"{path}: not a complete gzip file") from None
    for number, raw_line in enumerate(raw.splitlines(), start=1):
        if raw_line.strip():
            yield number, raw_line


def json_object(raw_line: bytes, where: str) -> dict[str, Any]:
    """One line decoded as UTF-8 JSON holding an object, or an error naming `where`."""
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}: not UTF-8 text") from None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise InvalidInput(f"{where}: expected a JSON object")
    return record


def json_objects(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """("FILE:LINE", object) for every non-blank line; the first bad line stops it."""
    for number, raw_line in numbered_lines(path):
        where = f"{path}:{number}"
        yield where, json_object(raw_line, where)


def field(record: dict[str, Any], name: str, where: str, label: str | None = None) -> Any:
    """The value at a dotted path (`info.post`), or an error naming it (as `label` if given)."""
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise InvalidInput(f"{where}: missing field {(label or name)!r}")
        value = value[part]
    return value


def text(record: dict[str, Any], name: str, where: str, label: str | None = None) -> str:
    """A non-blank string field."""
    value = field(record, name, where, label)
    shown = repr(label or name)
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: field {shown} must be a string")
    if not value.strip():
        raise InvalidInput(f"{where}: field {shown} is empty")
    return value


def pair(
    where: str, prompt: str, chosen: str, rejected: str, silo: str | None, answers: str
) -> PreferencePair:
    """A checked pair; `answers` names the fields the two answers came from, for errors."""
    if chosen == rejected:
        raise InvalidInput(f"{where}: {answers} are identical, so there is no preference")
    return PreferencePair(prompt, chosen, rejected, silo)
