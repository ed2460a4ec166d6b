"""Signed ledger entries built in code, for tests that play a silo by hand."""

from __future__ import annotations

from privacy.ledger import GENESIS_HASH, EntrySigner, LedgerEntry, ReleaseParams
from privacy.pki import FederationPaths


def signer_for(pki: FederationPaths, silo_id: str) -> EntrySigner:
    return EntrySigner.from_files(pki.silo_key(silo_id), pki.silo_cert(silo_id))


def signed_entry(
    signer: EntrySigner,
    *,
    federation_id: str,
    silo_id: str,
    seq: int,
    round_: int,
    prev_hash: str = GENESIS_HASH,
    steps: int = 2,
    clip_norm: float = 1.0,
    delta: float = 1e-5,
    noise_multiplier: float = 1.0,
    sample_rate: float = 0.1,
    epsilon_after: float = 0.5,
    budget_epsilon: float = 8.0,
    timestamp: float = 1_700_000_000.0,
    **overrides: object,
) -> LedgerEntry:
    fields = {
        "federation_id": federation_id,
        "silo_id": silo_id,
        "seq": seq,
        "round": round_,
        "mechanism": "dp_sgd",
        "params": ReleaseParams(
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            steps=steps,
            clip_norm=clip_norm,
            delta=delta,
        ),
        "secure_rng": True,
        "epsilon_after": epsilon_after,
        "budget_epsilon": budget_epsilon,
        "timestamp": timestamp,
        "prev_hash": prev_hash,
        **overrides,
    }
    unsigned = LedgerEntry.model_construct(
        **fields, signer_cert="", entry_hash=GENESIS_HASH, signature=""
    )
    return signer.sign(unsigned)
