"""A backbone from a local model folder (what `save_pretrained` writes), pinned by digest.

The plan names the folder by path and by `folder_digest`, and every party checks the
digest before it loads a byte of the model: a silo must never train, and the aggregator
never evaluate, on weights other than the ones the operator chose. Only safetensors weights
are loaded (a pickled checkpoint can run code when unpickled), remote code is never
trusted, and nothing is fetched: the folder must hold the config, weights and tokenizer.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from protos.errors import FailedPrecondition, InvalidInput

__all__ = [
    "MissingBackboneFolder",
    "check_model_folder",
    "folder_digest",
    "load_local_model",
    "load_local_tokenizer",
    "local_model_kind",
]

_CHUNK = 1 << 20
# Config fields that switch dropout on in common architectures; all set to 0 on load, as
# every other backbone has it off (selector/backbone.py says why).
_DROPOUT_FIELDS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "attention_dropout",
    "hidden_dropout",
    "dropout",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
)


class MissingBackboneFolder(InvalidInput):
    """The backbone folder is not on this machine; its own type so that a caller able to
    load a copy kept elsewhere (`--backbone` of `fedbiscuit eval` and `align`) can say so."""


def _files(folder: Path) -> list[Path]:
    """Regular files under `folder`, hidden ones (and hidden folders) left out, sorted."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def check_model_folder(folder: Path) -> Path:
    """`folder`, resolved, if it looks like a save_pretrained folder we can load; else raise
    InvalidInput saying what is missing."""
    if not folder.exists():
        raise MissingBackboneFolder(f"backbone folder {folder} does not exist")
    if not folder.is_dir():
        raise InvalidInput(f"backbone {folder} is not a folder (give the save_pretrained folder)")
    if not (folder / "config.json").is_file():
        raise InvalidInput(f"backbone folder {folder} has no config.json: not a model folder")
    if not any(folder.glob("*.safetensors")):
        raise InvalidInput(
            f"backbone folder {folder} has no *.safetensors weights (pickled weights are "
            "refused: save with save_pretrained(..., safe_serialization=True))"
        )
    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
        raise InvalidInput(
            f"backbone folder {folder} has no tokenizer (tokenizer.json or vocab.txt): save the "
            "model's tokenizer there with tokenizer.save_pretrained"
        )
    return folder.resolve()


def folder_digest(folder: Path) -> str:
    """SHA-256 over every file's relative path, size and SHA-256, in path order.

    Renaming, adding, removing or editing any file changes it; where the folder lives does
    not, so each party may keep its identical copy wherever its own layout says.
    """
    folder = check_model_folder(folder)
    outer = hashlib.sha256()
    for path in _files(folder):
        inner = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                inner.update(chunk)
        name = path.relative_to(folder).as_posix().encode()
        outer.update(len(name).to_bytes(8, "big") + name)
        outer.update(path.stat().st_size.to_bytes(8, "big") + inner.digest())
    return outer.hexdigest()


def local_model_kind(folder: Path) -> Literal["pair_encoder", "causal_lm"]:
    """The selector kind a folder's model serves: a causal LM (its config names a
    *ForCausalLM architecture) reads choices; anything else is scored as an encoder."""
    folder = check_model_folder(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{folder / 'config.json'}: not valid JSON ({exc})") from None
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if any(str(name).endswith("ForCausalLM") for name in architectures or []):
        return "causal_lm"
    return "pair_encoder"


def _verified(path: str, sha256: str) -> Path:
    folder = check_model_folder(Path(path))
    actual = folder_digest(folder)
    if actual != sha256:
        raise FailedPrecondition(
            f"backbone folder {folder} has digest {actual}, but {sha256} is pinned (by the plan or "
            "the export): its files differ from the operator's; copy the operator's exact folder"
        )
    return folder


@functools.cache
def _pristine(path: str, sha256: str, causal: bool) -> PreTrainedModel:
    """Verified and loaded once per process; callers get deep copies (LoRA mutates them)."""
    folder = _verified(path, sha256)
    os.environ["HF_HUB_OFFLINE"] = "1"
    options = {"local_files_only": True, "trust_remote_code": False}
    try:
        config = AutoConfig.from_pretrained(str(folder), **options)
        for field in _DROPOUT_FIELDS:
            if isinstance(getattr(config, field, None), float):
                setattr(config, field, 0.0)
        loader = AutoModelForCausalLM if causal else AutoModel
        model = loader.from_pretrained(str(folder), config=config, use_safetensors=True, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(f"backbone folder {folder}: cannot load the model ({exc})") from None
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def load_local_model(path: str, sha256: str, causal: bool) -> PreTrainedModel:
    """A fresh copy of the folder's model (with its LM head when `causal`), dropout off."""
    return copy.deepcopy(_pristine(path, sha256, causal))


@functools.cache
def load_local_tokenizer(path: str, sha256: str) -> PreTrainedTokenizerBase:
    """The folder's own tokenizer; one without a padding token pads with its end token
    (padding slots are masked out, so which id fills them does not matter)."""
    folder = _verified(path, sha256)
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(f"backbone folder {folder}: cannot load the tokenizer ({exc})") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise InvalidInput(f"backbone folder {folder}: the tokenizer has no pad or end token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
