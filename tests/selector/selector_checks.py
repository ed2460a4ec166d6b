"""Checks shared by the selector kinds' tests (encoder and causal LM)."""

import copy

import torch
from opacus import GradSampleModule


def perturb_lora_b(model, seed=1):
    """LoRA B starts at zero, which would make every LoRA A gradient trivially zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.trainable().items():
            if "lora_B" in name:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))


def assert_per_sample_gradients_equal_per_pair_autograd(model, batch, atol: float) -> None:
    """Opacus' per-sample gradients of `model` (made float64) on `batch` equal plain
    autograd on each pair alone, and none of them is trivially zero."""
    model.double()
    reference = copy.deepcopy(model)  # before wrapping: Opacus hooks would pollute it
    wrapped = GradSampleModule(model, loss_reduction="sum")
    wrapped.train()
    torch.nn.functional.softplus(-wrapped(batch)).sum().backward()
    params = model.trainable()
    assert all(p.grad_sample is not None for p in params.values())
    reference.train()
    for row in range(len(batch)):
        reference.zero_grad()
        torch.nn.functional.softplus(-reference(batch.select([row]))).sum().backward()
        for name, param in reference.trainable().items():
            expected = param.grad
            assert expected.abs().max() > 0, name
            torch.testing.assert_close(
                params[name].grad_sample[row], expected, rtol=1e-7, atol=atol
            )


def scores_and_swapped(model, encoder, pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """`model`'s scores of `pairs`, and of the same pairs with their answers swapped."""
    swapped = [type(p)(p.prompt, p.rejected, p.chosen) for p in pairs]
    with torch.no_grad():
        return model(encoder.encode(pairs)), model(encoder.encode(swapped))
