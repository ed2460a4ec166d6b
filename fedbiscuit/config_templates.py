"""The commented config files `fedbiscuit init` writes: a plan, an aggregator and a silo.

Each is a working starting point (the tests load every one as its model) whose comments say
what each field is for and what to change; every path in them is absolute, since relative
paths are taken from the working directory of whoever starts the program.
"""

from __future__ import annotations

PLAN = """\
# The federation's plan, set by its operator and hashed into every task: each silo checks
# it against its own policy and budget before touching its data. All fields:
# protos/plan.py. Check it with `fedbiscuit aggregator check-config {aggregator_config}`.
federation_id: {federation}
# fedbis: one shared selector; fedbiscuit: K selectors for K groups of silos (add a
# `fedbiscuit:` section with `clusters`, see README).
algorithm: fedbis
rounds: {rounds}
# Silos sampled per round, and the fewest whose uploads close a round.
silos_per_round: {silos}
min_silos: {silos}
# Seconds a round waits for uploads before it is re-run without the silos that stalled.
round_deadline_s: 600
# masking: SecAgg+ secure aggregation, the aggregator sees only sums over >= 3 silos
# (needs at least 3 silos in every round); insecure_plaintext: development only.
protection: {protection}
{secagg}# The delta at which epsilon is reported; no silo's budget.delta may be smaller.
delta: 1.0e-05
selector:
  backbone:
    # minilm: all-MiniLM-L6-v2, shipped in a pip package; tiny: a small random BERT built
    # from this config (a dry run in seconds, learns little); local: a model folder pinned
    # by path and sha256 (README, "Installing a silo").
    kind: {backbone}
{selector_extra}# Training knobs from fedbiscuit/recipe.py's rule for silos of about {pairs} pairs
# (`fedbiscuit init aggregator --pairs-per-silo N`: the smallest silo, an estimate).
dp:
  # Per-example gradient clipping bound, and the expected Poisson batch per DP-SGD step.
  clip_norm: {clip_norm}
  expected_batch_size: {batch}
  # The public sampling rate q: each silo's expected batch is q times its own pairs, and
  # its ledger entries reveal nothing about its size.
  sample_rate: {sample_rate}
  # Unset: each silo derives the smallest noise multiplier its budget allows for all
  # planned rounds; set it to fix one for every silo (checked against their policies).
  noise_multiplier: null
training:
  local_steps: {local_steps}
  learning_rate: {learning_rate}
  optimizer: sgd
"""

SECAGG = """\
secagg:
  preset: small
  phase_timeout_s: 60
"""

MINILM_SELECTOR = """\
  lora:
    # fedbiscuit/recipe.py: adapters on the last layer only (less DP noise, cheaper steps).
    rank: {rank}
    target_modules: [{targets}]
"""

TINY_SELECTOR = """\
  lora:
    rank: 4
    alpha: 8.0
    target_modules: [query, value]
  max_tokens_per_answer: 40
"""

AGGREGATOR = """\
# The aggregator of federation {federation}: aggregator/config.py documents every field;
# FEDBISCUIT_AGGREGATOR__<FIELD> variables override any of them. Before starting:
#   fedbiscuit aggregator check-config {path}
# Start: fedbiscuit aggregator run --config {path}
# mTLS gRPC port the silos dial (they need this host name or address, and the port).
listen_address: {listen_address}
# Plaintext gRPC health port for probes (`fedbiscuit aggregator probe`); null: off.
health_address: null
# Prometheus /metrics (shows silo ids and epsilon: keep it on a private network); null: off.
metrics_address: null
pki:
  # From `fedbiscuit pki init` / `pki issue-aggregator`; ca.key stays offline, not here.
  ca_cert: {ca_cert}
  server_cert: {server_cert}
  server_key: {server_key}
  # Copy the operator's revoked.json here after each `pki revoke` (re-read on change).
  revocation_list: {revocation_list}
# SQLite state and blobs: everything a restart resumes from. Back it up.
state_dir: {directory}/state
plan_path: {directory}/plan.yaml
# Where the final selector is written when the federation is done.
export_dir: {directory}/selector
"""

SILO = """\
# Silo {silo} of federation {federation}: silo/config.py documents every field. Before
# starting: fedbiscuit silo check-config {path} --plan plan.yaml (the operator's plan)
# Start:    fedbiscuit silo run --config {path}
# Spend:    fedbiscuit silo status --config {path}
silo_id: {silo}
federation_id: {federation}
# host:port of the aggregator's gRPC endpoint (the name must be on its certificate, or set
# aggregator_server_name to one that is).
aggregator_address: {aggregator}
# Seconds to keep retrying an unreachable aggregator before giving up; null: forever (a
# service; it may start before the aggregator). Set it for scripts.
aggregator_wait_s: null
pki:
  # ca.pem and this silo's certificate and key, from the operator's `fedbiscuit pki issue
  # {silo}`; keep the key mode 0600 and nowhere else.
  ca_cert: {ca_cert}
  cert: {cert}
  key: {key}
data:
  # The institution's preference pairs; they never leave this host.
  train_path: {data}
  # jsonl ({{"prompt", "chosen", "rejected"}} a line), hh-rlhf, shp or summarize-from-feedback.
  format: {data_format}
  # skip: leave out unusable rows and log which (a file more than a quarter bad is refused
  # anyway); fail: refuse the file at its first unusable row.
  bad_rows: skip
# The privacy ledger and accountant: back it up after every round, never restore an older
# copy over a newer one.
state_dir: {directory}/state
# The most this institution will ever spend on this federation.
budget:
  epsilon: 8.0
  delta: 1.0e-05
# What this silo refuses, whatever the plan says (silo/policy.py).
policy:
  # masking: train only when the aggregator sees sums, never this silo's update.
  required_protection: {required_protection}
  allow_insecure_plaintext: {allow_plaintext}
  min_noise_multiplier: 0.5
  max_rounds: 1000
  allowed_backbones: [minilm, tiny, tiny_causal]
"""
