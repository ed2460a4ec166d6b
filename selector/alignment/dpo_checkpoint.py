"""Resumable DPO checkpoints: the LoRA adapter and AdamW's state after a given step.

A checkpoint is a folder `checkpoint-<step>` holding safetensors files (no pickle) and a
`state.json` written last, so a folder without it was interrupted while being written and
is ignored. Only the newest complete checkpoint is kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from protos.errors import InvalidInput

__all__ = ["latest_checkpoint", "load_checkpoint", "save_checkpoint"]

_PREFIX = "checkpoint-"
_STATE = "state.json"
_FORMAT = "fedbiscuit-dpo-checkpoint"


def _adapter(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: param for name, param in model.named_parameters() if param.requires_grad}


def save_checkpoint(
    folder: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> Path:
    """Write the checkpoint after `step` steps, then remove older ones."""
    target = folder / f"{_PREFIX}{step:08d}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    save_file(
        {name: p.detach().cpu().contiguous() for name, p in _adapter(model).items()},
        str(target / "adapter.safetensors"),
    )
    moments = {
        f"{index}.{key}": value.detach().cpu().reshape(value.shape).contiguous()
        for index, state in optimizer.state_dict()["state"].items()
        for key, value in state.items()
    }
    save_file(moments, str(target / "optimizer.safetensors"))
    (target / _STATE).write_text(json.dumps({"format": _FORMAT, "step": step}) + "\n")
    for older in folder.glob(f"{_PREFIX}*"):
        if older != target:
            shutil.rmtree(older)
    return target


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint under `folder`, if any."""
    complete = sorted(p for p in folder.glob(f"{_PREFIX}*") if (p / _STATE).is_file())
    return complete[-1] if complete else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore the adapter and optimizer saved at `path`; returns the steps already done."""
    try:
        state = json.loads((path / _STATE).read_text())
        adapter = load_file(str(path / "adapter.safetensors"))
        moments = load_file(str(path / "optimizer.safetensors"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise InvalidInput(f"{path}: unreadable DPO checkpoint ({exc})") from None
    if state.get("format") != _FORMAT or not isinstance(state.get("step"), int):
        raise InvalidInput(f"{path / _STATE}: not a {_FORMAT} file")
    params = _adapter(model)
    if set(adapter) != set(params) or any(
        adapter[name].shape != param.shape for name, param in params.items()
    ):
        raise InvalidInput(f"{path}: its adapter does not fit this policy and LoRA config")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(adapter[name].to(param.device))
    device = next(iter(params.values())).device
    restored: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in moments.items():
        index, name = key.split(".", 1)
        restored.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": restored, "param_groups": groups})
    return int(state["step"])
