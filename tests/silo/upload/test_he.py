"""Homomorphic mode over real mTLS: CKKS keys from the custodian, encrypted sums at the
aggregator, statements checked by silos before they decrypt anything.

What a user relies on: the globals move by the weighted sum of the silos' updates
(aggregate on model, 1/N per sampled silo), while the aggregator's state holds no secret key
and no plaintext adapter values; silos refuse an "aggregate" that is not the stated sum.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tenseal as ts
from cryptography.hazmat.primitives import serialization

from aggregator.protection.he_vault import HeVault
from aggregator.rounds.round_table import Phase
from fedbiscuit.cli import main as fedbiscuit_main
from privacy.he import AggregateRejected, decrypt_update, open_sealed_context
from privacy.he import sum_encrypted as he_sum
from privacy.pki import FederationPaths, issue_silo, revoke
from protos import codec
from protos.errors import FailedPrecondition, InvalidInput, NotAuthenticated
from protos.operator_formats.config_files import save_model_file
from protos.plan import HeSpec, Plan
from selector.benchmark.generator import SiloData
from selector.checkpoint import load_selector
from selector.model import adapter_state
from silo.client import SiloClient
from silo.config import SiloConfig
from silo.export import export_selectors
from silo.identity import SiloIdentity
from silo.policy import SiloPolicy
from silo.upload.he_keys import HeKeyring
from tests.silo.conftest import (
    FEDERATION,
    AggregatorFactory,
    SiloConfigFactory,
    connect,
    four_silo_dataset,
    he_plan_of,
    run_silos,
    stored_windows,
)

TIMEOUT_S = 180.0
SILOS = ("silo-1", "silo-2", "silo-3")
HE_ONLY = SiloPolicy(required_protection="he")


@pytest.fixture
def tiny_dataset() -> dict[str, SiloData]:
    return four_silo_dataset()


@pytest.fixture
def he_plan(tiny_plan: Plan, pki: FederationPaths) -> Plan:
    issue_silo(pki.root, "silo-3")
    return he_plan_of(tiny_plan, HeSpec(preset="ckks-add-4096", key_custodian="silo-1"))


def _custodian_secret(config: SiloConfig):
    key = serialization.load_pem_private_key(config.pki.key.read_bytes(), None)
    sealed = (config.state_dir / "he-secret-e0.sealed").read_bytes()
    return open_sealed_context(
        key, sealed, federation_id=FEDERATION, silo_id=config.silo_id, key_epoch=0
    )


def test_he_rounds_add_the_weighted_updates_and_the_aggregator_keeps_no_key_or_plaintext(
    tmp_path: Path,
    he_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    recorded_updates: list[tuple[str, np.ndarray]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with aggregator(he_plan) as server:
        configs = [silo_config(s, server.port, policy=HE_ONLY) for s in SILOS]
        outcomes = run_silos(configs, timeout_s=TIMEOUT_S)
        phase = server.wait_until_finished(TIMEOUT_S)
        vault: HeVault = server.machine.protection.vault
        encrypted = [vault.globals(r, 0) for r in range(3)]
        public_bytes = vault.public_bytes()

    assert outcomes == [0, 0, 0] and phase == Phase.DONE
    secret = _custodian_secret(configs[0])
    initial = decrypt_update(secret, encrypted[0].vector)
    final = decrypt_update(secret, encrypted[2].vector)
    # Aggregate on model: each of the 3 sampled silos adds 1/3 of its delta, every round.
    deltas = [delta for _, delta in recorded_updates]
    assert len(deltas) == 6
    expected = initial.astype(np.float64) + np.sum(deltas, axis=0) / 3
    moved = np.linalg.norm(expected - initial)
    assert np.linalg.norm(final - expected) <= 1e-4 * moved
    assert [len(e.statement.contributions) for e in encrypted[1:]] == [3, 3]

    # No secret key: every stored TenSEAL context is public; no plaintext adapter values
    # (the silos' updates, or the decrypted globals after training) anywhere on disk or in logs.
    files = [p for p in (tmp_path / "aggregator").rglob("*") if p.is_file()]
    persisted = b"".join(p.read_bytes() for p in files)
    contexts = [p for p in files if p.read_bytes() == public_bytes]
    assert contexts and not ts.context_from(contexts[0].read_bytes()).is_private()
    assert secret._secret_bytes() not in persisted
    logs = caplog.text.encode()
    for vector in [*deltas, decrypt_update(secret, encrypted[1].vector), final]:
        for window in stored_windows(vector):
            assert window not in persisted and window not in logs


def test_a_revoked_silo_gets_no_key_and_cannot_decrypt_the_globals(
    pki: FederationPaths,
    he_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
) -> None:
    issue_silo(pki.root, "silo-4")
    with aggregator(he_plan) as server:
        configs = {s: silo_config(s, server.port, policy=HE_ONLY) for s in (*SILOS, "silo-4")}
        clients = {s: connect(c) for s, c in configs.items()}
        for client in clients.values():
            client.join()
        revoke(pki.root, "silo-4")  # revoked after joining
        custodian = configs["silo-1"]
        identity = SiloIdentity.load(custodian)
        HeKeyring(custodian, identity, clients["silo-1"], he_plan).serve()
        vault: HeVault = server.machine.protection.vault
        assert vault.keyed_silos() == {"silo-1", "silo-2", "silo-3"}
        with pytest.raises(NotAuthenticated, match="revoked"):
            clients["silo-4"].he_keys(0)
        sealed_for_2 = vault.sealed_for("silo-2")
        initial = vault.globals(0, 0).vector
        public = vault.public_context()
        for client in clients.values():
            client.close()

    key_4 = serialization.load_pem_private_key(configs["silo-4"].pki.key.read_bytes(), None)
    with pytest.raises(NotAuthenticated, match="sealed CKKS context is for .* silo 'silo-2'"):
        open_sealed_context(key_4, sealed_for_2, federation_id=FEDERATION, silo_id="silo-4",
                            key_epoch=0)  # fmt: skip
    with pytest.raises(ValueError, match="secret_key"):
        ts.ckks_vector_from(public._tenseal(), initial.ciphertexts[0]).decrypt()


def test_tampered_or_truncated_ciphertext_chunks_are_refused_at_the_wire(
    he_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused: list[str] = []
    upload = SiloClient.upload_encrypted

    def faulty_once(self, task, manifest_json, commitment_json, ciphertexts, ledger_entries):
        if task.round == 0 and len(refused) < 2:  # faults injected on purpose, then honest
            broken = bytearray(ciphertexts[0])
            broken[len(broken) // 2] ^= 1
            for bad in ((bytes(broken), *ciphertexts[1:]), ciphertexts[:-1]):
                try:
                    upload(self, task, manifest_json, commitment_json, bad, ledger_entries)
                except InvalidInput as exc:
                    refused.append(str(exc))
        return upload(self, task, manifest_json, commitment_json, ciphertexts, ledger_entries)

    monkeypatch.setattr(SiloClient, "upload_encrypted", faulty_once)
    plan = Plan.model_validate({**he_plan.model_dump(), "rounds": 1})
    with aggregator(plan) as server:
        outcomes = run_silos(
            [silo_config(s, server.port, policy=HE_ONLY) for s in SILOS], timeout_s=TIMEOUT_S
        )
        phase = server.wait_until_finished(TIMEOUT_S)

    assert outcomes == [0, 0, 0] and phase == Phase.DONE
    assert any("chunk 0 of" in r and "(truncated or tampered)" in r for r in refused)
    assert any("ciphertext chunks of the" in r and "(truncated)" in r for r in refused)


def test_silos_refuse_to_decrypt_one_silos_update_served_as_the_aggregate(
    he_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aggregate = HeVault.aggregate

    def oracle(self: HeVault, round_, adapter, task_ids, next_round):  # fault on purpose
        aggregate(self, round_, adapter, task_ids, next_round)
        if task_ids:  # keep the honest statement, serve silo-1's upload re-randomised
            victim, _ = self.contribution(task_ids[0])
            zero = self.globals(round_, adapter).vector
            fake = he_sum(self.public_context(), [victim, zero])
            statement = self.globals(next_round, adapter).statement.model_copy(
                update={"result_digest": fake.manifest.digest()}
            )
            key = f"he/e0/statements/r{next_round}.a{adapter}"
            self._store.put_artifact(key, statement.model_dump_json().encode())
            self._store.put_artifact(f"he/e0/globals/r{next_round}.a{adapter}", fake.to_bytes())

    monkeypatch.setattr(HeVault, "aggregate", oracle)
    with aggregator(he_plan) as server:
        outcomes = run_silos(
            [silo_config(s, server.port, policy=HE_ONLY) for s in SILOS], timeout_s=TIMEOUT_S
        )

    assert all(isinstance(o, AggregateRejected) for o in outcomes), outcomes
    assert all("is not the sum of the listed contributions" in str(o) for o in outcomes)


def test_a_keyed_silo_exports_the_checked_final_selector_and_others_cannot(
    tmp_path: Path,
    pki: FederationPaths,
    he_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
) -> None:
    issue_silo(pki.root, "silo-4")  # never joined: the custodian sealed it no key
    plan = Plan.model_validate({**he_plan.model_dump(), "rounds": 1})
    with aggregator(plan) as server:
        configs = {s: silo_config(s, server.port, policy=HE_ONLY) for s in (*SILOS, "silo-4")}
        with pytest.raises(FailedPrecondition, match="has not finished"):
            export_selectors(configs["silo-2"], tmp_path / "early")
        outcomes = run_silos([configs[s] for s in SILOS], timeout_s=TIMEOUT_S)
        assert server.wait_until_finished(TIMEOUT_S) == Phase.DONE
        result = export_selectors(configs["silo-2"], tmp_path / "export")
        with pytest.raises(FailedPrecondition, match="no CKKS key"):
            export_selectors(configs["silo-4"], tmp_path / "keyless")
        revoke(pki.root, "silo-3")
        with pytest.raises(NotAuthenticated, match="revoked"):
            export_selectors(configs["silo-3"], tmp_path / "revoked")
        final = server.machine.protection.vault.globals(1, 0).vector

    assert outcomes == [0, 0, 0] and (result.algorithm, result.rounds) == ("fedbis", 1)
    model, spec, meta = load_selector(tmp_path / "export")
    _, exported = codec.flatten(adapter_state(model))
    np.testing.assert_array_equal(
        exported, decrypt_update(_custodian_secret(configs["silo-1"]), final)
    )
    assert spec == plan.selector and meta["plan_sha256"] == plan.sha256()
    assert not any((tmp_path / name).exists() for name in ("early", "keyless", "revoked"))


def test_silo_export_of_a_federation_that_is_not_he_points_at_the_aggregators_export_dir(
    tmp_path: Path,
    tiny_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with aggregator(tiny_plan) as server:
        config_path = tmp_path / "silo-1.yaml"
        save_model_file(config_path, silo_config("silo-1", server.port))
        status = fedbiscuit_main(
            ["silo", "export", "--config", str(config_path), "--out", str(tmp_path / "out")]
        )

    assert status == 2
    assert "aggregator exports the selectors itself (the export_dir" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
