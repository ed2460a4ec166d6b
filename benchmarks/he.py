"""CKKS homomorphic mode beside SecAgg+ masking and plaintext: time and wire size per parameter.

Targets (issue 5): <= 32 bytes per parameter on the wire. For each update size (75k, 1.2M
and 4.2M parameters by default) it times, in one process on this machine, the same updates:

- encrypt per silo: ``encrypt_update`` (weighting, overflow check, CKKS encryption,
  serialisation, manifest hashing), the median over the silos (robust to a busy box);
- aggregator add: ``EncryptedSum`` over all silos with the public context only (every
  chunk's SHA-256 checked, parsed, added) plus serialising the result;
- decrypt: ``decrypt_update`` of the aggregate on a silo (hash check, parse, decrypt);
- masking (``benchmarks/secagg.py``'s round, preset medium): ``SecAggClient.mask`` plus
  bytes and SHA-256, the mean per silo; the aggregator's whole SecAgg+ round (unmask);
- plaintext (the same file's round): serialise + SHA-256 per silo; the aggregator re-hashes
  every upload and sums in float64;

and reports each upload's bytes per parameter (CKKS: ciphertexts + manifest; masking: the
masked vector plus key shares and signatures) and the relative error of the decrypted sum
against the float64 plaintext sum. Run from the repository root, one thread per process as
a silo would: ``OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/he.py [--quick]
[--preset ckks-add-8192] [--silos 10]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from secagg import masked_round, plaintext_round, silo_identities  # benchmarks/secagg.py

from privacy.he import (
    EncryptedSum,
    decrypt_update,
    encrypt_update,
    generate_secret_context,
    load_public_context,
    public_context_bytes,
)

SIZES = (75_000, 1_200_000, 4_200_000)
QUICK_SIZES = (75_000, 300_000)


def _bench_size(preset: str, size: int, silos: int, seed: int) -> dict[str, float]:
    ctx = generate_secret_context(preset)
    public = load_public_context(public_context_bytes(ctx), preset)
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(silos))
    updates = [rng.normal(0, 1e-3, size).astype(np.float32) for _ in range(silos)]

    uploads, encrypt_times = [], []
    for u, w in zip(updates, weights, strict=True):
        start = time.perf_counter()
        uploads.append(encrypt_update(ctx, u, weight=float(w), max_silos=silos))
        encrypt_times.append(time.perf_counter() - start)
    encrypt_s = float(np.median(encrypt_times))

    start = time.perf_counter()
    total = EncryptedSum(public, size)
    for upload in uploads:
        total.add(upload)
    aggregate = total.result()
    add_s = time.perf_counter() - start

    start = time.perf_counter()
    decrypted = decrypt_update(ctx, aggregate)
    decrypt_s = time.perf_counter() - start

    ca, identities = silo_identities(silos)
    masked = masked_round(updates, sorted(identities), ca, identities, set(), seed)
    plain = plaintext_round(updates, silos)

    expected = sum(float(w) * u.astype(np.float64) for u, w in zip(updates, weights, strict=True))
    upload_bytes = uploads[0].nbytes() + len(uploads[0].manifest.to_bytes())
    return {
        "encrypt_s": encrypt_s,
        "add_s": add_s,
        "decrypt_s": decrypt_s,
        "bytes_per_param": upload_bytes / size,
        "mask_s": masked.client_mean_s["mask"],
        "unmask_s": masked.server_s,
        "mask_bytes_per_param": masked.upload_bytes / size,
        "plain_s": plain.client_mean_s["upload"],
        "plain_sum_s": plain.server_s,
        "plain_bytes_per_param": plain.upload_bytes / size,
        "rel_error": float(np.linalg.norm(decrypted - expected) / np.linalg.norm(expected)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (seconds)")
    parser.add_argument("--preset", default="ckks-add-8192")
    parser.add_argument("--silos", type=int, default=10)
    args = parser.parse_args()
    sizes = QUICK_SIZES if args.quick else SIZES

    n = args.silos
    print(f"CKKS preset {args.preset}, SecAgg+ preset medium, {n} silos, times in seconds")
    header = (
        f"{'params':>10} | {'CKKS enc/silo':>13} {f'add x{n}':>8} {'decrypt':>8} {'B/p':>6} "
        f"{'rel err':>8} | {'mask/silo':>9} {f'unmask x{n}':>10} {'B/p':>6} | "
        f"{'plain/silo':>10} {f'sum x{n}':>8} {'B/p':>4}"
    )
    print(header)
    print("-" * len(header))
    for i, size in enumerate(sizes):
        r = _bench_size(args.preset, size, n, seed=i)
        print(
            f"{size:>10,} | {r['encrypt_s']:>13.3f} {r['add_s']:>8.3f} {r['decrypt_s']:>8.3f} "
            f"{r['bytes_per_param']:>6.2f} {r['rel_error']:>8.1e} | {r['mask_s']:>9.3f} "
            f"{r['unmask_s']:>10.3f} {r['mask_bytes_per_param']:>6.2f} | {r['plain_s']:>10.4f} "
            f"{r['plain_sum_s']:>8.4f} {r['plain_bytes_per_param']:>4.0f}",
            flush=True,
        )
    print(
        "\nunmask: all of the aggregator's SecAgg+ work in the round; plain sum: re-hash every "
        "upload and add in float64; B/p: bytes uploaded per silo per parameter."
    )


if __name__ == "__main__":
    main()
