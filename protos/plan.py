"""The federation plan: what the aggregator's operator decides and every silo checks.

The plan is part of the wire contract: the aggregator sends it to silos as canonical JSON,
and every task carries its SHA-256 so a silo never trains under a plan it did not see and
accept. Silos validate it against their own policy (silo/policy.py) before any training.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal, NamedTuple

from pydantic import Field, model_validator

# The model's part of the plan (protos/selector_spec.py), re-exported: importers keep using
# `from protos.plan import SelectorSpec`.
from protos.selector_spec import CAUSAL_LM_LORA_TARGETS as CAUSAL_LM_LORA_TARGETS
from protos.selector_spec import SELECTOR_BACKBONES as SELECTOR_BACKBONES
from protos.selector_spec import BackboneSpec as BackboneSpec
from protos.selector_spec import LoraSpec as LoraSpec
from protos.selector_spec import SelectorSpec as SelectorSpec
from protos.strict_model import StrictModel

PLAN_VERSION = 1


class DpSpec(StrictModel):
    """DP-SGD parameters common to all silos; the noise multiplier may be derived per silo."""

    clip_norm: float = Field(1.0, gt=0, description="Per-example gradient L2 clipping bound C.")
    expected_batch_size: int = Field(
        16, ge=1, description="Expected Poisson batch size; sample rate = this / local examples."
    )
    sample_rate: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Poisson sampling rate q every silo trains and accounts with. Public, so "
        "the ledger's sample rate says nothing about a silo's size (each silo's expected batch "
        "is q times its own number of pairs). Null: q = expected_batch_size / N, which reveals "
        "N in every ledger entry; a silo then takes part only if its policy sets "
        "allow_revealing_dataset_size.",
    )
    noise_multiplier: float | None = Field(
        None,
        gt=0,
        description="Fixed noise multiplier sigma. Null: each silo derives the smallest sigma "
        "that fits its own budget over `planned_participations` rounds.",
    )
    planned_participations: int | None = Field(
        None,
        ge=1,
        description="Rounds a silo budgets for when deriving sigma (null: all `rounds`). More "
        "than `rounds` leaves headroom for re-run rounds: a masked round interrupted after its "
        "updates left the silos (an aggregator restart, an abort) is re-run, and costs again.",
    )
    allow_insecure_rng: bool = Field(
        False,
        description="Allow silos whose DP sampling and noise are seeded (config.seed: tests and "
        "demos), hence predictable; each silo's policy must allow it too, and every ledger "
        "entry records secure_rng and the seed's use. Production plans leave this false.",
    )


class TrainingSpec(StrictModel):
    local_steps: int = Field(5, ge=1, le=10_000, description="DP-SGD steps per round per silo.")
    learning_rate: float = Field(1e-3, gt=0, le=10.0)
    optimizer: Literal["adam", "sgd"] = "adam"


class LossReportSpec(StrictModel):
    """The DP loss report a silo sends at each grouping (DESIGN.md §3, §7).

    Per-example losses are clipped to [0, clip], averaged over exactly `sample_size` examples
    (so one example moves a mean by at most clip / sample_size) and each of the K means gets
    Gaussian noise of std noise_multiplier · clip / sample_size.
    """

    clip: float = Field(4.0, gt=0, description="Per-example losses are clipped to [0, clip].")
    sample_size: int = Field(
        128, ge=1, le=1_000_000, description="Examples m in the fixed local evaluation sample."
    )
    noise_multiplier: float = Field(
        8.0, gt=0, description="Noise std in units of the per-adapter sensitivity clip / m."
    )


class FedBiscuitSpec(StrictModel):
    """FedBiscuit's schedule: sequential warm-up, then grouping every `regroup_every` rounds."""

    clusters: int = Field(3, ge=2, le=64, description="K: adapters, and clusters of silos.")
    warmup_rounds_per_adapter: int = Field(
        1, ge=1, description="w: rounds [k·w, (k+1)·w) train adapter k on the sampled silos."
    )
    regroup_every: int = Field(
        2, ge=1, description="r: after warm-up, a grouping precedes every r-th round."
    )
    assignment: Literal["greedy", "optimal"] = Field(
        "greedy",
        description="'greedy': the paper's procedure; 'optimal': min-cost balanced assignment.",
    )
    loss_report: LossReportSpec = LossReportSpec()
    min_cluster_silos: int = Field(
        1,
        ge=1,
        description="Fewest silos a cluster may have at grouping, and fewest uploads of a "
        "cluster that update its adapter in a round (otherwise it keeps its previous global).",
    )
    membership: Literal["visible", "hidden"] = Field(
        "visible",
        description="'visible': the aggregator computes the clusters from the loss reports. "
        "'hidden': silos seal their loss reports to each other, compute and confirm the same "
        "clusters, and upload K slots under one secure sum, so the aggregator learns cluster "
        "sizes and sums, never who is where (privacy/membership; needs protection 'masking' "
        "and silos_per_round >= clusters x min_cluster_silos).",
    )

    @property
    def warmup_rounds(self) -> int:
        return self.clusters * self.warmup_rounds_per_adapter


class SecAggLimits(NamedTuple):
    """How many silos one secure-aggregation round of a preset may hold."""

    min_silos: int  # fewer and the sum would reveal too much about each one (>= 3)
    max_silos: int  # more and the encoded sum could overflow the ring


SECAGG_LIMITS: dict[str, SecAggLimits] = {
    "small": SecAggLimits(3, 16),
    "medium": SecAggLimits(3, 64),
    "medium_wide": SecAggLimits(3, 64),
}
"""The wire-visible limits of each secure-aggregation preset; `privacy.secagg.presets` builds
its parameter sets from these, so the plan can be checked where it is loaded."""


class SecAggSpec(StrictModel):
    """Secure aggregation settings (DESIGN.md §5): what the plan hash commits every silo to.

    `preset` names a validated parameter set of `privacy.secagg.presets` (ring, clipping and
    scale, neighbour graph, threshold, fewest silos a round may aggregate); checking that
    the rest of the plan fits it (min_silos, silos_per_round, cluster sizes) needs those
    parameters, so `privacy.secagg.plan_params` does it where the plan is loaded.
    """

    preset: Literal["small", "medium", "medium_wide"] = Field(
        "small",
        description="'small': up to 16 silos, complete graph; 'medium': up to 64 silos, 8 "
        "neighbours each (SecAgg+); 'medium_wide': 'medium' with 64-bit words.",
    )
    phase_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Seconds each protocol phase other than training (keys, shares, "
        "signatures, unmasking) waits for silos before it closes without the missing ones.",
    )


class HeSpec(StrictModel):
    """Homomorphic mode settings (DESIGN.md §6): what the plan hash commits every silo to.

    `preset` names a CKKS parameter set of `privacy.he` (checked for 128-bit security and
    precision where the plan is loaded: protos cannot import privacy). The key custodian is
    the silo that generates the federation's secret key and seals it to the other silos.
    """

    preset: str = Field(
        "ckks-add-8192",
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="CKKS preset name (privacy.he.PRESETS): the default sends 32 bytes per "
        "parameter; 'ckks-pack3-8192' packs three values per slot (10.7 bytes, values on a "
        "2^-12 grid, sums within +-1; '-wide': 2^-10 grid within +-4).",
    )
    key_custodian: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Silo id that generates the CKKS keys and hands them to the other silos.",
    )
    key_epoch: int = Field(
        0, ge=0, description="Key generation; a new epoch means new keys (key rotation)."
    )
    min_contributors: int = Field(
        3,
        ge=2,
        description="Fewest signed contributions an aggregate may sum; silos refuse to decrypt "
        "anything smaller (a one-silo 'aggregate' would reveal that silo's update).",
    )
    spot_check_chunks: int = Field(
        1,
        ge=0,
        le=16,
        description="Ciphertext chunks each silo re-adds from the contributions before it "
        "decrypts an aggregate (catches an aggregate that is not the stated sum; the checking "
        "silo sees those chunks of each contribution, see SECURITY.md). 0: statements only.",
    )


PROTECTIONS = ("masking", "he", "insecure_plaintext")


class Plan(StrictModel):
    """One federation, as its operator configured it."""

    version: Literal[1] = PLAN_VERSION
    federation_id: str = Field(
        min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$", description="Federation id."
    )
    algorithm: Literal["fedbis", "fedbiscuit"] = Field(
        "fedbis",
        description="'fedbis': FedAvg of one selector; 'fedbiscuit': K selectors, one per "
        "cluster of silos (needs the `fedbiscuit` section).",
    )
    rounds: int = Field(3, ge=1, le=100_000)
    silos_per_round: int = Field(4, ge=1, description="Silos sampled each round.")
    min_silos: int = Field(
        3, ge=1, description="Fewest uploads that complete a round; fewer by the deadline: re-run."
    )
    round_deadline_s: float = Field(600.0, gt=0, description="Seconds a round waits for uploads.")
    weighting: Literal["uniform", "num_examples"] = Field(
        "uniform",
        description="FedAvg weights. 'num_examples' makes silos reveal their example counts.",
    )
    protection: Literal["masking", "he", "insecure_plaintext"] = Field(
        "masking",
        description="How updates reach the aggregator. 'masking': SecAgg+ secure aggregation, "
        "the aggregator sees only sums (settings in `secagg`); 'he': CKKS-encrypted updates "
        "and globals, the aggregator sees no plaintext model at all (settings in `he`); "
        "'insecure_plaintext' shows each silo's delta to the aggregator: development only.",
    )
    secagg: SecAggSpec | None = Field(
        None, description="Secure aggregation settings; filled in with defaults for masking."
    )
    he: HeSpec | None = Field(
        None, description="Homomorphic mode settings; required with, and only with, he."
    )
    delta: float = Field(1e-5, gt=0, lt=1, description="The delta at which epsilon is reported.")
    seed: int = Field(0, ge=0, description="Seed for silo sampling and initial adapters.")
    max_update_mib: float = Field(64.0, gt=0, description="Largest update accepted, MiB.")
    selector: SelectorSpec = SelectorSpec()
    dp: DpSpec = DpSpec()
    training: TrainingSpec = TrainingSpec()
    fedbiscuit: FedBiscuitSpec | None = Field(
        None, description="FedBiscuit's schedule; required with, and only with, fedbiscuit."
    )

    @model_validator(mode="before")
    @classmethod
    def _secagg_defaults(cls, data: object) -> object:
        # A masking plan always carries its secagg section, so its hash commits to it.
        masking = isinstance(data, dict) and data.get("protection", "masking") == "masking"
        if masking and data.get("secagg") is None:
            return {**data, "secagg": SecAggSpec()}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        if self.protection != "masking" and self.secagg is not None:
            raise ValueError(f"a `secagg` section needs protection: masking, not {self.protection}")
        if self.protection in ("masking", "he") and self.weighting != "uniform":
            raise ValueError(
                f"protection {self.protection!r} hides each silo's example count: weighting "
                "must be 'uniform'"
            )
        if (self.protection == "he") != (self.he is not None):
            raise ValueError("protection 'he' needs an `he` section, and an `he` section needs it")
        if self.he is not None:
            self._fits_he(self.he)
        if self.secagg is not None:
            self._fits_secagg(SECAGG_LIMITS[self.secagg.preset])
        if self.min_silos > self.silos_per_round:
            raise ValueError(
                f"min_silos ({self.min_silos}) exceeds silos_per_round ({self.silos_per_round})"
            )
        if self.algorithm == "fedbis" and self.fedbiscuit is not None:
            raise ValueError("a `fedbiscuit` section needs algorithm: fedbiscuit")
        if self.algorithm == "fedbiscuit":
            fb = self.fedbiscuit
            if fb is None:
                raise ValueError("algorithm fedbiscuit needs a `fedbiscuit` section")
            if fb.warmup_rounds >= self.rounds:
                raise ValueError(
                    f"fedbiscuit warm-up takes clusters × warmup_rounds_per_adapter = "
                    f"{fb.warmup_rounds} rounds, leaving none of the plan's {self.rounds} rounds "
                    "for grouping and per-cluster training"
                )
            if self.weighting != "uniform":
                raise ValueError(
                    "fedbiscuit aggregates on model (1/N_cluster): weighting must be 'uniform'"
                )
            if fb.membership == "hidden":
                self._fits_hidden_membership(fb)
        return self

    def _fits_secagg(self, limits: SecAggLimits) -> None:
        preset = f"secagg preset {self.secagg.preset!r}"
        if self.min_silos < limits.min_silos:
            raise ValueError(
                f"min_silos is {self.min_silos}, but masking needs at least {limits.min_silos} "
                "silos in every sum (with fewer, each silo could learn the others' updates); "
                f"raise min_silos to {limits.min_silos}"
            )
        if self.silos_per_round > limits.max_silos:
            raise ValueError(
                f"silos_per_round is {self.silos_per_round}, more than the {limits.max_silos} "
                f"silos {preset} can sum without overflow; choose a larger preset"
            )
        fb = self.fedbiscuit
        if fb is not None and fb.min_cluster_silos < limits.min_silos:
            raise ValueError(
                f"fedbiscuit.min_cluster_silos is {fb.min_cluster_silos}, but each cluster's "
                f"adapter is summed under masking over its own silos: raise it to at least "
                f"{limits.min_silos}"
            )

    def _fits_hidden_membership(self, fb: FedBiscuitSpec) -> None:
        if self.protection == "he":
            raise ValueError(
                "fedbiscuit.membership 'hidden' with protection 'he' is not available in this "
                "version (K encrypted slots per upload are not wired); use protection 'masking'"
            )
        if self.protection != "masking":
            raise ValueError(
                f"fedbiscuit.membership 'hidden' needs protection 'masking' (K-slot uploads under "
                f"one secure sum), not {self.protection!r}"
            )
        if self.silos_per_round < fb.clusters * fb.min_cluster_silos:
            raise ValueError(
                f"fedbiscuit.membership 'hidden': silos_per_round ({self.silos_per_round}) must "
                f"be at least clusters x min_cluster_silos ({fb.clusters * fb.min_cluster_silos}), "
                "or every round's secure sum would leave some cluster below its minimum"
            )

    def _fits_he(self, he: HeSpec) -> None:
        if self.min_silos < he.min_contributors:
            raise ValueError(
                f"min_silos is {self.min_silos}, but he.min_contributors is "
                f"{he.min_contributors}: silos would refuse to decrypt every aggregate; raise "
                f"min_silos to {he.min_contributors}"
            )
        fb = self.fedbiscuit
        if fb is not None and fb.min_cluster_silos < he.min_contributors:
            raise ValueError(
                f"fedbiscuit.min_cluster_silos is {fb.min_cluster_silos}, but each cluster's "
                f"adapter is an encrypted sum over its own silos: raise it to at least "
                f"he.min_contributors ({he.min_contributors})"
            )

    @property
    def adapters(self) -> int:
        """How many adapters (and global vectors) the federation trains: K, or 1 for FedBis."""
        return self.fedbiscuit.clusters if self.fedbiscuit is not None else 1

    def grouping_rounds(self) -> tuple[int, ...]:
        """Rounds that a grouping precedes: K·w, K·w + r, … below `rounds` (none for FedBis)."""
        fb = self.fedbiscuit
        if fb is None:
            return ()
        return tuple(range(fb.warmup_rounds, self.rounds, fb.regroup_every))

    def warmup_adapter(self, round_: int) -> int | None:
        """The adapter every sampled silo trains in warm-up round `round_`, or None after
        warm-up (and always 0 for FedBis)."""
        fb = self.fedbiscuit
        if fb is None:
            return 0
        if round_ < fb.warmup_rounds:
            return round_ // fb.warmup_rounds_per_adapter
        return None

    @property
    def participations_budgeted(self) -> int:
        """Rounds each silo must be able to afford when it derives its noise multiplier."""
        return self.dp.planned_participations or self.rounds

    def canonical_json(self) -> bytes:
        """The bytes that are hashed and sent to silos: sorted keys, no whitespace."""
        data = self.model_dump(mode="json")
        if data["fedbiscuit"] is None:
            del data["fedbiscuit"]  # FedBis plans hash exactly as before FedBiscuit existed
        if data["secagg"] is None:
            del data["secagg"]  # so do plaintext plans from before secure aggregation
        if data["he"] is None:
            del data["he"]  # and every plan from before homomorphic mode
        if data.get("fedbiscuit") and data["fedbiscuit"]["membership"] == "visible":
            del data["fedbiscuit"]["membership"]  # FedBiscuit plans from before hidden mode
        if data["selector"]["kind"] == "pair_encoder":
            del data["selector"]["kind"]  # so do pair-encoder plans from before causal_lm
        if data["dp"]["sample_rate"] is None:
            del data["dp"]["sample_rate"]  # and plans from before a fixed sample rate
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json()).hexdigest()

    @classmethod
    def from_canonical_json(cls, data: bytes) -> Plan:
        return cls.model_validate_json(data)
