"""What DP-SGD costs per step on the real MiniLM LoRA selector, against a non-private step.

Both arms see the same batch; the private arm adds Opacus's per-sample gradient hooks,
per-pair clipping and noise. Run from the repository root with fedbiscuit installed:
`python benchmarks/dp_overhead.py [--device cuda]`.
Prints the time ratio (target <= 1.15x) and steps per second for each arm.
"""

from __future__ import annotations

import argparse
import time

import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer

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
    private = _selector(spec, device)
    private_module = GradSampleModule(private, loss_reduction="sum")
    private_optimizer = DPOptimizer(
        torch.optim.Adam(list(private.trainable().values()), lr=1e-3),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        expected_batch_size=args.batch_size,
        loss_reduction="mean",
        generator=torch.Generator(device=device).manual_seed(0),
    )
    timings: dict[str, list[float]] = {"non-private": [], "dp-sgd": []}
    for _ in range(args.repeats):  # alternate arms so drift hits both alike
        timings["non-private"].append(
            _seconds_per_step(plain, plain_optimizer, batch, args.warmup, args.iterations, device)
        )
        timings["dp-sgd"].append(
            _seconds_per_step(
                private_module, private_optimizer, batch, args.warmup, args.iterations, device
            )
        )
    best = {arm: min(values) for arm, values in timings.items()}
    width = batch.input_ids.shape[1]
    print(
        f"MiniLM-L6 LoRA r={spec.lora.rank} on {device}, threads={torch.get_num_threads()}, "
        f"batch {args.batch_size} pairs x {width} tokens per row"
    )
    for arm, seconds in best.items():
        print(f"  {arm:12s} {seconds * 1000:8.1f} ms/step  {1 / seconds:6.2f} steps/s")
    print(f"  DP-SGD / non-private time ratio: {best['dp-sgd'] / best['non-private']:.3f}x")


if __name__ == "__main__":
    main()
