"""What DP-SGD costs per step on the real MiniLM LoRA selector, against a non-private step.

All arms see the same batch; the private arms add Opacus's per-sample gradient hooks,
per-pair clipping and noise: "dp-sgd torch" with Opacus's stock noise from a torch
generator (what the silo used before), "dp-sgd secure" with the silo's noise (AES-CTR
keystream, Box-Muller, snapped; privacy.dp_optimizer). Run from the repository root with
fedbiscuit installed: `python benchmarks/dp_overhead.py [--device cuda]`.
Prints each private arm's time ratio to non-private (target <= 1.15x) and steps per second.
"""

from __future__ import annotations

import argparse
import time

import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer

from privacy.dp_optimizer import SecureNoiseDPOptimizer
from privacy.secure_noise import NoiseSource
from protos.plan import BackboneSpec, SelectorSpec
from selector.benchmark.generator import make_federated_dataset
from selector.data import PairBatch, PreferencePair
from selector.model import PairwiseSelector, build_encoder, build_selector


def _seconds_per_step(
    model: torch.nn.Module,
    step_optimizer: torch.optim.Optimizer,
    batch: PairBatch,
    warmup: int,
    iterations: int,
    device: torch.device,
) -> float:
    def step() -> None:
        step_optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.softplus(-model(batch)).sum().backward()
        step_optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iterations


def _selector(spec: SelectorSpec, device: torch.device) -> PairwiseSelector:
    model = build_selector(spec, seed=0).to(device)
    model.train()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=48, help="max tokens per answer")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="alternating timing rounds")
    args = parser.parse_args()
    device = torch.device(args.device)
    spec = SelectorSpec(backbone=BackboneSpec(kind="minilm"), max_tokens_per_answer=args.tokens)
    # Doubled answers overflow the window, so every half is truncated to exactly --tokens.
    pairs = [
        PreferencePair(p.prompt, f"{p.chosen} {p.chosen}", f"{p.rejected} {p.rejected}")
        for p in make_federated_dataset(1, args.batch_size, 0, seed=0)["silo-1"].train
    ]
    batch = build_encoder(spec).encode(pairs).to(device)

    plain = _selector(spec, device)
    plain_optimizer = torch.optim.Adam(list(plain.trainable().values()), lr=1e-3)
    arms: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]] = {
        "non-private": (plain, plain_optimizer)
    }
    for arm in ("dp-sgd torch", "dp-sgd secure"):
        private = _selector(spec, device)
        inner = torch.optim.Adam(list(private.trainable().values()), lr=1e-3)
        dp = dict(
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            expected_batch_size=args.batch_size,
            loss_reduction="mean",
        )
        if arm == "dp-sgd torch":
            generator = torch.Generator(device=device).manual_seed(0)
            optimizer = DPOptimizer(inner, generator=generator, **dp)
        else:
            optimizer = SecureNoiseDPOptimizer(inner, stream=NoiseSource().stream(0, "noise"), **dp)
        arms[arm] = (GradSampleModule(private, loss_reduction="sum"), optimizer)
    timings: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(args.repeats):  # alternate arms so drift hits all alike
        for arm, (model, optimizer) in arms.items():
            timings[arm].append(
                _seconds_per_step(model, optimizer, batch, args.warmup, args.iterations, device)
            )
    best = {arm: min(values) for arm, values in timings.items()}
    width = batch.input_ids.shape[1]
    print(
        f"MiniLM-L6 LoRA r={spec.lora.rank} on {device}, threads={torch.get_num_threads()}, "
        f"batch {args.batch_size} pairs x {width} tokens per row"
    )
    for arm, seconds in best.items():
        print(f"  {arm:14s} {seconds * 1000:8.1f} ms/step  {1 / seconds:6.2f} steps/s")
    for arm in ("dp-sgd torch", "dp-sgd secure"):
        print(f"  {arm} / non-private time ratio: {best[arm] / best['non-private']:.3f}x")
    trainable = sum(p.numel() for p in plain.trainable().values())
    print(f"  noised parameters per step: {trainable}")


if __name__ == "__main__":
    main()
