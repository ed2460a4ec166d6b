"""Selectors, and the one place that builds either kind from a SelectorSpec.

`pair_encoder`: a frozen encoder with LoRA adapters and a linear score head. Only the
adapters and the head train, and only they ever travel (as `adapter_state`). A pair is one
row with a block-diagonal attention mask, so both answers are scored in one forward pass
and Opacus's per-sample gradients are per pair. The head runs once on [B, 2, H]: calling
it twice would make Opacus accumulate its grad samples as a list.

`causal_lm`: selector/causal_lm.py. Both kinds share the contract the trainer, the
aggregator, checkpoints and evaluation rely on: forward(encoded pairs) is the logit that
the chosen answer is preferred, `trainable()` names what trains, one row per pair.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from transformers import BertModel
from transformers.masking_utils import create_bidirectional_mask

from protos.errors import InvalidInput
from protos.plan import SelectorSpec
from selector.backbone import backbone_tokenizer, load_backbone
from selector.causal_lm import CausalLMSelector, split_causal_lm
from selector.choice_data import ChoiceEncoder
from selector.data import PAD_HALF, PairBatch, PairEncoder, PrefixBatch

_PEFT_ADAPTER = ".default"


def _pair_mask(half: torch.Tensor) -> torch.Tensor:
    """[B, 1, 2L, 2L] block-diagonal attention: a slot sees its own side only. Padding rows
    attend to themselves only, so no row of the softmax is empty."""
    real = half != PAD_HALF
    same_half = (half[:, :, None] == half[:, None, :]) & real[:, None, :]
    itself = torch.eye(half.shape[1], dtype=torch.bool, device=half.device)
    return (same_half | itself)[:, None, :, :]


class PairwiseSelector(nn.Module):
    """forward(batch) = score(a) − score(b): the logit that side a is the preferred answer."""

    def __init__(self, backbone: BertModel, spec: SelectorSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        # No bias: it cancels in score(a) − score(b), so it would only collect DP noise.
        self.head = nn.Linear(backbone.config.hidden_size, 1, bias=False)

    @property
    def frozen_layers(self) -> int:
        """How many bottom encoder layers (with the embeddings) train nothing. Their output is
        a fixed function of a pair, so a trainer can compute it once per pair
        (`encode_prefix`) and run only the layers above on every step."""
        if type(self.backbone) is not BertModel:
            return 0  # a local backbone of another architecture: no assumption about its layers
        if any(param.requires_grad for param in self.backbone.embeddings.parameters()):
            return 0
        for index, layer in enumerate(self.backbone.encoder.layer):
            if any(param.requires_grad for param in layer.parameters()):
                return index
        return len(self.backbone.encoder.layer)

    def forward(self, batch: PairBatch | PrefixBatch) -> torch.Tensor:
        if len(batch) == 0:
            # BERT cannot reshape a 0-row batch; an empty Poisson batch scores nothing.
            return self.head.weight.new_zeros(0)
        mask = _pair_mask(batch.half_ids)
        if isinstance(batch, PrefixBatch):
            hidden = self._layers(batch.hidden, mask, self.frozen_layers, None)
        else:
            hidden = self.backbone(
                input_ids=batch.input_ids,
                attention_mask=mask,
                token_type_ids=batch.token_type_ids,
                position_ids=batch.position_ids,
            ).last_hidden_state
        half = batch.half_ids
        sides = torch.arange(2, device=half.device)
        weights = (half[:, None, :] == sides[None, :, None]).to(hidden.dtype)
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1.0)
        scores = self.head(weights @ hidden).squeeze(-1)
        return scores[:, 0] - scores[:, 1]

    @torch.no_grad()
    def encode_prefix(self, batch: PairBatch) -> PrefixBatch:
        """`batch` through the embeddings and the `frozen_layers` bottom layers, without
        dropout (a fixed function of the pair, whatever mode the selector is in)."""
        was_training = self.training
        self.eval()
        try:
            hidden = self.backbone.embeddings(
                input_ids=batch.input_ids,
                token_type_ids=batch.token_type_ids,
                position_ids=batch.position_ids,
            )
            hidden = self._layers(hidden, _pair_mask(batch.half_ids), 0, self.frozen_layers)
        finally:
            self.train(was_training)
        return PrefixBatch(hidden, batch.half_ids)

    def _layers(
        self, hidden: torch.Tensor, mask: torch.Tensor, start: int, stop: int | None
    ) -> torch.Tensor:
        """Encoder layers [start, stop) on `hidden`, with the mask BertModel would pass them."""
        mask = create_bidirectional_mask(
            config=self.backbone.config, inputs_embeds=hidden, attention_mask=mask
        )
        for layer in self.backbone.encoder.layer[start:stop]:
            hidden = layer(hidden, mask)
        return hidden

    def trainable(self) -> dict[str, nn.Parameter]:
        """The adapter and head parameters under their stable (wire) names."""
        return {
            name.replace(_PEFT_ADAPTER, ""): param
            for name, param in self.named_parameters()
            if param.requires_grad
        }


Selector = PairwiseSelector | CausalLMSelector
Encoder = PairEncoder | ChoiceEncoder


def build_encoder(spec: SelectorSpec) -> Encoder:
    """The encoder whose batches `build_selector(spec, ...)` reads."""
    tokenizer = backbone_tokenizer(spec.backbone)
    if spec.kind == "causal_lm":
        return ChoiceEncoder(tokenizer, spec.max_tokens_per_answer)
    return PairEncoder(tokenizer, spec.max_tokens_per_answer)


def build_selector(spec: SelectorSpec, seed: int) -> Selector:
    """A selector whose adapters (and head) are a deterministic function of `seed`.

    Every party can rebuild the initial globals from the plan alone. LoRA B starts at zero
    (peft's default), so a fresh selector scores with the frozen backbone alone (plus the
    pair encoder's head).
    """
    backbone, tokenizer = load_backbone(spec.backbone, causal=spec.kind == "causal_lm")
    direction = None
    if spec.kind == "causal_lm":
        backbone, direction = split_causal_lm(backbone, tokenizer)
    for param in backbone.parameters():
        param.requires_grad_(False)
    lora = LoraConfig(
        r=spec.lora.rank,
        lora_alpha=spec.lora.alpha,
        target_modules=list(spec.lora.target_modules),
        lora_dropout=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            backbone = inject_adapter_in_model(lora, backbone)
        except ValueError as exc:
            raise InvalidInput(f"selector.lora.target_modules: {exc}") from None
        if direction is None:
            model = PairwiseSelector(backbone, spec)
        else:
            model = CausalLMSelector(backbone, direction, spec)
    model.eval()
    return model


def adapter_state(model: Selector) -> dict[str, np.ndarray]:
    """A float32 copy of what trains and travels: LoRA A/B (and the pair encoder's head)."""
    return {
        name: param.detach().cpu().numpy().astype(np.float32, copy=True)
        for name, param in model.trainable().items()
    }


def load_adapter_state(model: Selector, state: Mapping[str, np.ndarray]) -> None:
    """Overwrites the adapters (and head); names, shapes, dtype and finiteness must all match."""
    params = model.trainable()
    missing = sorted(set(params) - set(state))
    if missing:
        raise InvalidInput(f"adapter state lacks tensor {missing[0]!r}")
    unexpected = sorted(set(state) - set(params))
    if unexpected:
        raise InvalidInput(f"adapter state has unexpected tensor {unexpected[0]!r}")
    for name, param in params.items():
        value = state[name]
        if not isinstance(value, np.ndarray) or value.dtype != np.float32:
            raise InvalidInput(f"adapter tensor {name!r} must be a float32 numpy array")
        if value.shape != tuple(param.shape):
            raise InvalidInput(
                f"adapter tensor {name!r} has shape {value.shape}, expected {tuple(param.shape)}"
            )
        if not np.isfinite(value).all():
            raise InvalidInput(f"adapter tensor {name!r} contains NaN or infinity")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(torch.from_numpy(state[name]))
