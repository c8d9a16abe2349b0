#!/usr/bin/env bash
# Time to target with the plateau growth policy (issue 22, docs/RESULTS.md "Growth on plateau:
# time to target"): one domain (encyclopedic, BPE 4096, from scratch), a FLOP budget C per run:
#   scratch-2x128   the final size 2/128 trained from scratch for C FLOPs
#   small-1x64      the starting size 1/64, never grown
#   policy          1/64 growing on plateau to 2/64 then 2/128 (identity depth, moments carried)
#   policy-ramp     the same with a 100-update masked ramp on every growth
#   oracle-2x128-atN  1/64 grown once, straight to 2/128, after update N (ORACLE_AT, default 3064:
#                   where the policy's first growth came in every run) with the policy's growth
#                   options; --steps puts its total FLOPs at C, its schedule runs on updates
# each for SEEDS (default "1 2") and ARMS (default all five); then scripts/growth_policy_report.py tabulates the FLOPs each
# run needs to reach the scratch run's final validation loss and plots the curves with the growth
# points marked.
#
#   scripts/growth_policy_experiment.sh            # C = 3.06e13 (payoff-tiny's x64 stage)
#   BUDGET=7.66e12 OUT=runs/growth-policy-x16 scripts/growth_policy_experiment.sh
#   ARMS=oracle scripts/growth_policy_experiment.sh   # only the oracle-timing arm
#
# Resumable: a finished run (its final checkpoint's "parameters xxh64" line in train.log) is
# skipped, a stopped one continues from its newest checkpoint. JOBS (default 2) runs at a time,
# THREADS (default 1) each, niced; runs.tsv records every run with the load average and commit.
# About 25 minutes on 2 cores. Needs runs/experiment-data (scripts/elle_experiment.sh prepares it).
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
elle=${ELLE:-.build/release/elle}
out=${OUT:-runs/growth-policy}
budget=${BUDGET:-3.06e13}
jobs=${JOBS:-2}
threads=${THREADS:-1}
seeds=${SEEDS:-1 2}
arms=${ARMS:-scratch-2x128 small-1x64 policy policy-ramp oracle}
oracle_at=${ORACLE_AT:-3064}
[ -x "$elle" ] || swift build -c release
[ -f runs/experiment-data/manifest.json ] || { echo "growth_policy_experiment: runs/experiment-data is missing (scripts/elle_experiment.sh prepares it)" >&2; exit 1; }
mkdir -p "$out"

common=(--data runs/experiment-data --domain encyclopedic --seq 64 --batch 8 --accumulation 2 --dropout 0
        --schedule cosine --lr 2e-3 --min-lr 2e-4 --weight-decay 0.01 --clip 1.0 --eval-batches 20 --log-every 100
        --threads "$threads")

# FLOPs per update of a shape, from one update's metrics.
per_update() {   # layers width heads
    local probe=$out/.probe-$1x$2
    [ -f "$probe/flops" ] || {
        rm -rf "$probe"
        $elle train "${common[@]}" --out "$probe" --layers "$1" --width "$2" --heads "$3" --steps 1 --eval-every 0 >/dev/null
        python3 -c "import json; print(json.loads(open('$probe/metrics.jsonl').readlines()[0])['flops'])" > "$probe/flops"
    }
    cat "$probe/flops"
}
steps_for() { python3 -c "print(round($budget / $1))"; }

small=$(per_update 1 64 1); large=$(per_update 2 128 2)
small_steps=$(steps_for "$small"); large_steps=$(steps_for "$large")
echo "budget $budget FLOPs: $small_steps updates of 1/64 ($small each), $large_steps of 2/128 ($large each)"
# The oracle: ORACLE_AT updates of 1/64, then as many of 2/128 as the rest of the budget pays for.
oracle_steps=$(python3 -c "print($oracle_at + round(($budget - $oracle_at * $small) / $large))")
python3 -c "
f = $oracle_at * $small + ($oracle_steps - $oracle_at) * $large
assert abs(f / $budget - 1) < 0.005, f
print('oracle: %d updates (%d of 1/64, then 2/128), %.4e FLOPs (%+.2f%% of the budget)' % ($oracle_steps, $oracle_at, f, 100 * (f / $budget - 1)))"

run_one() {   # name seed args...
    local name=$1 seed=$2; shift 2
    local dir=$out/$name-s$seed
    if [ -f "$dir/train.log" ] && grep -q "^parameters xxh64" "$dir/train.log"; then echo "skip $name-s$seed (done)"; return 0; fi
    local start load
    start=$(date +%s); load=$(cut -d' ' -f1-3 /proc/loadavg)
    if [ -f "$dir/latest" ]; then
        nice -n 5 $elle train --out "$dir" --resume --threads "$threads" >> "$dir/train.log" 2>&1
    else
        mkdir -p "$dir"
        nice -n 5 $elle train "${common[@]}" --out "$dir" --seed "$seed" "$@" > "$dir/train.log" 2>&1
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$seed" "$(( $(date +%s) - start ))" "$load" "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$(git rev-parse --short HEAD)" >> "$out/runs.tsv"
    echo "done $name-s$seed"
}

wanted() { [[ " $arms " == *" $1 "* ]]; }
commands=()
for seed in $seeds; do
    wanted scratch-2x128 && commands+=("scratch-2x128 $seed --layers 2 --width 128 --heads 2 --steps $large_steps --warmup $(( large_steps / 50 )) --eval-every $(( large_steps / 40 ))")
    wanted small-1x64 && commands+=("small-1x64 $seed --layers 1 --width 64 --heads 1 --steps $small_steps --warmup $(( small_steps / 50 )) --eval-every $(( small_steps / 40 ))")
    for arm in policy policy-ramp; do
        wanted $arm || continue
        ramp=(); [ "$arm" = policy-ramp ] && ramp=(--grow-ramp 100)
        commands+=("$arm $seed --layers 1 --width 64 --heads 1 --steps $small_steps --warmup $(( small_steps / 50 )) --eval-every $(( small_steps / 40 )) --grow-on-plateau 2/64/1,2/128/2 ${ramp[*]}")
    done
    # The policy's growth options (docs/GROWTH.md "When to grow"), one growth at a fixed update:
    # --grow-at keeps the schedule on updates (cosine over oracle_steps updates, not over FLOPs).
    wanted oracle && commands+=("oracle-2x128-at$oracle_at $seed --layers 1 --width 64 --heads 1 --steps $oracle_steps --warmup $(( oracle_steps / 50 )) --eval-every $(( oracle_steps / 40 )) --grow-at $oracle_at --grow-to 2/128/2 --grow-depth-mode identity --grow-moments carry --grow-noise 0.01")
done
[ -f "$out/runs.tsv" ] || printf 'run\tseed\tseconds\tload_before\tload_after\tcommit\n' > "$out/runs.tsv"
export -f run_one; export elle out threads
printf '%s\n' "${commands[@]}" | xargs -P "$jobs" -I{} bash -c "common=(${common[*]}); run_one {}"
.venv/bin/python scripts/growth_policy_report.py "$out"
