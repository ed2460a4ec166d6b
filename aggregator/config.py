"""The aggregator operator's config: where to listen, which PKI files, where state lives.

One process can host several federations on one port: list them under ``federations`` (each
with its own PKI, plan, state dir and export dir); the top-level ``pki``/``state_dir``/
``plan_path`` form is the same thing for a single federation.

Read once at the edge (`load_config`) from a YAML file plus ``FEDBISCUIT_AGGREGATOR__*``
environment variables (nested fields with ``__``, e.g. ``FEDBISCUIT_AGGREGATOR__PKI__CA_CERT``),
the environment winning, and passed inward as a typed object. Every fault names where the bad
value came from: ``file:line: field`` or the environment variable. The plan is a separate file
so it can be reviewed, hashed and sent to silos as is.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from aggregator.caller_limits import CallerLimits
from protos.errors import InvalidInput
from protos.operator_formats.config_files import load_model_file, read_mapping_file, where_in_file
from protos.operator_formats.field_hints import hint
from protos.plan import Plan
from protos.strict_model import StrictModel as _Strict

ENV_PREFIX = "FEDBISCUIT_AGGREGATOR__"
ENV_DELIMITER = "__"
_ADDRESS = r"^\S+:\d{1,5}$"


class AggregatorPki(_Strict):
    """Files made by `fedbiscuit pki init` and `issue-aggregator`."""

    ca_cert: Path = Field(description="Federation CA certificate (PEM); silos must chain to it.")
    server_cert: Path = Field(description="The aggregator's serverAuth certificate (PEM).")
    server_key: Path = Field(description="The aggregator's private key (PEM, mode 0600).")
    revocation_list: Path = Field(
        description="revoked.json of the federation; re-read when it changes."
    )


class FederationConfig(_Strict):
    """One hosted federation: everything that is per federation and never shared."""

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

    def load_plan(self) -> Plan:
        return load_model_file(self.plan_path, Plan)


_SINGLE_FORM = ("pki", "state_dir", "plan_path", "export_dir", "allow_plan_change")


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
    # The single-federation form (FederationConfig's fields, described there, at the top
    # level) ...
    pki: AggregatorPki | None = None
    state_dir: Path | None = None
    plan_path: Path | None = None
    export_dir: Path | None = None
    allow_plan_change: bool = False
    # ... or several federations on the same port, isolated from each other.
    federations: tuple[FederationConfig, ...] = Field(
        (),
        description="The federations this process hosts, each with its own PKI, plan, state "
        "and export dir; instead of the top-level pki/state_dir/plan_path.",
    )
    max_long_poll_s: float = Field(
        10.0, gt=0, le=300, description="Longest a PullTask call is held open waiting for a task."
    )
    finish_linger_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="After the federation finishes, keep serving until every joined silo has "
        "been told so, for at most this long; under protection 'he', for this long in full, "
        "so silos can decrypt the selectors (`fedbiscuit silo export`).",
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
    limits: CallerLimits = Field(
        default_factory=CallerLimits,
        description="Bounds on calls in flight per silo and in all (hostile-peer defences).",
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

    @model_validator(mode="after")
    def _one_form(self) -> AggregatorConfig:
        if self.federations:
            given = [name for name in _SINGLE_FORM if getattr(self, name) not in (None, False)]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: set per federation under `federations`, not at the "
                    "top level, when `federations` is given"
                )
            _refuse_shared_dirs(self.federations)
        else:
            missing = [n for n in ("pki", "state_dir", "plan_path") if getattr(self, n) is None]
            if missing:
                raise ValueError(
                    f"{', '.join(missing)}: required (or list the hosted federations under "
                    "`federations`)"
                )
        return self

    def hosted(self) -> tuple[FederationConfig, ...]:
        """The federations to serve, whichever form the config used."""
        if self.federations:
            return self.federations
        return (FederationConfig(**{name: getattr(self, name) for name in _SINGLE_FORM}),)


def _refuse_shared_dirs(federations: tuple[FederationConfig, ...]) -> None:
    """Separate state is what keeps federations apart on disk: no dir may serve two."""
    seen: dict[str, str] = {}
    for index, federation in enumerate(federations):
        for name in ("state_dir", "export_dir"):
            folder = getattr(federation, name)
            if folder is None:
                continue
            key = os.path.normpath(os.path.abspath(folder))
            where = f"federations.{index}.{name}"
            if key in seen:
                raise ValueError(f"{where}: {folder} is already {seen[key]}; give each its own")
            seen[key] = where


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
            problems.append(f"{where}: {field}: {problem['msg']}{hint(AggregatorConfig, problem)}")
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
    """Every settable leaf field as a path, nested models expanded (`pki`, `ca_cert`), also
    where optional (`AggregatorPki | None`)."""
    paths: set[tuple[str, ...]] = set()
    for name, info in model.model_fields.items():
        nested = _model_in(info.annotation)
        if nested is not None:
            paths |= _field_paths(nested, (*prefix, name))
        else:
            paths.add((*prefix, name))
    return paths


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The model class of ``Model`` or ``Model | None``, else None."""
    if get_origin(annotation) in (Union, types.UnionType):
        models = [m for m in map(_model_in, get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


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
