"""Selector quality on heterogeneous silos: centralized, local-only, FedBis and FedBiscuit.

The synthetic benchmark has three latent preference groups of unequal size
(`selector.benchmark.generator.THREE_GROUPS`: 6/4/2 of the default 12 silos). Twelve silos, not ten,
because FedBiscuit's clusters are balanced (sizes differ by at most one): with 12 silos
and K = 3 every cluster holds 4, so the two minority groups can each be served by a
cluster of their own kind (4 blunt; 2 gentle with 2 thorough, who agree with them on
most attributes) while the 6 thorough silos fill the rest. With 10 silos (5/3/2, clusters
4/3/3) one gentle-led cluster must take a thorough silo that it then serves badly.

Each method (`fedbiscuit.quality.methods`) runs without DP and with DP (ε per silo, δ from
the plan), from the demo's plan with `rounds` rounds. Columns: population agreement
(majority vote of the method's selectors on every silo's held-out pairs pooled), mean and
worst per-silo agreement (FedBiscuit and local-only: each silo with its own selector) and
the largest ε any silo spent. `benchmarks/quality.py` is the command line.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from fedbiscuit.demo.layout import DemoOptions, demo_plan
from fedbiscuit.quality.methods import METHODS, Outcome
from protos.errors import InvalidInput
from protos.plan import Plan
from selector.benchmark.generator import THREE_GROUPS, SiloData, make_federated_dataset
from selector.model import Selector, build_encoder, build_selector, load_adapter_state
from selector.set_evaluation import SetAgreement, logits_agreement
from selector.vote import selector_logits

__all__ = [
    "QualityOptions",
    "demo_options",
    "Row",
    "format_table",
    "mean_probability_agreement",
    "run_methods",
    "run_quality",
    "target_verdict",
]

EPSILON = 8.0
WORST_SILO_GAIN_POINTS = 10.0


@dataclass(frozen=True)
class QualityOptions:
    """One benchmark run; every default is what the issue's quality table uses."""

    backbone: Literal["tiny", "minilm"] = "minilm"
    silos: int = 12
    clusters: int = 3
    rounds: int = 24
    local_steps: int = 6
    train_pairs: int = 256
    test_pairs: int = 128
    seed: int = 0
    epsilon: float = EPSILON
    methods: tuple[str, ...] = tuple(METHODS)
    dp_modes: tuple[bool, ...] = (False, True)


@dataclass(frozen=True)
class Row:
    method: str
    dp: bool
    agreement: SetAgreement
    epsilon: float
    seconds: float
    outcome: Outcome


def demo_options(options: QualityOptions, train_pairs_per_silo: int | None = None) -> DemoOptions:
    """The demo's knobs for these options (silos of `options.train_pairs` pairs unless
    `train_pairs_per_silo` says otherwise)."""
    return DemoOptions(
        silos=options.silos,
        rounds=options.rounds,
        clusters=options.clusters,
        epsilon=options.epsilon,
        seed=options.seed,
        tiny=options.backbone == "tiny",
        train_pairs_per_silo=train_pairs_per_silo or options.train_pairs,
        local_steps=options.local_steps,
        # In-process, nothing travels: masking would give the same sums (to 2^-26), and its
        # spare participation for re-run rounds would only add noise here.
        protection="insecure_plaintext",
    )


def plans(options: QualityOptions) -> dict[str, Plan]:
    """The demo's FedBis and FedBiscuit plans for these options (same training knobs)."""
    demo = demo_options(options)
    return {
        algorithm: demo_plan(dataclasses.replace(demo, algorithm=algorithm))
        for algorithm in ("fedbis", "fedbiscuit")
    }


def _models(plan: Plan, outcome: Outcome) -> list[Selector]:
    models = []
    for state in outcome.states:
        model = build_selector(plan.selector, seed=plan.seed)
        load_adapter_state(model, state)
        models.append(model)
    return models


def run_quality(options: QualityOptions, log: Callable[[str], None] = print) -> list[Row]:
    """Every method in `options.methods`, without and with DP, scored on the held-out pairs.

    `log` gets one line per finished run (worst silo and its group, FedBiscuit's groupings).
    """
    dataset = make_federated_dataset(
        options.silos, options.train_pairs, options.test_pairs, options.seed, THREE_GROUPS
    )
    return run_methods(plans(options), dataset, options, log)


def run_methods(
    by_algorithm: Mapping[str, Plan],
    dataset: Mapping[str, SiloData],
    options: QualityOptions,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """`options.methods` × `options.dp_modes` on `dataset` with the FedBis and FedBiscuit
    plans `by_algorithm` (the synthetic benchmark's or a real-data benchmark's)."""
    unknown = sorted(set(options.methods) - set(METHODS))
    if unknown:
        raise InvalidInput(f"unknown method {unknown[0]!r}; choose from {list(METHODS)}")
    groups = {silo: data.group for silo, data in dataset.items()}
    test = [pair for silo in sorted(dataset) for pair in dataset[silo].test]
    encoder = build_encoder(by_algorithm["fedbis"].selector)
    rows = []
    for name in options.methods:
        plan = by_algorithm["fedbiscuit" if name == "FedBiscuit" else "fedbis"]
        for dp in options.dp_modes:
            started = time.monotonic()
            torch.manual_seed(options.seed)
            epsilon = options.epsilon if dp else None
            outcome = METHODS[name](plan, encoder, dataset, epsilon, options.seed)
            logits = selector_logits(_models(plan, outcome), encoder, test)
            result = logits_agreement(logits, test, outcome.clusters)
            seconds = time.monotonic() - started
            rows.append(Row(name, dp, result, outcome.epsilon, seconds, outcome))
            label = f"{name} {'DP' if dp else 'no DP'}"
            worst = min(result.per_silo, key=result.per_silo.__getitem__)
            log(f"  {label}: worst silo {worst} ({groups[worst]}), {seconds:.0f} s")
            if logits.shape[0] > 1:
                soft = mean_probability_agreement(logits)
                log(f"    population by mean probability (not the table's vote): {soft:.3f}")
            for index, grouping in enumerate(outcome.groupings):
                log(f"    grouping {index + 1}: {_clusters_by_group(grouping, groups)}")
    return rows


def mean_probability_agreement(logits: torch.Tensor) -> float:
    """Agreement when the K selectors' mean probability decides ([K, B] logits, chosen side
    first; a tie scores 1/2): a diagnostic beside the majority vote the issue specifies."""
    lean = torch.sigmoid(logits.double()).mean(dim=0) - 0.5
    return float(((lean > 0).double() + 0.5 * (lean == 0).double()).mean())


def _clusters_by_group(grouping: dict[str, int], groups: dict[str, str | None]) -> str:
    """'0: thorough×4 | 1: blunt×4 | 2: gentle×2 thorough×2' (who sits in which cluster);
    silos of data without latent groups (real data) are named themselves."""
    parts = []
    for k in sorted(set(grouping.values())):
        members = [groups[silo] or silo for silo, c in grouping.items() if c == k]
        counts = {name: members.count(name) for name in dict.fromkeys(sorted(members))}
        parts.append(f"{k}: " + " ".join(f"{name}×{n}" for name, n in counts.items()))
    return " | ".join(parts)


def format_table(rows: Sequence[Row]) -> str:
    """The quality table, one line per (method, DP) run, then the targets' verdict."""
    header = f"{'method':<12} {'DP':<6} {'population':>10} {'mean silo':>10} {'worst silo':>10}"
    lines = [header + f" {'ε spent':>8} {'time s':>7}", "-" * (len(header) + 17)]
    for row in rows:
        a = row.agreement
        mean = float(np.mean(list(a.per_silo.values())))
        eps = "—" if math.isinf(row.epsilon) else f"{row.epsilon:.2f}"
        dp = f"ε={EPSILON:g}" if row.dp else "none"
        lines.append(
            f"{row.method:<12} {dp:<6} {a.overall:>10.3f} "
            f"{mean:>10.3f} {a.worst_silo:>10.3f} {eps:>8} {row.seconds:>7.0f}"
        )
    verdict = target_verdict(rows)
    if verdict is not None:
        lines += ["", verdict[0]]
    return "\n".join(lines)


def target_verdict(rows: Sequence[Row]) -> tuple[str, bool] | None:
    """The issue's targets with DP, as a sentence and whether both are met (None when the
    rows lack FedBis or FedBiscuit with DP): FedBiscuit's worst silo ≥ FedBis's + 10 points
    and its population agreement ≥ FedBis's."""
    by = {(r.method, r.dp): r.agreement for r in rows}
    if ("FedBis", True) not in by or ("FedBiscuit", True) not in by:
        return None
    bis, cuit = by[("FedBis", True)], by[("FedBiscuit", True)]
    gain = 100 * (cuit.worst_silo - bis.worst_silo)
    worst_met = gain >= WORST_SILO_GAIN_POINTS
    population_met = cuit.overall >= bis.overall
    sentence = (
        f"target (DP): FedBiscuit worst silo ≥ FedBis + {WORST_SILO_GAIN_POINTS:g} points: "
        f"{gain:+.1f} points -> {'met' if worst_met else 'NOT met'}; population ≥ FedBis: "
        f"{cuit.overall:.3f} vs {bis.overall:.3f} -> {'met' if population_met else 'NOT met'}"
    )
    return sentence, worst_met and population_met
