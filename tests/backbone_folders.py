"""Local backbone folders built in code, for tests of the 'local' backbone kind."""

from __future__ import annotations

from pathlib import Path

from protos.plan import BackboneSpec
from selector.backbone import load_backbone


def save_backbone(kind: str, folder: Path, seed: int = 3) -> Path:
    """The tiny config-built backbone of `kind` (weights from `seed`) and the MiniLM tokenizer,
    as save_pretrained writes them (safetensors weights): a folder a plan can pin."""
    model, tokenizer = load_backbone(BackboneSpec(kind=kind, seed=seed))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
