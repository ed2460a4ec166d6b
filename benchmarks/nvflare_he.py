"""Bytes per parameter and encryption time of NVIDIA FLARE's HE model encryption, for ours.

Run it with the Python of a separate virtualenv that has ``nvflare`` and ``tenseal`` (never
dependencies of fedbiscuit; this script imports nothing of ours)::

    /path/to/nvflare-venv/bin/python benchmarks/nvflare_he.py --params 1200000

It prints one JSON line. ``benchmarks/peer_comparison.py`` runs it for ``speed_targets.py``.

What runs is NVFlare's own code, unmodified, as a client site of a provisioned project:

* ``nvflare provision`` (the CLI of that virtualenv) builds a project of one server and one
  client whose builders include ``nvflare.lighter.impl.HEBuilder`` with no arguments, i.e.
  NVFlare's HE provisioning defaults (CKKS, poly_modulus_degree 8192, coeff_mod_bit_sizes
  [60, 40, 40], scale 2^40, as that builder's docstring states). The client's startup kit
  then holds the signed ``client_context.tenseal``.
* ``SecurityContentService`` is initialised on that startup folder, as a client does, and
  ``HEModelEncryptor`` (``nvflare.app_opt.he.model_encryptor``, the task-result filter of
  NVFlare's HE examples) loads the context on ``START_RUN`` in secure mode (signature
  checked).
* A ``WEIGHT_DIFF`` DXO holding a model dict of ``--tensors`` float32 tensors, 1.2M
  parameters in all by default, goes through the filter's ``process``. Default layout: 24
  tensors, the tensor count of a LoRA adapter on query and value of a 6-layer encoder.

What is measured:

* encryption: CPU seconds of the whole process (``time.process_time``: TenSEAL encrypts a
  tensor's ciphertexts on several threads, all counted) and wall seconds, of the filter's
  ``process`` alone and of ``process`` plus serialising its result (ours serialises its
  ciphertexts inside ``encrypt_update``, so that is the figure to compare); the median of
  ``--repeats``;
* bytes on the wire: the filtered Shareable serialised the way NVFlare's cell layer encodes
  a payload (``fobs.dumps(..., buffer_list=True)``, sized with its ``buffer_len``);
  NVFlare's CKKSVector decomposer sends the serialised TenSEAL context with every encrypted
  tensor, so the ciphertexts alone are reported too;
* a check that the filter really encrypted: the first tensor decrypts (the client context
  holds the secret key) to the input within 1e-3.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import tenseal as ts
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.app_opt.he.model_encryptor import HEModelEncryptor
from nvflare.fuel.f3.cellnet.utils import buffer_len
from nvflare.fuel.sec.security_content_service import SecurityContentService
from nvflare.fuel.utils import fobs

CONTEXT_FILE = "client_context.tenseal"
TIMES = (
    "encrypt_cpu_s",
    "encrypt_wall_s",
    "encrypt_serialise_cpu_s",
    "encrypt_serialise_wall_s",
)
PROJECT = """\
api_version: 3
name: he_bytes
description: one client, NVFlare's HE provisioning defaults
participants:
  - {name: server1, type: server, org: bench, fed_learn_port: 8002}
  - {name: site-1, type: client, org: bench}
  - {name: admin@bench.org, type: admin, org: bench, role: project_admin}
builders:
  - path: nvflare.lighter.impl.workspace.WorkspaceBuilder
  - path: nvflare.lighter.impl.static_file.StaticFileBuilder
    args: {config_folder: config}
  - path: nvflare.lighter.impl.he.HEBuilder
  - path: nvflare.lighter.impl.cert.CertBuilder
  - path: nvflare.lighter.impl.signature.SignatureBuilder
"""


def provision(workdir: Path) -> Path:
    """The client's startup folder of a freshly provisioned project (NVFlare's own CLI)."""
    (workdir / "project.yml").write_text(PROJECT)
    command = [sys.executable, "-m", "nvflare.cli", "provision", "-p", "project.yml", "-w", "ws"]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    kits = list((workdir / "ws").glob(f"*/prod_*/site-1/startup/{CONTEXT_FILE}"))
    if done.returncode != 0 or len(kits) != 1:
        raise RuntimeError(f"nvflare provision failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return kits[0].parent


def model(params: int, tensors: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A model dict of ``tensors`` float32 tensors, ``params`` values in all."""
    sizes = [params // tensors + (i < params % tensors) for i in range(tensors)]
    return {
        f"layer{i}.weight": rng.normal(0, 0.02, n).astype(np.float32) for i, n in enumerate(sizes)
    }


def client_context() -> FLContext:
    """An FLContext whose peer is the client site, as the client runtime hands a filter."""
    peer = FLContext()
    peer.put(key=ReservedKey.IDENTITY_NAME, value="site-1", private=False, sticky=False)
    fl_ctx = FLContext()
    fl_ctx.set_peer_context(peer)
    return fl_ctx


def encrypt_once(encryptor: HEModelEncryptor, weights: dict[str, np.ndarray]) -> dict:
    """One pass of the filter and of the cell layer's encoding, timed; the figures."""
    dxo = DXO(
        data_kind=DataKind.WEIGHT_DIFF,
        data={k: v.copy() for k, v in weights.items()},  # the filter replaces entries in place
        meta={MetaKey.NUM_STEPS_CURRENT_ROUND: 1},
    )
    fl_ctx = client_context()
    cpu, wall = time.process_time(), time.perf_counter()
    result = encryptor.process(dxo.to_shareable(), fl_ctx)
    cpu_filter, wall_filter = time.process_time() - cpu, time.perf_counter() - wall
    wire = buffer_len(fobs.dumps(result, buffer_list=True))
    return {
        "shareable": result,
        "wire_bytes": wire,
        "encrypt_cpu_s": cpu_filter,
        "encrypt_wall_s": wall_filter,
        "encrypt_serialise_cpu_s": time.process_time() - cpu,
        "encrypt_serialise_wall_s": time.perf_counter() - wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, required=True, help="model parameters in all")
    parser.add_argument("--tensors", type=int, default=24, help="tensors in the model dict")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the filter logs every tensor at INFO

    with tempfile.TemporaryDirectory(prefix="nvflare-he-") as tmp:
        startup = provision(Path(tmp))
        SecurityContentService.initialize(content_folder=str(startup))
        encryptor = HEModelEncryptor(tenseal_context_file=CONTEXT_FILE)
        encryptor.handle_event(EventType.START_RUN, client_context())
        if encryptor.tenseal_context is None:
            raise RuntimeError("HEModelEncryptor did not load the provisioned context")
        context_bytes = len((startup / CONTEXT_FILE).read_bytes())

    weights = model(args.params, args.tensors, np.random.default_rng(0))
    runs = [encrypt_once(encryptor, weights) for _ in range(max(1, args.repeats))]
    data = from_shareable(runs[-1]["shareable"]).data
    first = next(iter(weights))
    error = float(np.max(np.abs(np.array(data[first].decrypt()) - weights[first])))
    if error > 1e-3:
        raise RuntimeError(f"decrypting {first} is off by {error}: the filter did not encrypt")
    ciphertexts = sum(len(v.serialize()) for v in data.values() if isinstance(v, ts.CKKSVector))
    print(
        json.dumps(
            {
                "nvflare": version("nvflare"),
                "tenseal": version("tenseal"),
                "params": args.params,
                "tensors": args.tensors,
                **{key: statistics.median(r[key] for r in runs) for key in TIMES},
                "wire_bytes_per_param": runs[-1]["wire_bytes"] / args.params,
                "ciphertext_bytes_per_param": ciphertexts / args.params,
                "client_context_file_bytes": context_bytes,
                "max_abs_error_first_tensor": error,
            }
        )
    )


if __name__ == "__main__":
    main()
