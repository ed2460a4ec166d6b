"""CKKS homomorphic mode: encrypt, aggregate and decrypt times and wire size per parameter.

Targets (issue 5): <= 32 bytes per parameter on the wire. For each update size (75k, 1.2M
and 4.2M parameters by default) it times, in one process on this machine:

- encrypt per silo: ``encrypt_update`` (weighting, overflow check, CKKS encryption,
  serialisation, manifest hashing), the median over the silos (robust to a busy box);
- aggregator add: ``EncryptedSum`` over all silos with the public context only (every
  chunk's SHA-256 checked, parsed, added) plus serialising the result;
- decrypt: ``decrypt_update`` of the aggregate on a silo (hash check, parse, decrypt);
- plaintext sum: the same weighted sum of float32 vectors in numpy, for scale.

and reports the upload's bytes per parameter (ciphertexts + manifest) and the relative error
of the decrypted sum against the float64 plaintext sum. Single-threaded TenSEAL calls.
Run from the repository root: ``PYTHONPATH=. python benchmarks/he.py [--quick]
[--preset ckks-add-8192] [--silos 10]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

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

    start = time.perf_counter()
    plain = np.zeros(size, dtype=np.float32)
    for u, w in zip(updates, weights, strict=True):
        plain += np.float32(w) * u
    plain_s = time.perf_counter() - start

    expected = sum(float(w) * u.astype(np.float64) for u, w in zip(updates, weights, strict=True))
    upload_bytes = uploads[0].nbytes() + len(uploads[0].manifest.to_bytes())
    return {
        "encrypt_s": encrypt_s,
        "add_s": add_s,
        "decrypt_s": decrypt_s,
        "plain_s": plain_s,
        "bytes_per_param": upload_bytes / size,
        "rel_error": float(np.linalg.norm(decrypted - expected) / np.linalg.norm(expected)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (seconds)")
    parser.add_argument("--preset", default="ckks-add-8192")
    parser.add_argument("--silos", type=int, default=10)
    args = parser.parse_args()
    sizes = QUICK_SIZES if args.quick else SIZES

    print(f"preset {args.preset}, {args.silos} silos, times in seconds")
    header = (
        f"{'params':>10} {'encrypt/silo':>12} {f'add x{args.silos}':>10} {'decrypt':>8} "
        f"{'plain sum':>10} {'B/param':>8} {'rel err':>9}"
    )
    print(header)
    print("-" * len(header))
    for i, size in enumerate(sizes):
        r = _bench_size(args.preset, size, args.silos, seed=i)
        print(
            f"{size:>10,} {r['encrypt_s']:>12.3f} {r['add_s']:>10.3f} {r['decrypt_s']:>8.3f} "
            f"{r['plain_s']:>10.4f} {r['bytes_per_param']:>8.2f} {r['rel_error']:>9.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
