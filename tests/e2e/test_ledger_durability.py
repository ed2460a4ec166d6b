"""No ledger entry is lost or duplicated when the silo or the aggregator is SIGKILLed between
the silo writing an entry and the aggregator acknowledging it (real processes, real mTLS)."""

from __future__ import annotations

import subprocess

import pytest

from aggregator.ops.status import read_status
from aggregator.store import SqliteStore
from fedbiscuit.demo.layout import FEDERATION_ID, DemoOptions, lay_out
from privacy.ledger import Ledger

from .processes import (
    audit,
    kill,
    ledger_lines,
    start,
    stop_all,
    stored_entries,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.slow

ROUNDS = 4


def test_ledger_entries_survive_sigkill_of_silo_and_aggregator(tmp_path):
    layout = lay_out(
        tmp_path / "fed",
        DemoOptions(silos=2, rounds=ROUNDS, tiny=True, protection="insecure_plaintext"),
    )
    state = layout.aggregator_state
    ledgers = {
        s: layout.workdir / "silos" / s / "state" / "ledger.jsonl" for s in layout.silo_configs
    }
    aggregator_args = ["aggregator", "run", "--config", str(layout.aggregator_config)]
    aggregator_log = layout.logs_dir / "aggregator.log"

    def silo_process(silo_id: str) -> subprocess.Popen:
        config = str(layout.silo_configs[silo_id])
        return start(["silo", "run", "--config", config], layout.logs_dir / f"{silo_id}.log")

    aggregator = start(aggregator_args, aggregator_log)
    silos = {silo_id: silo_process(silo_id) for silo_id in layout.silo_configs}
    try:
        # 1. silo-1 dies the moment its round-1 entry is on disk (it is training; the
        #    upload that would deliver the entry has not left yet).
        running = [aggregator, *silos.values()]
        wait_for(lambda: ledger_lines(ledgers["silo-1"]) >= 2, "silo-1's 2nd entry", running)
        kill(silos["silo-1"])
        written, held = ledger_lines(ledgers["silo-1"]), stored_entries(state, "silo-1")
        silos["silo-1"] = silo_process("silo-1")

        # 2. The aggregator dies the moment it has stored silo-2's round-2 entry (its ack,
        #    the update and the round's aggregation may not have happened yet).
        running = [aggregator, *silos.values()]
        wait_for(lambda: stored_entries(state, "silo-2") >= 3, "silo-2's 3rd entry", running)
        kill(aggregator)
        assert not read_status(state).finished, "killed too late to test a restart"
        aggregator = start(aggregator_args, aggregator_log)

        wait_finished(aggregator, aggregator_log, silos.values())
    finally:
        stop_all([aggregator, *silos.values()])

    assert written >= 2 and held <= written  # silo-1 died with an entry the aggregator may lack
    final = read_status(state)
    assert final.phase == "DONE" and final.rounds_completed == ROUNDS
    store = SqliteStore.open_read_only(state)
    try:
        for silo_id, path in ledgers.items():
            ledger = Ledger.open(path, federation_id=FEDERATION_ID, silo_id=silo_id)  # verifies
            held_lines = [record.entry_json for record in store.ledger_entries(silo_id)]
            silo_lines = [entry.to_line() for entry in ledger.entries]
            # The aggregator's copy is the silo's ledger entry for entry: nothing lost, nothing
            # duplicated, nothing altered (a crash can only add a spent-but-unused release).
            assert held_lines == silo_lines
            # Each update that went into the globals names the entry of its own release.
            for submission in store.submissions(silo_id=silo_id):
                if submission.aggregated:
                    assert ledger.entries[submission.ledger_seq].round == submission.round
    finally:
        store.close()
    audited = audit(layout.workdir, layout.pki_dir / "ca.pem")
    assert audited.returncode == 0, audited.stdout + audited.stderr
