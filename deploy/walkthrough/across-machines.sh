#!/usr/bin/env bash
# Running a federation across machines: every command, from `pki init` to `audit`.
# Run as is, it is a dry run on one machine (tiny backbone, benchmark data, loopback), each
# host a folder under $WORK; on real hosts run each block on the host it names and copy the
# files it lists over a channel you trust. tests/e2e/test_walkthrough.py runs this script.
set -euo pipefail
WORK=${WORK:-$PWD/federation}      # one folder per host: operator, aggregator, hospital-*
FEDERATION=${FEDERATION:-hospitals}
AGGREGATOR_HOST=${AGGREGATOR_HOST:-localhost}   # the name silos dial; on its certificate
PORT=${PORT:-50051}
SILOS=(hospital-a hospital-b hospital-c)        # masking sums over at least 3 silos

# --- On the operator's host (keeps the CA key; offline if you can) ---
fedbiscuit pki init --federation "$FEDERATION" --dir "$WORK/operator/pki"
fedbiscuit pki issue-aggregator --dns "$AGGREGATOR_HOST" --ip 127.0.0.1 --dir "$WORK/operator/pki"
for silo in "${SILOS[@]}"; do
  fedbiscuit pki issue "$silo" --dir "$WORK/operator/pki"
done
# Copy to the aggregator host: ca.pem, aggregator.pem, aggregator.key, revoked.json.
mkdir -p "$WORK/aggregator/pki"
cp "$WORK/operator/pki/"{ca.pem,aggregator.pem,aggregator.key,revoked.json} "$WORK/aggregator/pki/"
# Copy to each silo's host: ca.pem, silos/<silo>.pem and silos/<silo>.key (nothing else).
for silo in "${SILOS[@]}"; do
  mkdir -p "$WORK/$silo/pki/silos"
  cp "$WORK/operator/pki/ca.pem" "$WORK/$silo/pki/"
  cp "$WORK/operator/pki/silos/$silo."{pem,key} "$WORK/$silo/pki/silos/"
done

# --- On the aggregator's host ---
# plan.yaml and aggregator.yaml, commented; drop --tiny for the MiniLM backbone.
fedbiscuit init aggregator --federation "$FEDERATION" --dir "$WORK/aggregator" \
  --listen "127.0.0.1:$PORT" --silos "${#SILOS[@]}" --rounds 2 --tiny
fedbiscuit aggregator check-config "$WORK/aggregator/aggregator.yaml"
# Publish plan.yaml to the silos: each checks it against its own policy.
for silo in "${SILOS[@]}"; do cp "$WORK/aggregator/plan.yaml" "$WORK/$silo/"; done

# --- On each silo's host ---
# The institution's own pairs go in train.jsonl; the dry run writes benchmark pairs.
python deploy/compose/benchmark_data.py "$WORK/data" "${SILOS[@]}"
for silo in "${SILOS[@]}"; do
  cp "$WORK/data/$silo/train.jsonl" "$WORK/$silo/"
  fedbiscuit init silo "$silo" --federation "$FEDERATION" --dir "$WORK/$silo" \
    --aggregator "$AGGREGATOR_HOST:$PORT"
  fedbiscuit silo check-config "$WORK/$silo/silo.yaml" --plan "$WORK/$silo/plan.yaml"
  # A silo may start before the aggregator: it waits for it (systemd: deploy/systemd).
  fedbiscuit silo run --config "$WORK/$silo/silo.yaml" > "$WORK/$silo/silo.log" 2>&1 &
done

# --- On the aggregator's host: run the federation to the end ---
fedbiscuit aggregator run --config "$WORK/aggregator/aggregator.yaml" \
  > "$WORK/aggregator/aggregator.log" 2>&1
wait  # the silos exit 0 once they hear the federation is done
fedbiscuit aggregator status --state-dir "$WORK/aggregator/state"

# --- On each silo's host: what it spent ---
for silo in "${SILOS[@]}"; do
  fedbiscuit silo status --config "$WORK/$silo/silo.yaml"
done

# --- Anyone holding ca.pem: verify every signed spend, on both sides ---
fedbiscuit audit --ca "$WORK/operator/pki/ca.pem" --ledger "$WORK/aggregator/state" \
  $(for silo in "${SILOS[@]}"; do echo --ledger "$WORK/$silo/state/ledger.jsonl"; done)
