"""`aggregator status` fits an 80-column terminal without cutting silo ids."""

from __future__ import annotations

import pytest

from aggregator.ops.status import FederationStatus, SiloStatus
from fedbiscuit.aggregator_cli import _print_table

LONG_IDS = ("university-hospital-north", "regional-clinic-b", "hospital-c")


def _status(algorithm: str) -> FederationStatus:
    silos = tuple(
        SiloStatus(
            id=silo_id,
            joined_at_unix_s=0.0,
            last_seen_unix_s=0.0,
            exhausted=False,
            rounds_participated=12,
            last_round=11,
            epsilon=7.123,
            budget_epsilon=8.0,
            ledger_entries=12,
            declines=0,
            cluster=index % 2 if algorithm == "fedbiscuit" else None,
        )  # fmt: skip
        for index, silo_id in enumerate(LONG_IDS)
    )
    return FederationStatus(
        federation_id="hospitals", algorithm=algorithm, phase="TRAINING", round=12, attempt=0,
        round_sampled=3, round_uploads=1, rounds_total=20, rounds_completed=12, reason="",
        silos=silos,
    )  # fmt: skip


@pytest.mark.parametrize("algorithm", ["fedbis", "fedbiscuit"])
def test_status_table_at_80_columns_shows_every_silo_id_whole(
    algorithm: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")

    _print_table(_status(algorithm))

    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    for silo_id in LONG_IDS:
        assert any(line.lstrip().startswith(silo_id + " ") for line in lines), silo_id
    assert any("clus" in line for line in lines) == (algorithm == "fedbiscuit")
    assert all(" 7.123 " in line + " " for line in lines if line.lstrip().startswith(LONG_IDS))
