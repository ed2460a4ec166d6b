"""Lay out a throw-away federation in a folder: PKI, data per silo, plan and configs.

Everything the demo's processes need is written as the same files an operator would write
by hand (PKI folder, plan YAML, aggregator and silo YAML configs), so a `--workdir` is a
worked example of a deployment, and the processes are started exactly as in production.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aggregator.config import AggregatorConfig
from fedbiscuit.demo.data import partner_dataset
from fedbiscuit.demo.modes import DEMO_MODES, silo_policy
from fedbiscuit.recipe import LORA_RANK, WINDOW_LIMIT, derive_recipe, top_layer_targets
from privacy import pki
from protos.errors import InvalidInput
from protos.operator_formats.config_files import save_model_file
from protos.plan import (
    BackboneSpec,
    DpSpec,
    FedBiscuitSpec,
    HeSpec,
    LoraSpec,
    LossReportSpec,
    Plan,
    SelectorSpec,
    TrainingSpec,
)
from selector.backbone import backbone_tokenizer, encoder_layers
from selector.benchmark.generator import THREE_GROUPS, SiloData, make_federated_dataset
from selector.data import PreferencePair, write_jsonl
from selector.local_backbone import check_model_folder, folder_digest, local_model_kind
from selector.token_budget import length_statistics, suggested_window
from selector.truncation import PairTemplate
from silo.config import SiloConfig

FEDERATION_ID = "demo"
# Under 'he' the aggregator keeps serving this long after DONE so that a silo can export the
# selectors (the demo stops it as soon as its export is written).
HE_EXPORT_WINDOW_S = 600.0
# A loss report's per-pair clip: an untrained selector's pair loss is log 2 ≈ 0.69, and a
# pair scored wrongly by a margin over 0.54 is clipped (it counts as wrong, not how wrong).
LOSS_CLIP = 1.0


def check_silo_count(options: DemoOptions, where: str) -> None:
    """Masking and HE hide each silo only in a sum of at least 3 (per cluster for
    FedBiscuit)."""
    least = DEMO_MODES[options.protection].min_per_sum
    needed = least * (options.clusters if options.algorithm == "fedbiscuit" else 1)
    if options.silos < needed:
        per = " per cluster" if options.algorithm == "fedbiscuit" else ""
        raise InvalidInput(
            f"{where}: {options.silos} silo(s), but {options.protection} needs at least {least} "
            f"silos{per} ({needed} in all) so no sum reveals one silo; add silos, or use "
            "--protection insecure_plaintext (development only)"
        )


@dataclass(frozen=True)
class DemoOptions:
    """The demo's knobs, with the embedded defaults `fedbiscuit demo` runs."""

    silos: int = 4
    rounds: int = 3
    algorithm: str = "fedbis"
    protection: str = "masking"
    clusters: int = 3
    membership: str | None = None
    """FedBiscuit: "hidden" (only the silos know the clusters; the default under masking) or
    "visible" (the aggregator computes them; the only choice under he and plaintext)."""
    regroup_every: int = 2
    epsilon: float = 8.0
    delta: float = 1e-5
    seed: int = 0
    tiny: bool = False
    backbone_path: Path | None = None
    """A local model folder (`demo --backbone PATH`) instead of MiniLM or the tiny one."""
    train_pairs_per_silo: int = 256
    test_pairs_per_silo: int = 128
    max_tokens_per_answer: int = 32
    """The synthetic benchmark's short texts fit in 32; a partner's data gets a window from
    its length statistics (`with_data_recipe`)."""
    local_steps: int = 6
    expected_batch_size: int = 16
    # Plain SGD after DP-SGD's clipping and averaging; tuned on the benchmark (see README).
    learning_rate_minilm: float = 0.5
    learning_rate_tiny: float = 1.0
    lora_targets: tuple[str, ...] | None = None
    """The backbone modules that get LoRA adapters (at the recipe's rank); None: the spec's
    default (every layer's query and value). A partner's data gets the recipe's
    (`with_data_recipe`)."""
    round_deadline_s: float = 300.0
    train_data: Path | None = None
    """A partner's own training pairs (`demo --data`) instead of the benchmark."""
    test_data: Path | None = None
    data_format: str = "jsonl"
    max_silos: int = 16
    align: bool = False
    """After training, DPO-align the benchmark's base policy with the selectors (align.py)."""


@dataclass(frozen=True)
class DemoLayout:
    """Where everything of one demo run lives."""

    workdir: Path
    pki_dir: Path
    aggregator_config: Path
    aggregator_state: Path
    selectors_dir: Path
    """Where the final selectors are written: by the aggregator, or under 'he' by the
    last silo's `fedbiscuit silo export`."""
    silo_configs: dict[str, Path]
    test_sets: dict[str, Path]
    logs_dir: Path
    plan: Plan
    recipe_note: str | None = None
    """What `with_data_recipe` chose for a partner's data, and from which statistics."""


def with_data_recipe(
    options: DemoOptions, train: Sequence[PreferencePair]
) -> tuple[DemoOptions, str]:
    """The training knobs `fedbiscuit.recipe` derives for a partner's data (the smallest
    silo's size, the budget) and a token window from the pairs' length statistics; the
    rounds stay the demo's. Operator-side: the demo holds every silo's file. Also returns
    a line saying what was chosen and from what."""
    recipe = derive_recipe(
        options.train_pairs_per_silo,
        options.epsilon,
        options.delta,
        rounds=options.rounds,
        participations=DEMO_MODES[options.protection].planned_participations(options.rounds),
    )
    selector = _selector(options)
    layers = encoder_layers(selector.backbone) if selector.kind == "pair_encoder" else None
    tokenizer = backbone_tokenizer(selector.backbone)
    special = PairTemplate.of(tokenizer).added if selector.kind == "pair_encoder" else 0
    stats = length_statistics(train, tokenizer)
    window = suggested_window(stats, WINDOW_LIMIT, special)
    chosen = dataclasses.replace(
        options,
        local_steps=recipe.local_steps,
        expected_batch_size=recipe.expected_batch_size,
        learning_rate_minilm=recipe.learning_rate,
        max_tokens_per_answer=window,
        lora_targets=options.lora_targets if layers is None else top_layer_targets(layers),
    )
    note = (
        f"recipe for {options.train_pairs_per_silo} pairs per silo: {recipe.describe()}; "
        f"window {window} tokens per side (data: {stats.describe()})"
    )
    return chosen, note


def free_loopback_port() -> int:
    """A port the kernel just considered free on 127.0.0.1 (the aggregator binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_plan(options: DemoOptions, key_custodian: str = "silo-1") -> Plan:
    """The demo's plan: every silo trains every round, under DP-SGD. FedBiscuit: one warm-up
    round per adapter, then a grouping every `regroup_every` rounds; each loss report averages
    over m = half of the smallest silo's training pairs (so it stays defined when a record is
    removed) with losses clipped to 1, so its noise std is 8 · 1 / m: at 256 pairs what all
    pairs clipped to 2 gave, at the same σ = 8 (the same ε per report), for half the scoring,
    which was a grouping's main cost (issue 17; benchmarks/fedbiscuit_cost.py). The sample
    rate is fixed from the smallest silo's size, which the demo (the operator) chose, so
    ledgers reveal nothing about sizes. Under 'he', `key_custodian` makes the CKKS keys."""
    smallest = options.train_pairs_per_silo
    fedbiscuit = None
    mode = DEMO_MODES[options.protection]
    least = mode.min_per_sum
    if options.algorithm == "fedbiscuit":
        fedbiscuit = FedBiscuitSpec(
            clusters=options.clusters,
            warmup_rounds_per_adapter=1,
            regroup_every=options.regroup_every,
            assignment="optimal",
            loss_report=LossReportSpec(
                clip=LOSS_CLIP, sample_size=max(1, smallest // 2), noise_multiplier=8.0
            ),
            # Each cluster's adapter is a secure sum over its own silos: at least 3 of them.
            min_cluster_silos=least,
            # Under masking only the silos know who is in which cluster (issue 16).
            membership=options.membership
            or ("hidden" if options.protection == "masking" else "visible"),
        )
    return Plan(
        federation_id=FEDERATION_ID,
        algorithm=options.algorithm,
        fedbiscuit=fedbiscuit,
        rounds=options.rounds,
        silos_per_round=options.silos,
        min_silos=max(least, (options.silos + 1) // 2),
        round_deadline_s=options.round_deadline_s,
        protection=options.protection,
        he=HeSpec(key_custodian=key_custodian) if mode.silo_holds_key else None,
        delta=options.delta,
        seed=options.seed,
        selector=_selector(options),
        dp=DpSpec(
            expected_batch_size=options.expected_batch_size,
            sample_rate=min(1.0, options.expected_batch_size / smallest),
            clip_norm=1.0,
            allow_insecure_rng=True,  # the demo's silos are seeded (reproducible figures)
            planned_participations=mode.planned_participations(options.rounds),
        ),
        training=TrainingSpec(
            local_steps=options.local_steps,
            learning_rate=options.learning_rate_tiny
            if options.tiny
            else options.learning_rate_minilm,
            optimizer="sgd",
        ),
    )


def _selector(options: DemoOptions) -> SelectorSpec:
    """MiniLM, the tiny backbone, or a local folder pinned by its digest; a folder holding a
    causal LM gets the causal-LM selector, any other model the pair encoder."""
    if options.backbone_path is None:
        kind = "tiny" if options.tiny else "minilm"
        lora = (
            LoraSpec()
            if options.lora_targets is None
            else LoraSpec(rank=LORA_RANK, target_modules=options.lora_targets)
        )
        return SelectorSpec(
            backbone=BackboneSpec(kind=kind, seed=options.seed),
            lora=lora,
            max_tokens_per_answer=options.max_tokens_per_answer,
        )
    folder = check_model_folder(options.backbone_path)
    return SelectorSpec(
        kind=local_model_kind(folder),
        backbone=BackboneSpec(kind="local", path=str(folder), sha256=folder_digest(folder)),
        max_tokens_per_answer=options.max_tokens_per_answer,
    )


def lay_out(workdir: Path, options: DemoOptions) -> DemoLayout:
    """Create the PKI, data, plan and configs of a demo federation under `workdir`."""
    workdir = workdir.resolve()
    if options.train_data is None:
        check_silo_count(options, "silos")
    dataset = _dataset(options)
    recipe_note = None
    if options.train_data is not None:
        # The files decide the silo count; a loss report averages over the smallest silo.
        options, recipe_note = with_data_recipe(
            dataclasses.replace(
                options,
                silos=len(dataset),
                train_pairs_per_silo=min(len(data.train) for data in dataset.values()),
            ),
            [pair for data in dataset.values() for pair in data.train],
        )
        check_silo_count(options, f"--data {options.train_data}")
        if options.algorithm == "fedbiscuit" and not 2 <= options.clusters <= options.silos:
            raise InvalidInput(
                f"--clusters must be between 2 and the {options.silos} silo(s) of "
                f"{options.train_data}, got {options.clusters}"
            )
    pki_dir = workdir / "pki"
    pki.init_ca(pki_dir, FEDERATION_ID)
    agg_cert, agg_key = pki.issue_aggregator(pki_dir, ["localhost"], ["127.0.0.1"])
    paths = pki.FederationPaths(pki_dir)

    plan = demo_plan(options, key_custodian=min(dataset))
    aggregator_dir = workdir / "aggregator"
    aggregator_dir.mkdir(parents=True)
    plan_path = aggregator_dir / "plan.yaml"
    save_model_file(plan_path, plan)
    address = f"127.0.0.1:{free_loopback_port()}"
    aggregator_config = AggregatorConfig.model_validate(
        {
            "listen_address": address,
            "pki": {
                "ca_cert": str(paths.ca_cert),
                "server_cert": str(agg_cert),
                "server_key": str(agg_key),
                "revocation_list": str(paths.revocation_list),
            },
            "state_dir": str(aggregator_dir / "state"),
            "plan_path": str(plan_path),
            **_export_settings(options.protection, workdir / "selectors"),
        }
    )
    aggregator_config_path = aggregator_dir / "aggregator.yaml"
    save_model_file(aggregator_config_path, aggregator_config)

    silo_configs, test_sets = {}, {}
    for index, (silo_id, data) in enumerate(sorted(dataset.items())):
        silo_dir = workdir / "silos" / silo_id
        silo_dir.mkdir(parents=True)
        cert, key = pki.issue_silo(pki_dir, silo_id)
        train_path = silo_dir / "train.jsonl"
        write_jsonl(train_path, data.train)
        if data.test:
            test_sets[silo_id] = _write_test_set(workdir / "test", silo_id, data.test)
        config = SiloConfig.model_validate(
            {
                "silo_id": silo_id,
                "federation_id": FEDERATION_ID,
                "aggregator_address": address,
                "aggregator_server_name": "localhost",
                "pki": {"ca_cert": str(paths.ca_cert), "cert": str(cert), "key": str(key)},
                "data": {"train_path": str(train_path)},
                "state_dir": str(silo_dir / "state"),
                "budget": {"epsilon": options.epsilon, "delta": options.delta},
                "device": "auto",
                # Seeded for a reproducible demo, which both plan and policy must allow.
                "seed": options.seed * 1000 + index,
                # Each silo consents to exactly the plan's backbone (a local folder included).
                "policy": {
                    **silo_policy(options.protection),
                    "allow_insecure_rng": True,
                    "allowed_backbones": [plan.selector.backbone.kind],
                },
            }
        )
        silo_configs[silo_id] = silo_dir / "silo.yaml"
        save_model_file(silo_configs[silo_id], config)

    logs_dir = workdir / "logs"
    logs_dir.mkdir()
    return DemoLayout(
        workdir=workdir,
        pki_dir=pki_dir,
        aggregator_config=aggregator_config_path,
        aggregator_state=aggregator_dir / "state",
        selectors_dir=workdir / "selectors",
        silo_configs=silo_configs,
        test_sets=test_sets,
        logs_dir=logs_dir,
        plan=plan,
        recipe_note=recipe_note,
    )


def _export_settings(protection: str, selectors_dir: Path) -> dict:
    """The aggregator exports the selectors, except under 'he' where it has no key: it then
    keeps serving the final encrypted globals for a silo to export them."""
    if DEMO_MODES[protection].silo_holds_key:
        return {"finish_linger_s": HE_EXPORT_WINDOW_S}
    return {"export_dir": str(selectors_dir)}


def _dataset(options: DemoOptions) -> dict[str, SiloData]:
    """The partner's files split into silos (`demo --data`), or the synthetic benchmark."""
    if options.train_data is not None:
        if options.test_data is None:
            raise InvalidInput("--data needs --test: held-out pairs to report agreement on")
        return partner_dataset(
            options.train_data,
            options.test_data,
            silos=options.silos,
            seed=options.seed,
            max_silos=options.max_silos,
            format=options.data_format,
        )
    return make_federated_dataset(
        num_silos=options.silos,
        train_pairs=options.train_pairs_per_silo,
        test_pairs=options.test_pairs_per_silo,
        seed=options.seed,
        # FedBiscuit is for silos that disagree: latent preference groups of unequal size.
        groups=THREE_GROUPS if options.algorithm == "fedbiscuit" else None,
    )


def _write_test_set(folder: Path, silo_id: str, pairs: list[PreferencePair]) -> Path:
    """Held-out pairs stay with the demo (the 'evaluator'), never sent to any process."""
    folder.mkdir(exist_ok=True)
    path = folder / f"{silo_id}.jsonl"
    write_jsonl(path, pairs)
    return path
