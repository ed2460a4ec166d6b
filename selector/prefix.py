"""Computing a selector's frozen bottom layers once per pair instead of on every pass.

With adapters on the top layer only (`fedbiscuit.recipe`), the embeddings and the layers
below it train nothing and run without dropout: their output for a pair never changes. A
trainer that keeps it (`with_frozen_prefix`) runs only the top layer and the head on each
DP-SGD step and each loss report, and K selectors over one frozen backbone share it when
scored (`shares_frozen_prefix`). The logits are the same floats either way
(tests/selector/test_prefix.py); only the work differs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from selector.data import PairBatch, PrefixBatch
from selector.model import PairwiseSelector, Selector

PREFIX_CACHE_LIMIT_BYTES = 2 << 30
"""Above this, a silo's frozen-layer outputs are recomputed each pass rather than kept (a
pair at 128 tokens per side on MiniLM takes ~0.4 MB, so ~5,000 pairs fit)."""

_log = logging.getLogger(__name__)


def with_frozen_prefix(
    model: Selector,
    examples: PairBatch,
    device: torch.device,
    chunk: int = 64,
) -> PairBatch | PrefixBatch:
    """`examples` through `model`'s frozen layers (kept on the CPU, `chunk` pairs at a time
    on `device`), or `examples` unchanged when nothing is frozen or the outputs would exceed
    PREFIX_CACHE_LIMIT_BYTES."""
    if not isinstance(model, PairwiseSelector) or model.frozen_layers == 0 or len(examples) == 0:
        return examples
    rows, width = examples.half_ids.shape
    size = rows * width * model.backbone.config.hidden_size * 4
    limit_bytes = PREFIX_CACHE_LIMIT_BYTES
    if size > limit_bytes:
        _log.info(
            "not keeping the frozen layers' outputs of %d pairs (%d MiB > %d MiB): "
            "recomputed on every pass",
            rows,
            size >> 20,
            limit_bytes >> 20,
        )
        return examples
    parts = [
        model.encode_prefix(examples.select(range(start, min(start + chunk, rows))).to(device))
        for start in range(0, rows, chunk)
    ]
    return PrefixBatch(
        torch.cat([part.hidden.cpu() for part in parts]),
        torch.cat([part.half_ids.cpu() for part in parts]),
    )


def shares_frozen_prefix(models: Sequence[Selector]) -> bool:
    """Whether one `encode_prefix` serves every model: pair encoders on one device with the
    same number of frozen layers (> 0) holding the same weights."""
    first = models[0]
    if not all(isinstance(model, PairwiseSelector) for model in models):
        return False
    depth = first.frozen_layers
    if depth == 0:
        return False
    reference = _frozen_tensors(first, depth)
    device = next(first.parameters()).device
    for model in models[1:]:
        if model.frozen_layers != depth or next(model.parameters()).device != device:
            return False
        tensors = _frozen_tensors(model, depth)
        if tensors.keys() != reference.keys() or not all(
            torch.equal(tensors[name], reference[name]) for name in reference
        ):
            return False
    return True


def _frozen_tensors(model: PairwiseSelector, depth: int) -> dict[str, torch.Tensor]:
    """The weights `encode_prefix` reads: the embeddings' and the bottom `depth` layers'."""
    tensors = {
        f"embeddings.{name}": tensor
        for name, tensor in model.backbone.embeddings.state_dict().items()
    }
    for index, layer in enumerate(model.backbone.encoder.layer[:depth]):
        tensors.update({f"{index}.{name}": tensor for name, tensor in layer.state_dict().items()})
    return tensors
