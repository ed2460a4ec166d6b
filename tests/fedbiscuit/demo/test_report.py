"""The demo's report as a user reads it: a cluster without members is said to be empty,
not scored 0.0 (which would read as a selector that always disagrees)."""

from __future__ import annotations

import json

from rich.console import Console

from fedbiscuit.demo.report import Agreement, ClusterReport, DemoReport, SiloReport


def _report(clusters: list[ClusterReport]) -> DemoReport:
    silo = SiloReport(
        id="silo-1",
        agreement=0.8,
        cluster=0,
        epsilon=1.5,
        delta=1e-5,
        budget_epsilon=8.0,
        rounds_participated=6,
    )
    return DemoReport(
        algorithm="fedbiscuit",
        rounds=6,
        protection="insecure_plaintext",
        backbone="tiny",
        agreement=Agreement(overall=0.8, worst_silo=0.8, initial_overall=0.5),
        silos=[silo],
        clusters=clusters,
        test_pairs=64,
        update_bytes=1024,
        wall_time_s=1.0,
        workdir=None,
    )


def test_an_empty_cluster_is_reported_as_empty_not_as_zero_agreement(tmp_path):
    report = _report(
        [
            ClusterReport(index=0, size=1, members=["silo-1"], agreement=0.8),
            ClusterReport(index=1, size=0, members=[], agreement=None),
        ]
    )
    console = Console(record=True, width=120)
    report.print_table(console)
    text = console.export_text()
    assert "cluster 0: 1 silo(s) silo-1 · agreement 0.800" in text
    assert "cluster 1: no silos (its selector only votes)" in text
    assert "agreement 0.000" not in text

    path = tmp_path / "report.json"
    report.write_json(path)
    written = json.loads(path.read_text(encoding="utf-8"))
    assert [c["agreement"] for c in written["clusters"]] == [0.8, None]


def test_the_report_says_held_out_agreement_is_the_operators_exact_figure_not_a_dp_release():
    console = Console(record=True, width=200)
    _report([]).print_table(console)
    text = console.export_text()
    assert "computed here, by the operator running the demo" in text
    assert "not DP releases of the silos" in text


def test_a_hidden_membership_report_shows_the_grouped_rounds_upload_size():
    report = _report([]).model_copy(update={"grouped_update_bytes": 3 * 1024 + 24})
    console = Console(record=True, width=200)
    report.print_table(console)

    assert "update 1.0 KiB per silo per round (3.0 KiB in grouped rounds, all alike)" in (
        console.export_text()
    )
