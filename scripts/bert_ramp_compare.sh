#!/usr/bin/env bash
# BERT depth growth with and without the masked ramp (issue 22): a post-LN BERT 2/128 trained on
# literature grows after update 300 of 600 to 3/128 by an identity block (not function preserving
# in post-LN: LN2(LN1(x)) != x) or by the same block entering through a 100-update ramp (exact),
# moments carried; seeds 1 and 2. Prints the validation loss before the growth, right after it and
# at the end, per run (runs/bert-ramp/ARM-sSEED). Needs runs/experiment-data (scripts/elle_experiment.sh
# prepares it). About 6 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
elle=${ELLE:-.build/release/elle}
out=${OUT:-runs/bert-ramp}
mkdir -p "$out"
run() {   # arm seed extra...
    local dir=$out/$1-s$2; shift 2
    [ -f "$dir/train.log" ] && grep -q "^parameters xxh64" "$dir/train.log" && return 0
    rm -rf "$dir"; mkdir -p "$dir"
    local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
    nice -n 5 $elle train --model bert --data runs/experiment-data --domain literature --out "$dir" --layers 2 --width 128 --heads 2 \
        --seq 64 --batch 8 --accumulation 2 --steps 600 --schedule linear --warmup 40 --lr 1e-3 --dropout 0.1 \
        --eval-every 50 --eval-batches 20 --log-every 100 --threads 1 --seed "$seed" \
        --grow-at 300 --grow-to 3/128/2 --grow-depth-mode identity --grow-moments carry "$@" > "$dir/train.log" 2>&1
    echo "$load" > "$dir/load"
}
for seed in 1 2; do
    run identity "$seed" &
    run ramp "$seed" --grow-ramp 100 &
    wait
done
python3 - "$out" <<'EOF'
import glob, json, os, sys
print("| run | load at start | valid loss at 300 | right after the growth | at 600 |")
print("|---|---|---|---|---|")
for folder in sorted(glob.glob(os.path.join(sys.argv[1], "*-s*"))):
    before = after = end = None
    for line in open(os.path.join(folder, "metrics.jsonl")):
        r = json.loads(line)
        if "valid_loss" in r and r["step"] == 300: before = r["valid_loss"]
        if "valid_loss_after_growth" in r: after = r["valid_loss_after_growth"]
        if "valid_loss" in r and r["step"] == 600: end = r["valid_loss"]
    load = open(os.path.join(folder, "load")).read().strip()
    print(f"| {os.path.basename(folder)} | {load} | {before:.4f} | {after:.4f} | {end:.4f} |")
EOF
