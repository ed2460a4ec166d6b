"""Homomorphic mode (DESIGN.md §6): CKKS-encrypted updates that the aggregator only adds.

Pure mechanisms over bytes and arrays, no I/O: named parameter presets and their security
and precision checks, the custodian's secret context and the public one, sealing the secret
context to a silo certificate, packing a flat update into ciphertexts with a streaming
manifest, the homomorphic sum, decryption, and the signed statements that stop the
aggregator from using silos as a decryption oracle.
"""

from privacy.he._context import (
    PublicContext,
    SecretContext,
    generate_secret_context,
    load_public_context,
    public_context_bytes,
)
from privacy.he._packing import (
    CiphertextManifest,
    EncryptedSum,
    EncryptedVector,
    check_manifest,
    decrypt_update,
    encrypt_update,
    load_chunk,
    sum_encrypted,
)
from privacy.he._plan import max_terms, preset_for_plan
from privacy.he._presets import (
    DEFAULT_PRESET,
    DEFAULT_RELATIVE_ERROR,
    HE_STANDARD_MAX_LOG_Q_128,
    PRESETS,
    CkksPreset,
    check_capacity,
    check_security,
    get_preset,
)
from privacy.he._sealing import open_sealed_context, seal_secret_context_for
from privacy.he._statements import (
    AggregateRejected,
    AggregateStatement,
    ContributionCommitment,
    SignedCommitment,
    build_aggregate_statement,
    commit_contribution,
    spot_check_chunk,
    spot_check_indices,
    verify_aggregate_statement,
    verify_commitment,
)

__all__ = [
    "DEFAULT_PRESET",
    "DEFAULT_RELATIVE_ERROR",
    "HE_STANDARD_MAX_LOG_Q_128",
    "PRESETS",
    "AggregateRejected",
    "AggregateStatement",
    "CiphertextManifest",
    "CkksPreset",
    "ContributionCommitment",
    "EncryptedSum",
    "EncryptedVector",
    "PublicContext",
    "SecretContext",
    "SignedCommitment",
    "build_aggregate_statement",
    "check_capacity",
    "check_manifest",
    "check_security",
    "commit_contribution",
    "decrypt_update",
    "encrypt_update",
    "generate_secret_context",
    "get_preset",
    "load_chunk",
    "load_public_context",
    "max_terms",
    "open_sealed_context",
    "preset_for_plan",
    "public_context_bytes",
    "seal_secret_context_for",
    "spot_check_chunk",
    "spot_check_indices",
    "sum_encrypted",
    "verify_aggregate_statement",
    "verify_commitment",
]
