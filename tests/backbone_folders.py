"""Local backbone folders built in code, for tests of the 'local' backbone kind."""

from __future__ import annotations

from pathlib import Path

from protos.plan import BackboneSpec
from selector.backbone import load_backbone
from selector.local_backbone import folder_digest


def save_backbone(kind: str, folder: Path, seed: int = 3) -> Path:
    """The tiny config-built backbone of `kind` (weights from `seed`) and the MiniLM tokenizer,
    as save_pretrained writes them (safetensors weights): a folder a plan can pin."""
    model, tokenizer = load_backbone(BackboneSpec(kind=kind, seed=seed))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def pinned_backbone(folder: Path, sha256: str | None = None) -> BackboneSpec:
    """A 'local' backbone naming `folder` and pinning its files' digest, as a plan does; or
    pinning `sha256`, for a path the plan names but this machine does not hold."""
    return BackboneSpec(kind="local", path=str(folder), sha256=sha256 or folder_digest(folder))
