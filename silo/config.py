"""The silo agent's configuration file: who it is, where the aggregator is, what it allows.

Loaded once at the edge (`load_silo_config`) and passed inward as a typed object. Relative
paths are resolved against the working directory of the process that loads the file, so
deployments should write absolute paths.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, field_validator

from protos.operator_formats.config_files import load_model_file
from protos.strict_model import StrictModel as _Strict
from selector.format_names import BadRows, PairFormat
from silo.policy import PrivacyBudget, SiloPolicy

_ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class SiloPki(_Strict):
    """The silo's mTLS material, issued by `fedbiscuit pki issue SILO_ID`."""

    ca_cert: FilePath = Field(description="Federation CA certificate (PEM).")
    cert: FilePath = Field(description="This silo's client certificate (PEM).")
    key: FilePath = Field(description="This silo's private key (PEM, keep it 0600); never sent.")


class SiloData(_Strict):
    """Where the silo's private preference data lives; it never leaves the silo."""

    train_path: FilePath = Field(
        description="The preference pairs, in `format` (jsonl: one {prompt, chosen, rejected} "
        "object a line)."
    )
    format: PairFormat = Field(
        "jsonl",
        description="How train_path is written: jsonl, hh-rlhf, shp or summarize-from-feedback "
        "(selector.formats).",
    )
    bad_rows: BadRows = Field(
        "skip",
        description="skip: leave out unusable rows and log how many, which lines and why; fail: "
        "refuse the file at its first unusable row. Either way a file with more than a quarter "
        "of its rows unusable is refused.",
    )


class SiloConfig(_Strict):
    """One silo agent in one federation."""

    silo_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=_ID_PATTERN,
        description="Must equal the id in this silo's certificate (the aggregator trusts that).",
    )
    federation_id: str = Field(
        min_length=1, max_length=64, pattern=_ID_PATTERN, description="Federation to join."
    )
    aggregator_address: str = Field(
        pattern=r"^[^\s:]+:\d{1,5}$", description="host:port of the aggregator's gRPC endpoint."
    )
    aggregator_server_name: str | None = Field(
        None,
        min_length=1,
        description="TLS name to verify the aggregator's certificate against, when it differs "
        "from the host in aggregator_address (e.g. dialling an IP or a tunnel).",
    )
    aggregator_wait_s: float | None = Field(
        None,
        gt=0,
        description="How long (seconds of backoff) to keep retrying an aggregator that cannot "
        "be reached before giving up; unset: wait forever, as a service should (a silo may "
        "start before its aggregator, and the aggregator may restart). Set it for scripts.",
    )
    pki: SiloPki
    data: SiloData
    state_dir: Path = Field(
        description="Directory for the privacy ledger and accountant state (created if missing)."
    )
    budget: PrivacyBudget
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train; 'auto' picks CUDA when torch sees a GPU."
    )
    seed: int | None = Field(
        None,
        ge=0,
        description="Seed for local sampling and noise, for tests and demos only: it makes DP "
        "noise predictable, so it needs policy.allow_insecure_rng and the plan's "
        "dp.allow_insecure_rng, and the ledger records it. Leave unset in production.",
    )
    policy: SiloPolicy = SiloPolicy()
    local_backbones: dict[str, Path] = Field(
        default_factory=dict,
        description="Where this silo keeps the 'local' backbones it may be asked to load: the "
        "folder's digest (the sha256 the plan pins; lowercase hex) → its absolute path here. "
        "The operator publishes the digest, each institution puts the folder where its own "
        "layout says; the digest is still checked on load. A plan whose digest is not listed "
        "is loaded from the plan's own path (all parties on one filesystem, as in the demo).",
    )

    @field_validator("local_backbones")
    @classmethod
    def _digests_to_absolute_folders(cls, value: dict[str, Path]) -> dict[str, Path]:
        for digest, folder in value.items():
            if not _SHA256.fullmatch(digest):
                raise ValueError(
                    f"key {digest!r} is not a backbone digest (64 lowercase hex characters, "
                    "the plan's selector.backbone.sha256)"
                )
            if not folder.is_absolute():
                raise ValueError(f"{digest} maps to {str(folder)!r}: the path must be absolute")
        return value

    def resolved_device(self) -> str:
        """'cpu' or 'cuda', resolving 'auto' (imports torch, so only call it to train)."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def load_silo_config(path: str | Path) -> SiloConfig:
    """Read a silo YAML file; any fault raises InvalidInput naming file:line: field."""
    return load_model_file(path, SiloConfig)
