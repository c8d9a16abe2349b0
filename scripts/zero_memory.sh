#!/usr/bin/env bash
# ZeRO-1's memory saving (docs/SCALING.md "ZeRO-1"): peak resident memory per rank of real
# training steps (`elle bench memory`, random tokens), with and without --zero 1, on each rank
# count, beside the state each rank holds. Run by hand after `swift build -c release`; one job
# per (ranks, mode), since a process's peak only grows. Appends the JSON of every job (with the
# load average) to OUT/results.jsonl and prints a markdown table.
#
#   scripts/zero_memory.sh [--out DIR] [--ranks 2,4] [--layers 12 --width 768 --heads 12]
#                          [--vocab 16384] [--seq 128] [--batch 1] [--steps 2] [--precision fp32]
#
# Predicted saving per rank: Adam's moments, 8 (1 - 1/N) bytes per parameter.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
elle="$repo/.build/release/elle"
out="$repo/runs/zero-memory" ranks=2,4 layers=12 width=768 heads=12 vocab=16384 seq=128 batch=1 steps=2 precision=fp32
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --layers) layers="$2"; shift 2 ;;
        --width) width="$2"; shift 2 ;;
        --heads) heads="$2"; shift 2 ;;
        --vocab) vocab="$2"; shift 2 ;;
        --seq) seq="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --precision) precision="$2"; shift 2 ;;
        *) echo "zero_memory.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -x "$elle" ]] || { echo "zero_memory.sh: build first (swift build -c release)" >&2; exit 1; }
mkdir -p "$out"
results="$out/results.jsonl"
root=(); [[ "$(id -u)" -eq 0 ]] && root=(--allow-run-as-root)
for n in ${ranks//,/ }; do
    for zero in 0 1; do
        load=$(cut -d' ' -f1-3 /proc/loadavg)
        echo "[$(date +%H:%M:%S)] $n ranks, zero $zero (load $load)" >&2
        json=$(mpirun "${root[@]}" --bind-to none --oversubscribe -n "$n" "$elle" bench memory --layers "$layers" --width "$width" \
            --heads "$heads" --vocab "$vocab" --seq "$seq" --batch "$batch" --steps "$steps" --threads 1 \
            --precision "$precision" --zero "$zero" --json | grep '^{' | tail -1)
        echo "{\"load_before\":\"$load\",\"result\":$json}" >> "$results"
    done
done
python3 - "$results" "$ranks" <<'PY'
import json, sys
runs = [json.loads(line)["result"] for line in open(sys.argv[1]) if line.strip()]
wanted = [int(n) for n in sys.argv[2].split(",")]
latest = {}
for r in runs:
    latest[(r["ranks"], r["zero"], r["layers"], r["width"], r["precision"])] = r
print("| ranks | parameters | state per rank, plain -> ZeRO-1 (MB) | peak RSS per rank, plain (MB) | peak RSS per rank, ZeRO-1 (MB) "
      "| saving, worst rank (MB) | predicted 8(1-1/N) B/param (MB) | saving / predicted |")
print("|---|---|---|---|---|---|---|---|")
for (n, zero, layers, width, precision), plain in sorted(latest.items()):
    if zero != 0 or n not in wanted or (n, 1, layers, width, precision) not in latest:
        continue
    sharded = latest[(n, 1, layers, width, precision)]
    p0, p1 = plain["peak_rss_bytes"], sharded["peak_rss_bytes"]
    saving = min(a - b for a, b in zip(p0, p1))
    predicted = 8 * (1 - 1 / n) * plain["parameters"]
    mb = lambda b: f"{b / 1e6:.0f}"
    print(f"| {n} | {plain['parameters'] / 1e6:.1f}M ({layers}/{width}, {precision}) | {mb(plain['state_total_bytes_per_rank'])} -> "
          f"{mb(sharded['state_total_bytes_per_rank'])} | {', '.join(mb(b) for b in p0)} | {', '.join(mb(b) for b in p1)} | "
          f"{mb(saving)} | {mb(predicted)} | {100 * saving / predicted:.0f}% |")
PY
