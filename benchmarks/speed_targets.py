"""Issue 17's protection targets, each as a ratio measured in this one run.

- CKKS wire size and encryption time per silo for 1.2M parameters, for the default preset
  and the packed one a plan may choose (``he.preset: ckks-pack3-8192``); the packed one's
  error on a uniform-weight sum of 64 silos against its stated bound (n + 1 steps).
  Targets: <= 12 bytes per parameter, <= 1 s per silo on one core.
- SecAgg+ client masking of 1.2M parameters (``encode_and_mask``: quantize with stochastic
  rounding, self-mask and one pairwise mask per neighbour) against the floor: the same
  number of AES-CTR keystreams of that length, each added into a uint32 vector with numpy,
  nothing else. Target: <= 2x the floor.
- The peers beside us, in the same run (``benchmarks/peer_comparison.py``): Flower's SecAgg+
  client masking of the same vector with the same 9 neighbours, and NVIDIA FLARE's HE model
  encryption (its provisioning defaults, its ``HEModelEncryptor`` filter) of a 1.2M-parameter
  model dict, each run by its own framework in a separate virtualenv under ``--peer-venvs``
  (``flower``, ``nvflare``); ``--create-peer-venvs`` makes missing ones (pip, pinned
  versions). A peer that cannot run prints ``not measured: <why>``; ``--no-peers`` skips both.

Times are CPU seconds of the measuring thread (``time.thread_time``: on a shared box the
time other processes hold the core is not counted), the median of ``--repeats`` runs, arms
interleaved so that drift hits all alike. Ours encrypts and masks on that one thread;
NVFlare's TenSEAL encrypts on several, so its figure is the CPU seconds of all its threads.
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
from pathlib import Path

import numpy as np
from peer_comparison import (
    DEFAULT_VENVS,
    NotMeasured,
    Row,
    flower_masking,
    nvflare_encryption,
    print_group,
)

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


def he_rows(repeats: int, silos: int, error_params: int) -> dict[str, tuple[float, float]]:
    """Prints the HE figures; returns {preset: (bytes per parameter, encryption s)}."""
    figures = {}
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
        figures[name] = (per_param, seconds)

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
    return figures


def mask_rows(repeats: int) -> tuple[int, float, float, float]:
    """Prints the masking figures; returns (keystreams, floor s, masking s, bytes/param)."""
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

    def masking() -> np.ndarray:
        return encode_and_mask(update, params, "silo-00", seed, pairwise, digest)

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
    return streams, f, m, masking().nbytes / PARAMS


def peer_rows(args: argparse.Namespace, he: dict, mask: tuple) -> None:
    """Ours next to Flower's SecAgg+ and NVFlare's HE, measured now, as one table."""
    streams, floor_s, mask_s, mask_bytes = mask
    flower_label = "Flower SecAgg+ stage collect_masked_vectors"
    nvflare_label = "NVFlare HEModelEncryptor + fobs, HEBuilder defaults"
    flower = nvflare = None
    if args.no_peers:
        flower_row = Row(flower_label, missing="--no-peers")
        nvflare_row = Row(nvflare_label, missing="--no-peers")
    else:
        try:
            flower = flower_masking(
                args.peer_venvs, args.create_peer_venvs, PARAMS, NEIGHBOURS, args.repeats
            )
            flower_label = flower_label.replace("Flower", f"Flower {flower['version']}")
            flower_row = Row(flower_label, flower["bytes_per_param"], flower["cpu_s"])
        except NotMeasured as why:
            flower_row = Row(flower_label, missing=str(why))
        try:
            nvflare = nvflare_encryption(
                args.peer_venvs, args.create_peer_venvs, PARAMS, args.repeats
            )
            nvflare_label = nvflare_label.replace("NVFlare", f"NVFlare {nvflare['nvflare']}")
            nvflare_row = Row(
                nvflare_label,
                nvflare["wire_bytes_per_param"],
                nvflare["encrypt_serialise_cpu_s"],
            )
        except NotMeasured as why:
            nvflare_row = Row(nvflare_label, missing=str(why))

    default, packed = he["ckks-add-8192"], he["ckks-pack3-8192"]
    print(f"\nOurs vs peers, {PARAMS:,} parameters, one client, this run")
    print(f"  {'':<58} {'B/param':>8} {'CPU s':>8} {'B/p x':>7} {'CPU x':>7}")
    print_group(
        "HE encryption (x: ratio to ours, ckks-add-8192)",
        [
            Row("ours ckks-add-8192 (default), encrypt_update", *default),
            Row("ours ckks-pack3-8192, encrypt_update", *packed),
            nvflare_row,
        ],
        *default,
    )
    print_group(
        f"SecAgg+ client masking, {NEIGHBOURS} neighbours (x: B/p to ours, CPU to the floor)",
        [
            Row(f"floor: {streams} AES-CTR keystreams + uint32 adds", None, floor_s),
            Row("ours encode_and_mask (quantize + all masks)", mask_bytes, mask_s),
            flower_row,
        ],
        mask_bytes,
        floor_s,
    )
    print(
        "B/param: ours HE = ciphertexts + manifest; NVFlare = the filtered Shareable as its cell "
        "layer encodes it\n(fobs, one copy of the TenSEAL context per tensor); ours masking = the "
        "masked vector; Flower = all of\none client's SecAgg+ replies (protobuf). CPU s: ours and "
        "Flower one thread; NVFlare all TenSEAL threads."
    )
    if nvflare is not None:
        print(
            f"NVFlare {nvflare['nvflare']} (TenSEAL {nvflare['tenseal']}), a model dict of "
            f"{nvflare['tensors']} tensors: ciphertexts alone "
            f"{nvflare['ciphertext_bytes_per_param']:.2f} B/param; the filter without "
            f"serialising {nvflare['encrypt_cpu_s']:.3f} CPU s, "
            f"{nvflare['encrypt_wall_s']:.3f} s wall."
        )
    if flower is not None:
        print(
            f"Flower {flower['version']}: {NEIGHBOURS + 1} clients, num_shares = clients "
            "(every client the others' neighbour), mean over the clients of the fastest of "
            f"{args.repeats} rounds;\nits stage also derives the pairwise keys, ours gets them."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--silos", type=int, default=64, help="silos in the HE error sum")
    parser.add_argument("--error-params", type=int, default=100_000)
    parser.add_argument(
        "--peer-venvs",
        type=Path,
        default=DEFAULT_VENVS,
        help=f"folder of the peers' virtualenvs flower/ and nvflare/ (default {DEFAULT_VENVS})",
    )
    parser.add_argument(
        "--create-peer-venvs",
        action="store_true",
        help="make missing peer virtualenvs (pip install: minutes, needs the package registry)",
    )
    parser.add_argument("--no-peers", action="store_true", help="measure ours only")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    he = he_rows(args.repeats, args.silos, args.error_params)
    mask = mask_rows(args.repeats)
    peer_rows(args, he, mask)
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
