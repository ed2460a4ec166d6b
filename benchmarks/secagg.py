"""What SecAgg+ masking costs against the plaintext upload path, per silo and per round.

For 75k, 1.2M and 4.2M parameters x 10 and 50 silos (preset ``medium``: ~8 neighbours,
threshold 5) it times, in one process:

* plaintext round (today's walking skeleton): each silo serialises its float32 delta and
  hashes it for the manifest; the aggregator re-hashes every upload and sums in float64;
* masked round: every client step (advertise, share keys, mask, sign survivors, unmask)
  and every server step, with the masked upload going through the same bytes + SHA-256;
  with 0% dropouts and with 20% of silos dropping after sharing keys (the costly case: the
  aggregator must rebuild their mask keys and strip their pairwise masks).

Round time assumes silos run in parallel (they are separate machines): the sum over phases
of the slowest silo's step, plus the aggregator's time. Network time is left out; it is the
same for both, since masked uploads are 4 bytes per parameter like float32 ones.

Run from the repository root: ``python benchmarks/secagg.py [--quick]``. With
``--flower-python PATH`` (the Python of a separate virtualenv holding ``flwr``, never our
dependency) each row also runs ``benchmarks/flower_secaggplus.py`` under that Python: Flower's
own SecAgg+ workflow and plaintext round on the same sizes, timed the same way (its docstring
says exactly how), and adds Flower's round times and the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from privacy.pki import init_ca, issue_silo
from privacy.secagg import MEDIUM, RoundContext, SecAggClient, SecAggServer, build_graph

NOW = datetime.now(UTC)
POOL = 4  # distinct update vectors, reused across silos to bound memory
FLOWER_SCRIPT = Path(__file__).with_name("flower_secaggplus.py")
DROPOUTS = (0.0, 0.2)


@dataclass
class Timing:
    client_max_s: dict[str, float]
    client_mean_s: dict[str, float]
    server_s: float
    upload_bytes: int
    download_bytes: int

    @property
    def round_s(self) -> float:
        return sum(self.client_max_s.values()) + self.server_s


def silo_identities(count: int):
    with tempfile.TemporaryDirectory() as root:
        paths = init_ca(root, "bench", now=NOW)
        ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        out = {}
        for index in range(count):
            silo = f"silo-{index:02d}"
            cert, key = issue_silo(root, silo, now=NOW)
            out[silo] = (
                cert.read_bytes(),
                serialization.load_pem_private_key(key.read_bytes(), None),
            )
    return ca, out


def _timed(store: dict[str, dict[str, float]], phase: str, silo: str, fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    store[phase][silo] += time.perf_counter() - start
    return result


def plaintext_round(updates: list[np.ndarray], n: int) -> Timing:
    client = []
    uploads = []
    for i in range(n):
        start = time.perf_counter()
        raw = np.ascontiguousarray(updates[i % POOL], dtype="<f4").tobytes()
        digest = hashlib.sha256(raw).hexdigest()
        client.append(time.perf_counter() - start)
        uploads.append((raw, digest))
    start = time.perf_counter()
    total = np.zeros(updates[0].size, dtype=np.float64)
    for raw, digest in uploads:
        assert hashlib.sha256(raw).hexdigest() == digest
        total += np.frombuffer(raw, dtype="<f4")
    server = time.perf_counter() - start
    size = updates[0].size * 4
    return Timing({"upload": max(client)}, {"upload": float(np.mean(client))}, server, size, 0)


def _dropouts(ids: list[str], ctx: RoundContext, fraction: float, rng) -> tuple[set[str], int]:
    """A random set of silos dropping after sharing that the round can recover from."""
    graph = build_graph(ids, ctx.digest, MEDIUM)
    count = round(fraction * len(ids))
    failed = 0
    while True:
        dropped = set(rng.choice(ids, count, replace=False).tolist()) if count else set()
        live = set(ids) - dropped
        if all(len(graph.neighbours[s] & live) >= graph.threshold for s in ids):
            return dropped, failed
        failed += 1


def masked_round(
    updates: list[np.ndarray], ids: list[str], ca, identities, dropped: set[str], seed: int
) -> Timing:
    rng = np.random.default_rng(seed)
    ctx = RoundContext("bench", seed, "ab" * 32, rng.bytes(32))
    length = updates[0].size
    client_t: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    server_t = 0.0
    up = down = 0

    def server(fn, *args):
        nonlocal server_t
        start = time.perf_counter()
        result = fn(*args)
        server_t += time.perf_counter() - start
        return result

    srv = server(SecAggServer, MEDIUM, ctx, length, ca, NOW)
    clients = {
        s: _timed(client_t, "advertise", s, SecAggClient, MEDIUM, ctx, s, *identities[s], ca, NOW)
        for s in ids
    }
    for s in ids:
        adv = _timed(client_t, "advertise", s, clients[s].advertise)
        up += 64 + len(adv.certificate_pem) + len(adv.signature)
        server(srv.receive_advertisement, s, adv)
    roster = server(srv.close_advertising)
    down += len(ids) * (64 + len(roster.advertisements[0].certificate_pem) + 72)
    for s in ids:
        shares = _timed(client_t, "share_keys", s, clients[s].share_keys, roster)
        up += sum(len(c) for c in shares.ciphertexts.values())
        server(srv.receive_shares, s, shares)
    deliveries = server(srv.close_sharing)
    for i, s in enumerate(ids):
        if s in dropped:
            continue
        masked = _timed(client_t, "mask", s, clients[s].mask, deliveries[s], updates[i % POOL])
        down += sum(len(c) for c in deliveries[s].ciphertexts.values())
        raw = _timed(client_t, "mask", s, lambda v=masked.vector: v.astype("<u4").tobytes())
        digest = _timed(client_t, "mask", s, lambda r=raw: hashlib.sha256(r).digest())
        up += len(raw)

        def receive(raw=raw, digest=digest, masked=masked, s=s):
            assert hashlib.sha256(raw).digest() == digest
            srv.receive_masked_input(s, masked)

        server(receive)
    request = server(srv.close_masking)
    survivors = request.survivors
    for s in survivors:
        signature = _timed(client_t, "sign", s, clients[s].sign_survivors, request)
        up += len(signature.signature)
        server(srv.receive_survivor_signature, s, signature)
    unmask_request = server(srv.close_consistency)
    for s in survivors:
        response = _timed(client_t, "unmask", s, clients[s].unmask, unmask_request)
        up += 33 * (len(response.self_mask_shares) + len(response.mask_key_shares))
        down += 72 * len(survivors)
        server(srv.receive_unmask_response, s, response)
    result = server(srv.finish)
    assert result.silos == tuple(sorted(set(ids) - dropped))
    return Timing(
        {p: max(v.values()) for p, v in client_t.items()},
        {p: float(np.mean(list(v.values()))) for p, v in client_t.items()},
        server_t,
        up // len(ids),
        down // len(ids),
    )


def _best(repeats: int, run, *args) -> Timing:
    """The fastest of ``repeats`` runs (the others mostly measure page faults and GC)."""
    return min((run(*args) for _ in range(max(1, repeats))), key=lambda t: t.round_s)


def flower_rounds(python: str, size: int, silos: int, repeats: int) -> dict:
    """Flower's SecAgg+ (per dropout) and plaintext rounds for one row, run in flwr's venv.

    A subprocess keeps ``flwr`` and its pinned numpy/grpcio/cryptography out of our process;
    PYTHONPATH is dropped so nothing of ours can be imported there by accident.
    """
    command = [python, str(FLOWER_SCRIPT), "--params", str(size), "--clients", str(silos)]
    command += ["--repeats", str(repeats), "--dropout", *(f"{d:g}" for d in DROPOUTS)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="75k and 1.2M parameters only")
    parser.add_argument("--repeats", type=int, default=2, help="keep each round's fastest run")
    parser.add_argument("--phases", action="store_true", help="print each phase's slowest silo")
    parser.add_argument(
        "--flower-python",
        metavar="PATH",
        help="Python of a virtualenv with flwr: also time Flower's SecAgg+ on every row",
    )
    args = parser.parse_args()
    sizes = [75_000, 1_200_000] if args.quick else [75_000, 1_200_000, 4_200_000]
    silo_counts = [10, 50]
    ca, identities = silo_identities(max(silo_counts))
    rng = np.random.default_rng(0)
    print(
        f"preset medium: degree {MEDIUM.degree}, "
        f"threshold fraction {MEDIUM.threshold_fraction:.2f}, "
        f"{MEDIUM.encoding.bits}-bit ring, resolution 2^{int(np.log2(MEDIUM.encoding.resolution))}"
    )
    header = (
        f"{'params':>9} {'silos':>5} | {'mask/silo ms':>12} {'plain/silo ms':>13} | "
        f"{'unmask 0% ms':>12} {'unmask 20% ms':>13} {'plain sum ms':>12} | "
        f"{'round 0%':>8} {'round 20%':>9} {'plain':>7} | {'x0%':>5} {'x20%':>5} | "
        f"{'up B/param':>10} {'down KiB':>8}"
    )
    if args.flower_python:
        header += (
            f" || {'F sa 0%':>7} {'F sa 20%':>8} {'F plain':>7} {'F x0%':>6} {'F x20%':>6} | "
            f"{'F/us 0%':>7} {'F/us 20%':>8} {'F up B/p':>8}"
        )
    print(header)
    print("-" * len(header))
    notes = []
    for size in sizes:
        updates = [(rng.standard_normal(size) * 0.05).astype(np.float32) for _ in range(POOL)]
        for n in silo_counts:
            ids = sorted(identities)[:n]

            plain = _best(args.repeats, plaintext_round, updates, n)
            full = _best(args.repeats, masked_round, updates, ids, ca, identities, set(), 1)
            ctx = RoundContext("bench", 2, "ab" * 32, np.random.default_rng(2).bytes(32))
            dropped, failed = _dropouts(ids, ctx, 0.2, np.random.default_rng(size + n))
            if failed:
                notes.append(
                    f"{size} x {n}: {failed} random 20% dropout draw(s) would have aborted "
                    "(a silo with < t live neighbours) before a recoverable one"
                )
            drop = _best(args.repeats, masked_round, updates, ids, ca, identities, dropped, 2)
            row = (
                f"{size:>9,} {n:>5} | {full.client_mean_s['mask'] * 1e3:>12.1f} "
                f"{plain.client_mean_s['upload'] * 1e3:>13.1f} | "
                f"{full.server_s * 1e3:>12.1f} {drop.server_s * 1e3:>13.1f} "
                f"{plain.server_s * 1e3:>12.1f} | "
                f"{full.round_s:>8.3f} {drop.round_s:>9.3f} {plain.round_s:>7.3f} | "
                f"{full.round_s / plain.round_s:>5.2f} {drop.round_s / plain.round_s:>5.2f} | "
                f"{full.upload_bytes / size:>10.3f} {full.download_bytes / 1024:>8.1f}"
            )
            if args.flower_python:
                flower = flower_rounds(args.flower_python, size, n, args.repeats)
                f0, f20 = (flower["secaggplus"][f"{d:g}"] for d in DROPOUTS)
                f_plain = flower["plaintext"]["round_s"]
                row += (
                    f" || {f0['round_s']:>7.3f} {f20['round_s']:>8.3f} {f_plain:>7.3f} "
                    f"{f0['round_s'] / f_plain:>6.1f} {f20['round_s'] / f_plain:>6.1f} | "
                    f"{f0['round_s'] / full.round_s:>7.2f} {f20['round_s'] / drop.round_s:>8.2f} "
                    f"{f0['up_bytes_per_param']:>8.3f}"
                )
            print(row, flush=True)
            if args.phases:
                slowest = ", ".join(f"{p} {t * 1e3:.1f}" for p, t in full.client_max_s.items())
                print(f"{'':>15} slowest silo per phase (ms): {slowest}")
    print(
        "\nmask/silo: SecAggClient.mask (encode + open shares + ECDH + AES-CTR masks) + bytes + "
        "SHA-256;\nunmask: all aggregator work of the round; round: sum over phases of the "
        "slowest silo + aggregator (s);\nx0%/x20%: masked round / plaintext round; up B/param: "
        "bytes uploaded per silo per parameter."
    )
    if args.flower_python:
        print(
            f"F: Flower {flower['flwr']} SecAgg+ (num_shares {flower['num_shares']} = 8 neighbours "
            f"+ self, reconstruction_threshold {flower['reconstruction_threshold']}) and plaintext "
            "rounds, timed alike (benchmarks/flower_secaggplus.py);\nF x0%/F x20%: Flower SecAgg+ "
            "/ Flower plaintext; F/us: Flower SecAgg+ round / ours (> 1: ours is faster)."
        )
    for note in notes:
        print("note:", note)
    if not args.flower_python:
        print(
            "Flower SecAgg+ comparison: not run; add --flower-python PATH, the Python of a "
            "separate virtualenv with flwr installed (never our dependency)."
        )


if __name__ == "__main__":
    main()
