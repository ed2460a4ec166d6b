"""Issue 17's protection targets, each as a ratio measured in this one run.

- CKKS wire size and encryption time per silo for 1.2M parameters, for the default preset
  and the packed one a plan may choose (``he.preset: ckks-pack3-8192``); the packed one's
  error on a uniform-weight sum of 64 silos against its stated bound (n + 1 steps).
  Targets: <= 12 bytes per parameter, <= 1 s per silo on one core.
- SecAgg+ client masking of 1.2M parameters (``encode_and_mask``: quantize with stochastic
  rounding, self-mask and one pairwise mask per neighbour) against the floor: the same
  number of AES-CTR keystreams of that length, each added into a uint32 vector with numpy,
  nothing else. Target: <= 2x the floor.

Times are CPU seconds of the measuring thread (``time.thread_time``: on a shared box the
time other processes hold the core is not counted), the median of ``--repeats`` runs, arms
interleaved so that drift hits all alike.
The upload path's target lives in ``benchmarks/transport_throughput.py``. Run from the
repository root, one thread as a silo would:
``OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/speed_targets.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from privacy.he import (
    decrypt_update,
    encrypt_update,
    generate_secret_context,
    load_public_context,
    public_context_bytes,
    sum_encrypted,
)
from privacy.secagg import MEDIUM
from privacy.secagg.masking import encode_and_mask
from privacy.secagg.prg import MaskExpander

PARAMS = 1_200_000
HE_TARGETS = (12.0, 1.0)  # bytes per parameter, seconds to encrypt 1.2M
MASK_TARGET = 2.0
NEIGHBOURS = 9  # a complete graph of 10 silos (preset medium's graph for 10 silos)


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def he_rows(repeats: int, silos: int, error_params: int) -> None:
    rng = np.random.default_rng(0)
    print(f"CKKS, {PARAMS:,} parameters, encryption on one core (median of {repeats})")
    print(f"{'preset':<18} {'B/param':>8} {'encrypt s':>10} {'B/p / 12':>9} {'s / 1 s':>8}")
    for name in ("ckks-add-8192", "ckks-pack3-8192"):
        ctx = generate_secret_context(name)
        bound = 0.99 * ctx.preset.value_bound / (silos + 1)  # float32 rounding stays under
        update = np.clip(rng.normal(0, bound / 4, PARAMS), -bound, bound).astype(np.float32)
        encrypted = encrypt_update(ctx, update, weight=1.0, max_silos=silos + 1)
        per_param = (encrypted.nbytes() + len(encrypted.manifest.to_bytes())) / PARAMS
        seconds = _median(
            lambda c=ctx, u=update: encrypt_update(c, u, weight=1.0, max_silos=silos + 1), repeats
        )
        print(
            f"{name:<18} {per_param:>8.2f} {seconds:>10.3f} {per_param / HE_TARGETS[0]:>9.2f} "
            f"{seconds / HE_TARGETS[1]:>8.2f}"
        )

    ctx = generate_secret_context("ckks-pack3-8192")
    public = load_public_context(public_context_bytes(ctx), ctx.preset.name)
    updates = [rng.uniform(-1, 1, error_params).astype(np.float32) for _ in range(silos)]
    total = sum_encrypted(
        public, [encrypt_update(ctx, u, weight=1 / silos, max_silos=silos) for u in updates]
    )
    error = np.abs(decrypt_update(ctx, total) - sum(u.astype(np.float64) for u in updates) / silos)
    step = ctx.preset.step
    rms = np.sqrt(np.mean(error**2))
    print(
        f"ckks-pack3-8192, uniform-weight sum of {silos} silos x {error_params:,} values in "
        f"[-1, 1]: max error {error.max() / step:.1f} steps, RMS {rms / step:.2f}"
        f" steps (step {step:g}; stated bound {silos + 1} steps, RMS model "
        f"{ctx.preset.sum_error_rms(silos) / step:.2f})"
    )


def mask_rows(repeats: int) -> None:
    rng = np.random.default_rng(1)
    update = rng.normal(0, 1e-3, PARAMS).astype(np.float32)
    pairwise = {f"peer-{i:02d}": os.urandom(32) for i in range(NEIGHBOURS)}
    seed, digest = os.urandom(32), os.urandom(32)
    params = MEDIUM.encoding
    streams = 1 + NEIGHBOURS + (params.rounding == "stochastic")
    expander = MaskExpander(PARAMS, np.uint32)
    keys = [os.urandom(16) for _ in range(streams)]

    def floor() -> None:
        acc = np.zeros(PARAMS, dtype=np.uint32)
        for key in keys:
            np.add(acc, expander.keystream(key), out=acc)

    def masking() -> None:
        encode_and_mask(update, params, "silo-00", seed, pairwise, digest)

    floor_s, mask_s = [], []
    for _ in range(repeats):
        floor_s.append(_median(floor, 1))
        mask_s.append(_median(masking, 1))
    f, m = statistics.median(floor_s), statistics.median(mask_s)
    print(
        f"\nSecAgg+ masking, {PARAMS:,} parameters, {NEIGHBOURS} neighbours (median of {repeats})"
    )
    print(f"floor: {streams} AES-CTR keystreams + uint32 adds  {f * 1e3:7.1f} ms")
    print(f"encode_and_mask (quantize + all masks)   {m * 1e3:7.1f} ms")
    print(f"ratio to the floor: {m / f:.2f} (target <= {MASK_TARGET})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--silos", type=int, default=64, help="silos in the HE error sum")
    parser.add_argument("--error-params", type=int, default=100_000)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    he_rows(args.repeats, args.silos, args.error_params)
    mask_rows(args.repeats)
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
