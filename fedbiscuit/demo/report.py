"""The demo's report: one typed object, shown as a table and optionally written as JSON."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from fedbiscuit.demo.modes import DEMO_MODES


class Agreement(BaseModel):
    overall: float = Field(description="Held-out agreement with the labels, all silos pooled.")
    worst_silo: float = Field(description="Lowest per-silo held-out agreement.")
    initial_overall: float = Field(description="Agreement of the untrained initial selector.")


class SiloReport(BaseModel):
    id: str
    agreement: float = Field(
        description="Held-out agreement; FedBiscuit: with the selector of the silo's own "
        "cluster (the majority vote for a silo that was never grouped)."
    )
    cluster: int | None = Field(None, description="FedBiscuit: the silo's final cluster.")
    epsilon: float = Field(
        description="Epsilon spent: the silo's latest signed ledger entry, as the aggregator "
        "verified and stored it."
    )
    delta: float
    budget_epsilon: float
    rounds_participated: int


class ClusterReport(BaseModel):
    index: int
    size: int
    members: list[str]
    agreement: float | None = Field(
        description="Held-out agreement of the cluster's selector on its members' pairs pooled "
        "(null: the cluster has no members, so nothing of its own to be scored on)."
    )


class AlignmentSummary(BaseModel):
    pairs_labelled: int = Field(description="Completion pairs the selectors labelled for DPO.")
    win_rate_selectors: float = Field(description="Tuned over base, judged by the selectors.")
    win_rate_oracle: float = Field(description="Tuned over base, judged by the benchmark's people.")
    ci95: tuple[float, float] = Field(description="95% bootstrap interval of win_rate_oracle.")


class DemoReport(BaseModel):
    algorithm: str
    rounds: int
    protection: str
    backbone: str
    agreement: Agreement
    silos: list[SiloReport]
    clusters: list[ClusterReport] | None = Field(
        None, description="FedBiscuit: the final clusters (overall agreement is the vote's)."
    )
    test_pairs: int
    update_bytes: int = Field(description="Bytes of one silo's adapter update payload per round.")
    grouped_update_bytes: int | None = Field(
        None,
        description="Hidden membership: bytes of every silo's upload in a grouped round (K slots "
        "of the adapter, a count and the sizes); null otherwise.",
    )
    wall_time_s: float
    workdir: str | None = Field(description="Where everything was kept (null: removed).")
    alignment: AlignmentSummary | None = Field(
        None, description="`--align`: DPO of the benchmark's base policy on the selectors' labels."
    )

    def write_json(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    def print_table(self, console: Console) -> None:
        table = Table(
            title=f"{self.algorithm} · {self.rounds} rounds · {self.backbone} · "
            f"protection: {self.protection}"
        )
        table.add_column("silo")
        table.add_column("held-out agreement", justify="right")
        table.add_column("ε spent", justify="right")
        table.add_column("ε budget", justify="right")
        table.add_column("δ", justify="right")
        table.add_column("rounds", justify="right")
        for silo in self.silos:
            table.add_row(
                silo.id if silo.cluster is None else f"{silo.id} (cluster {silo.cluster})",
                f"{silo.agreement:.3f}",
                f"{silo.epsilon:.3f}",
                f"{silo.budget_epsilon:g}",
                f"{silo.delta:g}",
                str(silo.rounds_participated),
            )
        table.add_section()
        table.add_row(
            "overall" if self.clusters is None else "overall (majority vote)",
            f"{self.agreement.overall:.3f}",
            "",
            "",
            "",
            "",
            style="bold",
        )
        console.print(table)
        for cluster in self.clusters or []:
            if cluster.agreement is None:
                console.print(f"cluster {cluster.index}: no silos (its selector only votes)")
                continue
            console.print(
                f"cluster {cluster.index}: {cluster.size} silo(s) {', '.join(cluster.members)} · "
                f"agreement {cluster.agreement:.3f}"
            )
        grouped = (
            ""
            if self.grouped_update_bytes is None
            else f" ({self.grouped_update_bytes / 1024:.1f} KiB in grouped rounds, all alike)"
        )
        console.print(
            f"worst silo {self.agreement.worst_silo:.3f} · untrained selector "
            f"{self.agreement.initial_overall:.3f} · {self.test_pairs} held-out pairs · "
            f"update {self.update_bytes / 1024:.1f} KiB per silo per round{grouped} · "
            f"{self.wall_time_s:.0f} s"
        )
        console.print(
            "held-out agreement is computed here, by the operator running the demo, on the "
            "test pairs it holds: exact figures of those files, not DP releases of the silos"
        )
        if self.alignment is not None:
            a = self.alignment
            console.print(
                f"alignment: {a.pairs_labelled} pairs labelled · tuned beats base "
                f"{a.win_rate_selectors:.3f} by the selectors, {a.win_rate_oracle:.3f} "
                f"[{a.ci95[0]:.3f}, {a.ci95[1]:.3f}] by the benchmark's people"
            )
        if DEMO_MODES[self.protection].shows_updates:
            console.print(
                "[bold yellow]warning:[/] updates were sent in plaintext (development mode): "
                "the aggregator saw each silo's individual delta."
            )
