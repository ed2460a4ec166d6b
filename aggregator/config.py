"""The aggregator operator's config file: where to listen, which PKI files, where state lives.

Loaded once at the edge (`load_config`) and passed inward as a typed object. The plan is a
separate file so it can be reviewed, hashed and sent to silos as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from protos.config_files import load_model_file
from protos.plan import Plan


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AggregatorPki(_Strict):
    """Files made by `fedbiscuit pki init` and `issue-aggregator`."""

    ca_cert: Path = Field(description="Federation CA certificate (PEM); silos must chain to it.")
    server_cert: Path = Field(description="The aggregator's serverAuth certificate (PEM).")
    server_key: Path = Field(description="The aggregator's private key (PEM, mode 0600).")
    revocation_list: Path = Field(
        description="revoked.json of the federation; re-read when it changes."
    )


class AggregatorConfig(_Strict):
    listen_address: str = Field(
        "127.0.0.1:50051",
        pattern=r"^\S+:\d{1,5}$",
        description="host:port to serve mTLS gRPC on; port 0 picks a free port.",
    )
    pki: AggregatorPki
    state_dir: Path = Field(description="SQLite state and blobs; resumed from on restart.")
    plan_path: Path = Field(description="The federation plan (YAML or JSON, protos.plan.Plan).")
    export_dir: Path | None = Field(
        None, description="Where the final selector is saved when the federation is DONE."
    )
    allow_plan_change: bool = Field(
        False,
        description="Resume a state_dir made under a different plan (same federation_id and "
        "selector only). Silos on the old plan must re-join.",
    )
    max_long_poll_s: float = Field(
        10.0, gt=0, le=300, description="Longest a PullTask call is held open waiting for a task."
    )
    finish_linger_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="After the federation finishes, keep serving until every joined silo has "
        "been told so, for at most this long.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def load_plan(self) -> Plan:
        return load_model_file(self.plan_path, Plan)


def load_config(path: str | Path) -> AggregatorConfig:
    """Read the config; any fault raises InvalidInput naming file:line: field. Relative paths
    are taken against the working directory (as for silo configs): deploy absolute ones."""
    return load_model_file(path, AggregatorConfig)
