"""`fedbiscuit demo`: a whole federation on localhost, each party its own process.

The demo plays the operator of every party: it lays out PKI, data and configs
(layout.py), starts `fedbiscuit aggregator run` and one `fedbiscuit silo run` per silo
exactly as a deployment would, follows the rounds from the aggregator's state, and at the
end evaluates the exported selector on each silo's held-out pairs, which only the demo holds.
Under protection 'he' the aggregator has no key: a silo exports the selectors with
`fedbiscuit silo export`, as its operator would, while the aggregator still serves them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aggregator.ops.status import FederationStatus, read_status
from fedbiscuit.demo.align import align_demo
from fedbiscuit.demo.layout import DemoLayout, DemoOptions, lay_out
from fedbiscuit.demo.modes import DEMO_MODES
from fedbiscuit.demo.report import Agreement, ClusterReport, DemoReport, SiloReport
from fedbiscuit.demo.workdir import check_new_workdir
from privacy.membership import KSlotLayout
from privacy.secagg import for_plan
from protos.errors import FailedPrecondition, FedbiscuitError
from selector.checkpoint import load_selector_set
from selector.data import read_jsonl
from selector.evaluation import agreement
from selector.model import adapter_state, build_encoder, build_selector
from selector.vote import majority_vote, selector_logits
from silo.config import load_silo_config
from silo.grouping_store import own_cluster

POLL_S = 0.5
LOG_TAIL_LINES = 25
EXPORT_TIMEOUT_S = 300


@dataclass
class _Party:
    name: str
    process: subprocess.Popen
    log_path: Path


def run_demo(
    options: DemoOptions,
    workdir: Path | None,
    console: Console,
    timeout_s: float,
) -> DemoReport:
    """Run the federation end to end and return its report; raise on any party's failure."""
    started = time.monotonic()
    with ExitStack() as stack:
        if workdir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fedbiscuit-")))
        else:
            root = workdir
            check_new_workdir(root)
            root.mkdir(parents=True, exist_ok=True)
        layout = lay_out(root, options)
        console.print(
            f"federation [bold]{layout.plan.federation_id}[/]: aggregator + "
            f"{len(layout.silo_configs)} "
            f"silos, {layout.plan.selector.backbone.kind} backbone, workdir {layout.workdir}",
            soft_wrap=True,  # a long workdir stays one line, to copy and paste
        )
        if layout.recipe_note is not None:
            console.print(layout.recipe_note)
        parties = _start_parties(layout)
        try:
            status = _follow_rounds(layout, parties, console, started + timeout_s)
            if DEMO_MODES[layout.plan.protection].silo_holds_key:
                silos = [party for party in parties if party.name != "aggregator"]
                _wait_for_exit(silos, deadline=time.monotonic() + 60)
                _export_through_silo(layout, console)
                report = _evaluate(layout, status, options.epsilon)
            else:
                # The aggregator wrote the selectors before it committed DONE: score them while
                # the parties shut down (seconds each), then check how every party exited.
                report = _evaluate(layout, status, options.epsilon)
                _wait_for_exit(parties, deadline=time.monotonic() + 60)
        finally:
            _stop(parties)
        if options.align:
            alignment = align_demo(layout, options, console.print)
            report = report.model_copy(update={"alignment": alignment})
        return report.model_copy(
            update={
                "wall_time_s": time.monotonic() - started,
                "workdir": str(workdir) if workdir else None,
            }
        )


def _party_env(layout: DemoLayout) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    # N training processes share the machine's cores: one thread each avoids oversubscription.
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(layout.silo_configs)))
    return env


def _start_parties(layout: DemoLayout) -> list[_Party]:
    """Start the aggregator, then the silos; each logs to its own file under logs/."""
    env = _party_env(layout)
    commands = [("aggregator", ["aggregator", "run", "--config", str(layout.aggregator_config)])]
    commands += [
        (silo_id, ["silo", "run", "--config", str(path)])
        for silo_id, path in layout.silo_configs.items()
    ]
    parties = []
    for name, args in commands:
        log_path = layout.logs_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "fedbiscuit", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        parties.append(_Party(name, process, log_path))
    return parties


def _export_through_silo(layout: DemoLayout, console: Console) -> None:
    """`fedbiscuit silo export` on the last silo (not the key custodian: its key came sealed
    through the aggregator): it checks and decrypts the final globals into selectors_dir."""
    silo_id, config = sorted(layout.silo_configs.items())[-1]
    log_path = layout.logs_dir / f"export-{silo_id}.log"
    with open(log_path, "wb") as log:
        command = ["silo", "export", "--config", str(config), "--out", str(layout.selectors_dir)]
        code = subprocess.run(
            [sys.executable, "-m", "fedbiscuit", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_party_env(layout),
            timeout=EXPORT_TIMEOUT_S,
            check=False,
        ).returncode
    if code != 0:
        raise FailedPrecondition(
            f"{silo_id} could not export the selectors (status {code}); last lines of "
            f"{log_path}:\n" + _tail(log_path)
        )
    console.print(f"{silo_id} checked, decrypted and exported the selectors (protection he)")


def _follow_rounds(
    layout: DemoLayout, parties: list[_Party], console: Console, deadline: float
) -> FederationStatus:
    """Show one progress bar per round until the aggregator reports DONE."""
    bars: dict[int, int] = {}
    status: FederationStatus | None = None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("uploads"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        while True:
            # Exits are noted before the state is read: the aggregator commits DONE before it
            # exits, so an aggregator seen gone is always seen finished below if it finished.
            exited = _exited(parties)
            status = _try_read_status(layout.aggregator_state)
            _check_exits(exited, finished=status is not None and status.finished)
            if status is not None:
                _update_bars(progress, bars, status)
                if status.finished:
                    if status.phase != "DONE":
                        raise FailedPrecondition(
                            f"the federation ended in phase {status.phase}: {status.reason}"
                        )
                    return status
            if time.monotonic() > deadline:
                raise FailedPrecondition(
                    f"the federation did not finish in time; logs are in {layout.logs_dir}"
                )
            time.sleep(POLL_S)


def _update_bars(progress: Progress, bars: dict[int, int], status: FederationStatus) -> None:
    for round_index in range(min(status.round, status.rounds_total) + 1):
        if round_index >= status.rounds_total:
            break
        done = round_index < status.round or status.finished
        if round_index not in bars:
            if not done and status.phase != "TRAINING":
                continue
            bars[round_index] = progress.add_task(
                f"round {round_index + 1}/{status.rounds_total}",
                total=max(1, status.round_sampled or 1),
            )
        task = bars[round_index]
        if done:
            total = progress.tasks[task].total or 1
            progress.update(task, completed=total)
        else:
            progress.update(
                task, total=max(1, status.round_sampled), completed=status.round_uploads
            )


def _try_read_status(state_dir: Path) -> FederationStatus | None:
    try:
        return read_status(state_dir)
    except FedbiscuitError:
        return None  # the aggregator has not created its state yet


def _exited(parties: list[_Party]) -> list[tuple[_Party, int]]:
    return [(party, code) for party in parties if (code := party.process.poll()) is not None]


def _check_exits(exited: list[tuple[_Party, int]], finished: bool) -> None:
    """A failed party, or an aggregator gone before the federation finished, ends the demo."""
    for party, code in exited:
        if code == 0 and (finished or party.name != "aggregator"):
            continue  # a silo may finish its last task before the aggregator is DONE
        raise FailedPrecondition(
            f"{party.name} exited with status {code}; last lines of {party.log_path}:\n"
            + _tail(party.log_path)
        )


def _wait_for_exit(parties: list[_Party], deadline: float) -> None:
    for party in parties:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            code = party.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            continue  # stopped below; the federation itself already finished
        if code != 0:
            raise FailedPrecondition(
                f"{party.name} exited with status {code}; last lines of {party.log_path}:\n"
                + _tail(party.log_path)
            )


def _stop(parties: list[_Party]) -> None:
    for party in parties:
        if party.process.poll() is None:
            party.process.terminate()
    for party in parties:
        try:
            party.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            party.process.kill()
            party.process.wait()


def _tail(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _own_clusters(layout: DemoLayout) -> dict[str, int]:
    """Each silo's own cluster, as `silo status` reads it from the silo's state dir."""
    clusters = {}
    for silo_id, path in layout.silo_configs.items():
        cluster = own_cluster(load_silo_config(path).state_dir, silo_id)
        if cluster is not None:
            clusters[silo_id] = cluster
    return clusters


def _grouped_upload_bytes(layout: DemoLayout, dim: int) -> int | None:
    """Hidden membership: a grouped round's upload, K slots of an adapter of `dim`
    parameters plus counts and sizes (the same for every silo); None otherwise."""
    fb = layout.plan.fedbiscuit
    if fb is None or fb.membership != "hidden":
        return None
    words = KSlotLayout.for_encoding(dim, fb.clusters, for_plan(layout.plan).encoding).length
    return words * 4  # uint32 ring elements


def _evaluate(layout: DemoLayout, status: FederationStatus, budget_epsilon: float) -> DemoReport:
    """Held-out agreement of the exported selector(s) per silo and pooled, and the initial
    one's. FedBiscuit: per silo with its own cluster's selector, pooled by majority vote."""
    selectors, spec, clusters, _ = load_selector_set(layout.selectors_dir)
    if layout.plan.fedbiscuit is not None and layout.plan.fedbiscuit.membership == "hidden":
        clusters = _own_clusters(layout)  # only the silos know them (issue 16)
    initial = build_selector(layout.plan.selector, seed=layout.plan.seed)
    encoder = build_encoder(spec)
    per_silo, pooled, pooled_initial, total = {}, 0.0, 0.0, 0
    by_cluster: dict[int, list[tuple[str, float, int]]] = {}
    for silo_id, path in sorted(layout.test_sets.items()):
        pairs = read_jsonl(path)
        # Each selector scores the pairs once; the vote and the own-cluster figure share them.
        logits = selector_logits(selectors, encoder, pairs)
        vote = float(majority_vote(logits).mean())
        if silo_id in clusters:
            own = clusters[silo_id]
            per_silo[silo_id] = float(majority_vote(logits[own : own + 1]).mean())
            by_cluster.setdefault(own, []).append((silo_id, per_silo[silo_id], len(pairs)))
        else:
            per_silo[silo_id] = vote
        pooled += vote * len(pairs)
        pooled_initial += agreement(initial, encoder, pairs) * len(pairs)
        total += len(pairs)
    cluster_reports = None
    if layout.plan.algorithm == "fedbiscuit":
        cluster_reports = [
            ClusterReport(
                index=k,
                size=len(by_cluster.get(k, [])),
                members=[silo for silo, _, _ in by_cluster.get(k, [])],
                agreement=sum(a * n for _, a, n in by_cluster[k])
                / sum(n for _, _, n in by_cluster[k])
                if k in by_cluster
                else None,
            )
            for k in range(len(selectors))
        ]
    by_id = {silo.id: silo for silo in status.silos}
    backbone = layout.plan.selector.backbone
    adapter = adapter_state(selectors[0])
    silos = [
        SiloReport(
            id=silo_id,
            agreement=value,
            cluster=clusters.get(silo_id),
            epsilon=by_id[silo_id].epsilon if silo_id in by_id else 0.0,
            delta=layout.plan.delta,
            budget_epsilon=budget_epsilon,
            rounds_participated=by_id[silo_id].rounds_participated if silo_id in by_id else 0,
        )
        for silo_id, value in per_silo.items()
    ]
    return DemoReport(
        algorithm=layout.plan.algorithm,
        rounds=layout.plan.rounds,
        protection=layout.plan.protection,
        backbone=f"local {backbone.path}" if backbone.kind == "local" else backbone.kind,
        agreement=Agreement(
            overall=pooled / total,
            worst_silo=min(per_silo.values()),
            initial_overall=pooled_initial / total,
        ),
        silos=silos,
        clusters=cluster_reports,
        test_pairs=total,
        update_bytes=sum(v.nbytes for v in adapter.values()),
        grouped_update_bytes=_grouped_upload_bytes(layout, sum(v.size for v in adapter.values())),
        wall_time_s=0.0,
        workdir=None,
    )
