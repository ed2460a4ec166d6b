"""One-run privacy audit (Steinke, Nasr, Jagielski, NeurIPS 2023) of the silo's DP-SGD: ε
claimed by the accountant vs the ε lower bound measured with white-box gradient canaries
through the silo's own trainer (fedbiscuit.mechanism_audit), for the demo's settings, a few
(σ, q, steps), and planted bugs that each must show a lower bound above the claim.

Run from the repository root: `python benchmarks/privacy_audit.py [--canaries 1000]`.
"""

from __future__ import annotations

import argparse
import time

from fedbiscuit.demo.layout import DemoOptions
from fedbiscuit.mechanism_audit import PLANTED_BUGS, AuditSetting, MechanismAudit, run_audit
from privacy.accounting import derive_noise_multiplier


def _settings() -> list[AuditSetting]:
    demo = DemoOptions()
    q = demo.expected_batch_size / demo.train_pairs_per_silo
    # The demo's σ: derived for ε over its budgeted participations (masking: rounds + 1).
    budgeted = (demo.rounds + 1) * demo.local_steps
    sigma = derive_noise_multiplier(demo.epsilon, demo.delta, q, budgeted)
    released = demo.rounds * demo.local_steps
    settings = [AuditSetting(f"demo (eps {demo.epsilon:g} budget)", sigma, q, released, demo.delta)]
    for epsilon, rate, steps in ((1.0, q, released), (2.0, 0.25, 50), (4.0, 0.1, 100)):
        sigma = derive_noise_multiplier(epsilon, demo.delta, rate, steps)
        settings.append(
            AuditSetting(f"eps {epsilon:g} q {rate:g} T {steps}", sigma, rate, steps, demo.delta)
        )
    return settings


def _row(audit: MechanismAudit) -> str:
    s, r = audit.setting, audit.result
    verdict = "CAUGHT" if r.epsilon_lower_bound > audit.claimed_epsilon else "-"
    return (
        f"{s.name:24s} {audit.mechanism:34s} {s.noise_multiplier:7.3f} {s.sample_rate:6.4f} "
        f"{s.steps:5d} {audit.claimed_epsilon:9.3f} {r.epsilon_lower_bound:9.3f} "
        f"{r.correct:4d}/{r.guesses:<4d} {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--ordinary", type=int, default=1000, help="non-canary pairs")
    args = parser.parse_args()
    print(
        f"one-run audit: {args.canaries} canaries (each in with prob 1/2), {args.ordinary} "
        "ordinary pairs, lower bound at 95% confidence (Bonferroni over 10 guess sizes)"
    )
    print(
        f"{'setting':24s} {'mechanism':34s} {'sigma':>7s} {'q':>6s} {'steps':>5s} "
        f"{'eps claim':>9s} {'eps lower':>9s} {'right':>9s}"
    )
    start = time.perf_counter()
    settings = _settings()
    for setting in settings:
        print(_row(run_audit(setting, canaries=args.canaries, ordinary=args.ordinary)))
    for name, trainer in PLANTED_BUGS.items():
        for setting in settings[:2]:
            audit = run_audit(
                setting,
                canaries=args.canaries,
                ordinary=args.ordinary,
                trainer=trainer,
                mechanism=f"BUG: {name}",
            )
            print(_row(audit))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
