"""The aggregator operator's config: where to listen, which PKI files, where state lives.

Read once at the edge (`load_config`) from a YAML file plus ``FEDBISCUIT_AGGREGATOR__*``
environment variables (nested fields with ``__``, e.g. ``FEDBISCUIT_AGGREGATOR__PKI__CA_CERT``),
the environment winning, and passed inward as a typed object. Every fault names where the bad
value came from: ``file:line: field`` or the environment variable. The plan is a separate file
so it can be reviewed, hashed and sent to silos as is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from protos.config_files import load_model_file, read_mapping_file, where_in_file
from protos.errors import InvalidInput
from protos.plan import Plan

ENV_PREFIX = "FEDBISCUIT_AGGREGATOR__"
ENV_DELIMITER = "__"
_ADDRESS = r"^\S+:\d{1,5}$"


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


class AggregatorConfig(BaseSettings):
    """Constructing it directly reads only its arguments (tests stay hermetic); `load_config`
    adds the environment on top of the file."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        case_sensitive=False,
    )

    listen_address: str = Field(
        "127.0.0.1:50051",
        pattern=_ADDRESS,
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
    shutdown_grace_s: float = Field(
        15.0,
        ge=0,
        le=300,
        description="On SIGTERM, how long calls in flight may take to finish before they are "
        "cancelled (keep it above max_long_poll_s so long-polls end cleanly).",
    )
    metrics_address: str | None = Field(
        None,
        pattern=_ADDRESS,
        description="host:port of the Prometheus /metrics HTTP endpoint; off when unset. It "
        "shows per-silo epsilon and counts, never updates: bind it to a private network.",
    )
    health_address: str | None = Field(
        None,
        pattern=_ADDRESS,
        description="host:port of a plaintext gRPC port serving only grpc.health.v1 (for "
        "probes that cannot present a client certificate); off when unset. The health service "
        "is always served on listen_address too, to callers with a federation certificate.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one object per line with federation/round/silo fields."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only explicit arguments: `load_config` merges the environment itself so it can say
        which variable a bad value came from."""
        return (init_settings,)

    @model_validator(mode="after")
    def _ports_distinct(self) -> AggregatorConfig:
        ports = {
            name: address.rsplit(":", 1)[1]
            for name, address in (
                ("listen_address", self.listen_address),
                ("metrics_address", self.metrics_address),
                ("health_address", self.health_address),
            )
            if address is not None
        }
        fixed = [port for port in ports.values() if int(port) != 0]
        if len(fixed) != len(set(fixed)):
            raise ValueError(f"listen, metrics and health ports must differ (got {ports})")
        return self

    def load_plan(self) -> Plan:
        return load_model_file(self.plan_path, Plan)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> AggregatorConfig:
    """Read the config file, overlay ``FEDBISCUIT_AGGREGATOR__*`` variables of `environ`
    (default: the process environment) and validate; any fault raises InvalidInput naming
    ``file:line: field`` or the variable. Relative paths are taken against the working
    directory (as for silo configs): deploy absolute ones."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    data, root = read_mapping_file(path)
    overrides = _environment_overrides(environ)
    try:
        return AggregatorConfig.model_validate(_merged(data, overrides))
    except ValidationError as exc:
        problems = []
        for problem in exc.errors():
            loc = tuple(problem["loc"])
            field = ".".join(str(part) for part in loc) or "(top level)"
            if _provided(overrides, loc):
                where = (
                    "environment "
                    + ENV_PREFIX
                    + ENV_DELIMITER.join(str(part).upper() for part in loc)
                )
            else:
                where = where_in_file(path, root, loc)
            problems.append(f"{where}: {field}: {problem['msg']}")
        raise InvalidInput("\n".join(problems)) from exc


def _environment_overrides(environ: Mapping[str, str]) -> dict:
    """The nested values set by ``FEDBISCUIT_AGGREGATOR__*`` variables; a variable naming no
    field is an error (fail closed: a typo must not silently leave the file's value)."""
    known = _field_paths(AggregatorConfig)
    for name in environ:
        if name.upper().startswith(ENV_PREFIX):
            parts = tuple(name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER))
            if parts not in known:
                raise InvalidInput(
                    f"environment {name}: no such aggregator setting; known: "
                    + ", ".join(sorted(ENV_PREFIX + ENV_DELIMITER.join(p).upper() for p in known))
                )
    return _EnvironmentSource(AggregatorConfig, environ)()


class _EnvironmentSource(EnvSettingsSource):
    """pydantic-settings' own env parsing (prefix, nesting, JSON for complex values) over a
    given mapping instead of os.environ, so the CLI and tests pass the environment in."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, False, False, None)


def _field_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every settable leaf field as a path, nested models expanded (`pki`, `ca_cert`)."""
    paths: set[tuple[str, ...]] = set()
    for name, info in model.model_fields.items():
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            paths |= _field_paths(nested, (*prefix, name))
        else:
            paths.add((*prefix, name))
    return paths


def _merged(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _provided(overrides: dict, loc: tuple[int | str, ...]) -> bool:
    node: object = overrides
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
