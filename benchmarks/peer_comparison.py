"""Peers measured beside ours: Flower's SecAgg+ client masking and NVFlare's HE encryption.

Neither peer is a dependency of fedbiscuit and nothing of theirs is imported here: each runs
in its own virtualenv, ``<venvs>/flower`` (``flwr``) and ``<venvs>/nvflare`` (``nvflare`` and
``tenseal``), where ``benchmarks/flower_secaggplus.py`` and ``benchmarks/nvflare_he.py`` are
started with that virtualenv's Python and print one JSON line. With ``create=True`` a missing
virtualenv is made (``python -m venv``, then pip with the pinned versions those runners were
written against, and torch held to the local CPU 2.13.0 should anything ask for it). A peer
that cannot be measured gives its reason instead of figures; this never raises for a peer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_VENVS = Path.home() / ".cache" / "fedbiscuit" / "peer-venvs"
TIMEOUT_S = 600


@dataclass(frozen=True)
class Peer:
    """A peer framework: where its virtualenv lives, what it holds, which runner it runs."""

    venv: str
    requirements: tuple[str, ...]
    module: str  # must import in the virtualenv
    script: Path


FLOWER = Peer("flower", ("flwr==1.42.0",), "flwr.server.workflow", HERE / "flower_secaggplus.py")
NVFLARE = Peer(
    "nvflare",
    ("nvflare==2.9.0", "tenseal==0.3.18"),
    "nvflare.app_opt.he.model_encryptor",
    HERE / "nvflare_he.py",
)


class NotMeasured(Exception):
    """Why a peer's row has no figures."""


def _run(command: list[str], what: str, timeout: float = TIMEOUT_S) -> str:
    """stdout of ``command``; PYTHONPATH is dropped so nothing of ours leaks into a peer."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NotMeasured(f"{what} ran past {timeout:.0f} s") from None
    except OSError as exc:
        raise NotMeasured(f"{what} could not start: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise NotMeasured(f"{what} failed (exit {done.returncode}): {last[:300]}")
    return done.stdout


def _create(peer: Peer, venv: Path) -> None:
    _run([sys.executable, "-m", "venv", str(venv)], f"python -m venv {venv}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("torch==2.13.0\n")  # the CPU wheel on disk, never a CUDA build
    try:
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        _run([*pip, "-c", constraints.name, *peer.requirements], f"pip install into {venv}")
    finally:
        os.unlink(constraints.name)


def peer_python(peer: Peer, venvs: Path, create: bool) -> Path:
    """The Python of ``peer``'s virtualenv under ``venvs``, made first if ``create``."""
    venv = venvs / peer.venv
    python = venv / "bin" / "python"
    if not python.exists():
        if not create:
            raise NotMeasured(
                f"no virtualenv at {venv} (add --create-peer-venvs, or make it with "
                f"python -m venv {venv} && {python} -m pip install {' '.join(peer.requirements)})"
            )
        _create(peer, venv)
    _run([str(python), "-c", f"import {peer.module}"], f"import {peer.module} in {venv}")
    return python


def _json(stdout: str, what: str) -> dict:
    """The runner's JSON line: its last line (TenSEAL prints warnings to stdout)."""
    lines = stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise NotMeasured(f"{what} printed no JSON line") from None


def flower_masking(venvs: Path, create: bool, params: int, neighbours: int, repeats: int) -> dict:
    """Flower SecAgg+ over ``neighbours + 1`` clients, every one the others' neighbour.

    Returns Flower's version, the collect-masked-vectors stage's client CPU seconds (mean
    over the clients of the fastest of ``repeats`` rounds) and the upload bytes per
    parameter of one client.
    """
    python = peer_python(FLOWER, venvs, create)
    clients = neighbours + 1
    command = [str(python), str(FLOWER.script), "--params", str(params)]
    command += ["--clients", str(clients), "--num-shares", str(clients)]
    command += ["--threshold", str(clients // 2 + 1), "--repeats", str(repeats)]
    result = _json(_run(command, "flower_secaggplus.py"), "flower_secaggplus.py")
    round_ = result["secaggplus"]["0"]
    return {
        "version": result["flwr"],
        "cpu_s": round_["client_cpu_mean_s"]["collect_masked_vectors"],
        "bytes_per_param": round_["up_bytes_per_param"],
    }


def nvflare_encryption(venvs: Path, create: bool, params: int, repeats: int) -> dict:
    """NVFlare's HEModelEncryptor on a provisioned client: its runner's figures."""
    python = peer_python(NVFLARE, venvs, create)
    command = [str(python), str(NVFLARE.script), "--params", str(params)]
    command += ["--repeats", str(repeats)]
    return _json(_run(command, "nvflare_he.py"), "nvflare_he.py")


@dataclass(frozen=True)
class Row:
    """One line of the comparison: figures, or the reason there are none."""

    label: str
    bytes_per_param: float | None = None
    cpu_s: float | None = None
    missing: str = ""


def print_group(title: str, rows: list[Row], bytes_ref: float, cpu_ref: float) -> None:
    """Rows with their ratios to the group's references (< 1: smaller or faster)."""
    print(title)
    for row in rows:
        if row.missing:
            print(f"  {row.label:<58} not measured: {row.missing}")
            continue
        size = "-" if row.bytes_per_param is None else f"{row.bytes_per_param:.2f}"
        size_x = "-" if row.bytes_per_param is None else f"{row.bytes_per_param / bytes_ref:.2f}"
        cpu = "-" if row.cpu_s is None else f"{row.cpu_s:.4f}"
        cpu_x = "-" if row.cpu_s is None else f"{row.cpu_s / cpu_ref:.2f}"
        print(f"  {row.label:<58} {size:>8} {cpu:>8} {size_x:>7} {cpu_x:>7}")
