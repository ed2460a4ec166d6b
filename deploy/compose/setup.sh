#!/bin/sh
# The compose file's one-shot CA job: a federation CA, the aggregator's certificate (DNS name
# "aggregator", the compose service), one client certificate per silo, and benchmark data
# for each silo. Idempotent: a second `docker compose up` keeps the existing CA and data.
set -eu
cd /var/lib/fedbiscuit
if [ ! -f pki/ca.pem ]; then
    fedbiscuit pki init --federation compose --dir pki
    fedbiscuit pki issue-aggregator --dir pki --dns aggregator --dns localhost
    for silo in silo-1 silo-2 silo-3; do
        fedbiscuit pki issue --dir pki "$silo"
    done
fi
[ -f data/silo-3/train.jsonl ] || python /etc/fedbiscuit/benchmark_data.py data silo-1 silo-2 silo-3
fedbiscuit pki show --dir pki
