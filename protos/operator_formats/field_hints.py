"""What to add to a validation message so an operator can fix it without reading the source.

A misspelt field gets the nearest known names (`budjet` → did you mean 'budget'?), or the
list of fields allowed there; a path that does not exist gets the path as written. Pure:
it walks the pydantic model's field annotations, no file is read.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

_PATH_ERRORS = frozenset({"path_not_file", "path_not_directory", "path_type"})


def hint(model: type[BaseModel], problem: Mapping[str, Any]) -> str:
    """Text to append to pydantic's message for `problem` (one of `errors()`), or ''."""
    loc = tuple(problem.get("loc", ()))
    if problem.get("type") == "extra_forbidden" and loc:
        parent = _model_at(model, loc[:-1])
        if parent is None:
            return ""
        known = list(parent.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=2, cutoff=0.6)
        if close:
            return " (did you mean " + " or ".join(repr(name) for name in close) + "?)"
        return f" (fields here: {', '.join(known)})"
    if problem.get("type") in _PATH_ERRORS and "input" in problem:
        written = str(problem["input"])
        if os.path.isabs(written):
            return f": {written}"
        return f": {written} (relative to the working directory {os.getcwd()})"
    return ""


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that holds the fields at `loc` (indexes into lists of models skipped)."""
    current: Any = model
    for key in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(str(key))
        if info is None:
            if isinstance(key, int):  # an index into a tuple or list, already unwrapped
                continue
            return None
        current = _unwrap(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """`Model` out of `Model | None`, `tuple[Model, ...]`, `list[Model]`, `dict[str, Model]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, tuple, list, dict):
        models = [
            arg
            for arg in get_args(annotation)
            if isinstance(arg, type) and issubclass(arg, BaseModel)
        ]
        if len(models) == 1:
            return models[0]
    return annotation
