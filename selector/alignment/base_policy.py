"""The policy alignment tunes: a local causal LM, its LoRA adapter, and sampling from it.

Loaded from a folder only (`local_files_only`): nothing is downloaded. A prompt is encoded
as its tokenizer encodes a text by default (so a BOS, or a BERT-style [SEP], is included),
and a completion is the generated tokens up to and including the first end-of-sequence
token: whether the policy stops is part of what it chose, so DPO must score it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from protos.errors import InvalidInput
from selector.alignment.config import LoraAdapterSpec, SamplingSpec

__all__ = [
    "Completion",
    "add_lora",
    "load_policy",
    "pick_device",
    "prompt_ids",
    "sample_completions",
]


def pick_device(name: str) -> torch.device:
    """'auto' is the GPU when there is one; asking for a GPU that is absent is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("device: 'cuda' asked for, but no GPU is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def load_policy(folder: Path, device: torch.device) -> tuple[PreTrainedModel, Tokenizer]:
    """The causal LM and tokenizer saved in `folder`, in eval mode on `device`."""
    if not folder.is_dir():
        raise InvalidInput(f"--policy {folder}: no such folder")
    if not (folder / "config.json").is_file():
        raise InvalidInput(f"--policy {folder}: no config.json; is it a saved causal LM?")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"--policy {folder}: not a loadable causal LM ({first})") from None
    if tokenizer.eos_token_id is None:
        raise InvalidInput(f"--policy {folder}: the tokenizer has no end-of-sequence token")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise InvalidInput(
            f"--policy {folder}: the tokenizer has {len(tokenizer)} tokens but the model embeds "
            f"only {model.get_input_embeddings().num_embeddings}"
        )
    model.to(device)
    model.eval()
    return model, tokenizer


def add_lora(model: PreTrainedModel, spec: LoraAdapterSpec, seed: int) -> PeftModel:
    """The policy with a fresh LoRA adapter (B = 0: it starts as the base policy).

    With the adapter disabled the model is the frozen base, DPO's reference policy.
    """
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        target_modules=list(spec.target_modules),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return get_peft_model(model, config)
        except ValueError as exc:
            raise InvalidInput(f"dpo.lora.target_modules: {exc}") from None


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    return list(tokenizer(prompt)["input_ids"])


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: tuple[int, ...]
    """Generated tokens, ending with the end-of-sequence token if the policy stopped."""


@torch.no_grad()
def sample_completions(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    spec: SamplingSpec,
    count: int,
    seed: int,
) -> list[list[Completion]]:
    """`count` completions per prompt; prompt i's draws depend only on (seed, i)."""
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    result = []
    for index, prompt in enumerate(prompts):
        ids = torch.tensor([prompt_ids(tokenizer, prompt)], device=device)
        cuda = [torch.cuda.current_device()] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed * 1_000_003 + index)
            generated = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=spec.temperature,
                top_p=spec.top_p,
                top_k=0,  # no top-k cut: top_p alone shapes the nucleus
                max_new_tokens=spec.max_new_tokens,
                num_return_sequences=count,
                eos_token_id=eos,
                pad_token_id=tokenizer.pad_token_id,
            )
        completions = []
        for row in generated[:, ids.shape[1] :].tolist():
            tokens = row[: row.index(eos) + 1] if eos in row else row
            text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
            completions.append(Completion(text, tuple(tokens)))
        result.append(completions)
    return result
