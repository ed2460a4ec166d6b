"""A trained selector on disk: adapter tensors (safetensors) plus the spec that rebuilds it.

The backbone is never saved: the spec names it and every party resolves it locally. Loading
fails closed on an unknown format, version, spec field or tensor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from protos.errors import InvalidInput
from protos.plan import Plan, SelectorSpec
from selector.model import Selector, build_selector, load_adapter_state

ADAPTERS_FILE = "adapters.safetensors"
SPEC_FILE = "selector.json"
FORMAT = "fedbiscuit-selector"
VERSION = 1


def save_selector(
    directory: str | Path,
    spec: SelectorSpec,
    state: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
) -> None:
    """Writes the two files; `meta` (e.g. federation, rounds, agreement) must be JSON-able."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(
        {name: np.ascontiguousarray(value) for name, value in state.items()},
        str(directory / ADAPTERS_FILE),
    )
    document = {
        "format": FORMAT,
        "version": VERSION,
        "spec": spec.model_dump(mode="json"),
        "meta": dict(meta),
    }
    (directory / SPEC_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def load_selector(
    directory: str | Path, backbone_path: Path | None = None
) -> tuple[Selector, SelectorSpec, dict[str, Any]]:
    """The selector with its trained adapters, its spec and the saved meta.

    `backbone_path`: this machine's copy of the selector's 'local' backbone folder, loaded
    instead of the path the spec records (the operator's); the recorded digest still pins its
    files. Refused for other backbone kinds. The returned spec names the folder loaded.
    """
    directory = Path(directory)
    spec_path, adapters_path = directory / SPEC_FILE, directory / ADAPTERS_FILE
    for path in (spec_path, adapters_path):
        if not path.is_file():
            raise InvalidInput(f"{path}: missing; is {directory} a saved selector?")
    try:
        document = json.loads(spec_path.read_bytes())
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{spec_path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{spec_path}: not UTF-8 text") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidInput(f"{spec_path}: not a {FORMAT} file")
    if document.get("version") != VERSION:
        raise InvalidInput(
            f"{spec_path}: version {document.get('version')!r} unsupported (expected {VERSION})"
        )
    unknown = sorted(set(document) - {"format", "version", "spec", "meta"})
    if unknown:
        raise InvalidInput(f"{spec_path}: unknown field {unknown[0]!r}")
    try:
        spec = SelectorSpec.model_validate(document.get("spec"))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in ("spec", *error["loc"]))
        raise InvalidInput(f"{spec_path}: {where}: {error['msg']}") from None
    spec = _relocated(spec, backbone_path, spec_path)
    meta = document.get("meta", {})
    if not isinstance(meta, dict):
        raise InvalidInput(f"{spec_path}: meta must be a JSON object")
    try:
        state = load_file(str(adapters_path))
    except (SafetensorError, OSError) as exc:
        raise InvalidInput(f"{adapters_path}: unreadable safetensors file ({exc})") from None
    model = build_selector(spec, seed=0)
    try:
        load_adapter_state(model, state)
    except InvalidInput as exc:
        raise InvalidInput(f"{adapters_path}: {exc}") from None
    return model, spec, meta


def _relocated(spec: SelectorSpec, backbone_path: Path | None, spec_path: Path) -> SelectorSpec:
    """`spec` with its 'local' backbone read from `backbone_path`; only the path changes, so
    the digest check on loading still refuses a folder whose files differ."""
    if backbone_path is None:
        return spec
    if spec.backbone.kind != "local":
        raise InvalidInput(
            f"{spec_path}: a backbone folder was given, but this selector's backbone is kind "
            f"{spec.backbone.kind!r}, not 'local', and has no folder to load from elsewhere"
        )
    backbone = spec.backbone.model_copy(update={"path": str(backbone_path.resolve())})
    return spec.model_copy(update={"backbone": backbone})


SET_FILE = "selectors.json"
SET_FORMAT = "fedbiscuit-selector-set"


def _member_dir(k: int) -> str:
    return f"adapter-{k}"


def save_selector_set(
    directory: str | Path,
    spec: SelectorSpec,
    states: Sequence[Mapping[str, np.ndarray]],
    clusters: Mapping[str, int],
    meta: Mapping[str, Any],
) -> None:
    """FedBiscuit's K selectors: `adapter-k/` is a saved selector per adapter (loadable on its
    own with `load_selector`) and `selectors.json` lists them with the final cluster
    assignment (silo id → adapter index), which names which selector serves which silo."""
    directory = Path(directory)
    for k, state in enumerate(states):
        save_selector(directory / _member_dir(k), spec, state, {**meta, "adapter_index": k})
    document = {
        "format": SET_FORMAT,
        "version": VERSION,
        "selectors": [_member_dir(k) for k in range(len(states))],
        "clusters": dict(sorted(clusters.items())),
        "meta": dict(meta),
    }
    (directory / SET_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def load_selector_set(
    directory: str | Path, backbone_path: Path | None = None
) -> tuple[list[Selector], SelectorSpec, dict[str, int], dict[str, Any]]:
    """The K selectors of a FedBiscuit export and its cluster assignment; a single FedBis
    selector folder loads as a set of one with no clusters. `backbone_path`: as for
    `load_selector`, for every member."""
    directory = Path(directory)
    set_path = directory / SET_FILE
    if not set_path.is_file():
        model, spec, meta = load_selector(directory, backbone_path)
        return [model], spec, {}, meta
    try:
        document = json.loads(set_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{set_path}: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != SET_FORMAT:
        raise InvalidInput(f"{set_path}: not a {SET_FORMAT} file")
    if document.get("version") != VERSION:
        raise InvalidInput(f"{set_path}: version {document.get('version')!r} unsupported")
    unknown = sorted(set(document) - {"format", "version", "selectors", "clusters", "meta"})
    if unknown:
        raise InvalidInput(f"{set_path}: unknown field {unknown[0]!r}")
    names, clusters = document.get("selectors"), document.get("clusters")
    if names != [_member_dir(k) for k in range(len(names or []))] or not names:
        raise InvalidInput(f"{set_path}: selectors must be adapter-0 … adapter-(K-1)")
    if not isinstance(clusters, dict) or not all(
        isinstance(k, int) and 0 <= k < len(names) for k in clusters.values()
    ):
        raise InvalidInput(f"{set_path}: clusters must map silo ids to adapter indices")
    models, spec = [], None
    for name in names:
        model, member_spec, _ = load_selector(directory / name, backbone_path)
        if spec is not None and member_spec != spec:
            raise InvalidInput(f"{directory / name}: spec differs from adapter-0's")
        models.append(model)
        spec = member_spec
    return models, spec, dict(clusters), dict(document.get("meta", {}))


def save_federation_export(
    directory: str | Path,
    plan: Plan,
    finals: Sequence[Mapping[str, np.ndarray]],
    clusters: Mapping[str, int],
) -> None:
    """A finished federation's selectors as `fedbiscuit eval --selectors` reads them: one
    selector (FedBis) or the set with its clusters (FedBiscuit). Written by the aggregator,
    or under homomorphic mode by a silo that decrypted the final globals."""
    meta = {
        "federation_id": plan.federation_id,
        "algorithm": plan.algorithm,
        "rounds": plan.rounds,
        "plan_sha256": plan.sha256(),
    }
    if plan.algorithm == "fedbis":
        save_selector(directory, plan.selector, finals[0], meta)
    else:
        save_selector_set(directory, plan.selector, finals, clusters, meta)
