"""Load YAML or JSON files into pydantic models, with errors that name file, line and field.

Configs and plans come from operators' hands; a typo must be reported as
``silo.yaml:7: budget.epsilon: Input should be greater than 0`` rather than a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from protos.errors import InvalidInput
from protos.operator_formats.field_hints import hint

ModelT = TypeVar("ModelT", bound=BaseModel)


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at `loc`, or of its deepest existing ancestor."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            match = node.value[key]
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def describe_validation_error(
    path: Path, error: ValidationError, root: yaml.Node | None, model: type[BaseModel]
) -> str:
    """One line per problem: ``file:line: field.path: message`` (and a `field_hints.hint`)."""
    lines = []
    for problem in error.errors():
        loc = tuple(problem["loc"])
        field = ".".join(str(part) for part in loc) or "(top level)"
        message = problem["msg"] + hint(model, problem)
        lines.append(f"{where_in_file(path, root, loc)}: {field}: {message}")
    return "\n".join(lines)


def where_in_file(path: Path, root: yaml.Node | None, loc: tuple[int | str, ...]) -> str:
    """``file:line`` of the field at `loc` (or of its deepest ancestor present), else ``file``."""
    line = _line_of(root, loc)
    return f"{path}:{line}" if line else str(path)


def load_model_file(path: str | Path, model: type[ModelT]) -> ModelT:
    """Parse `path` (YAML or JSON) and validate it as `model`; raise InvalidInput on any fault."""
    data, root = read_mapping_file(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(Path(path), exc, root, model)) from exc


def read_mapping_file(path: str | Path) -> tuple[dict, yaml.Node]:
    """The top-level mapping of a YAML or JSON file and its node tree (for line numbers);
    InvalidInput naming file and line for an unreadable, empty or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InvalidInput(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        raise InvalidInput(f"{path}: file is empty")
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}:1: expected a mapping of fields at the top level")
    return data, root


def save_model_file(path: str | Path, value: BaseModel) -> None:
    """Write `value` as YAML (fields in declaration order) so it can be edited and reloaded."""
    Path(path).write_text(
        yaml.safe_dump(value.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
