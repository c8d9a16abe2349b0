#!/usr/bin/env bash
# Fault injection on 2-rank lifelong runs (issue 23, docs/RELIABILITY.md): kill -9 of a random
# rank at a random time, SIGSTOP (the watchdog), SIGTERM, a corrupted newest checkpoint, a full
# disk (ulimit -f), a truncated shard and resumes on another number of ranks, each followed by
# --resume until the plan is done; prints per fault the updates lost and whether the run ended
# bit-identical to the uninterrupted one. Takes about 55 minutes on 2 cores (each kill -9 and
# SIGSTOP case waits out mpirun's two 30 s kill timeouts); results in OUT/faults.jsonl as each case ends.
#
#   scripts/faults.sh [--out runs/faults] [--seed 1] [--faults kill9:6,sigstop:3,...] [--steps 300 150]
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .build/release/elle ]] || scripts/setup.sh
exec python3 scripts/faults.py "$@"
