"""The causal-LM selector: a frozen causal LM with LoRA adapters, read at the choice tokens.

As in the FedBis/FedBiscuit paper, the LM reads the prompt and answers A and B and the
selector's logit is logit("A") − logit("B") for the token after "Preferred:". Only the
LoRA adapters train (there is no head: the frozen LM head's rows for "A" and "B" are the
read-out), and only they travel.

Position debiasing: each row holds the pair in both orders (selector/choice_data.py), and
forward returns (m_chosen_as_A − m_chosen_as_B) / 2, the mean margin in favour of the
chosen answer over the two orders. It is exactly antisymmetric in the answers and keeps
the trainer's contract: forward(batch) is the logit that the chosen answer (side a) is
preferred, trained with −log σ(logit) like the pair encoder's Bradley–Terry score.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from protos.errors import InvalidInput
from protos.plan import SelectorSpec
from selector.choice_data import CHOICE_TOKENS, PAD_SEGMENT, ChoiceBatch

_PEFT_ADAPTER = ".default"


def choice_token_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """The ids of "A" and "B"; each must be one token, or the read-out would be ambiguous."""
    ids = []
    for text in CHOICE_TOKENS:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise InvalidInput(f"the tokenizer splits the choice label {text!r} into {encoded}")
        ids.append(encoded[0])
    if ids[0] == ids[1]:
        raise InvalidInput(f"the tokenizer maps both choice labels to token {ids[0]}")
    return ids[0], ids[1]


class CausalLMSelector(nn.Module):
    """forward(batch) = the position-debiased logit that the chosen answer is preferred.

    `backbone` is the LM's decoder stack (without its head); `direction` is the frozen head
    row of "A" minus the row of "B", so hidden · direction = logit("A") − logit("B").
    """

    def __init__(self, backbone: PreTrainedModel, direction: torch.Tensor, spec: SelectorSpec):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.register_buffer("direction", direction.detach().clone())

    def forward(self, batch: ChoiceBatch) -> torch.Tensor:
        if len(batch) == 0:
            return self.direction.new_zeros(0)
        segment = batch.segment_ids
        width = segment.shape[1]
        real = segment != PAD_SEGMENT
        causal = torch.ones(width, width, dtype=torch.bool, device=segment.device).tril()
        same = (segment[:, :, None] == segment[:, None, :]) & real[:, None, :] & causal
        # Padding slots attend to themselves only, so no row of the softmax is empty.
        itself = torch.eye(width, dtype=torch.bool, device=segment.device)
        allowed = (same | itself)[:, None, :, :]
        # An additive float mask: every attention implementation reads it the same way.
        dtype = self.direction.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=segment.device)
        mask = mask.masked_fill(~allowed, torch.finfo(dtype).min)
        hidden = self.backbone(
            input_ids=batch.input_ids, attention_mask=mask, position_ids=batch.position_ids
        ).last_hidden_state
        rows = torch.arange(len(batch), device=segment.device)[:, None]
        margins = hidden[rows, batch.choice_index] @ self.direction  # [B, 2]
        return (margins[:, 0] - margins[:, 1]) / 2

    def trainable(self) -> dict[str, nn.Parameter]:
        """The adapter parameters under their stable (wire) names."""
        return {
            name.replace(_PEFT_ADAPTER, ""): param
            for name, param in self.named_parameters()
            if param.requires_grad
        }


def split_causal_lm(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> tuple[PreTrainedModel, torch.Tensor]:
    """The decoder stack of a *ForCausalLM model and its head's "A" − "B" direction."""
    head = model.get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        raise InvalidInput(f"{type(model).__name__} has no bias-free LM head to read choices")
    token_a, token_b = choice_token_ids(tokenizer)
    direction = head.weight[token_a] - head.weight[token_b]
    return model.base_model, direction.detach()
