#!/usr/bin/env bash
# bf16 against fp32 on real text (issue 20, Must show 4; docs/PERFORMANCE.md, "bf16").
#
# GPT 6/384 on the literature domain with a trained 8k BPE, 1000 updates of 16 x 128 tokens,
# twice with the same seed, data order, dropout and schedule: --precision fp32 and bf16.
# Prints the validation loss of both at every evaluation (every 50 updates) and plots them
# (scripts/plot_precision.py); fails if they are more than 1% apart anywhere.
#
# Resumable: a finished run is skipped, an interrupted one continues from its last checkpoint.
# Never run by CI. The two runs take about 20 (bf16) and 35 (fp32) minutes of one core each
# on the Zen 4 machine; they run side by side at nice 19.
#
#   scripts/precision_experiment.sh [OUT]        # default OUT: runs/precision; SEED=2 for another seed
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-runs/precision}
ELLE=${ELLE:-.build/release/elle}
PY=${PY:-.venv/bin/python}
RAW=${RAW:-corpora/text}
STEPS=${STEPS:-1000}
THREADS=${THREADS:-1}
SEED=${SEED:-1}

[ -x "$ELLE" ] || swift build -c release
mkdir -p "$OUT"
log() { echo "[precision_experiment $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/experiment.log"; }

if [ ! -f "$OUT/data/manifest.json" ]; then
    log "preparing $RAW/literature with a trained 8192-token BPE"
    "$ELLE" data prepare --raw "$RAW" --domains literature --out "$OUT/data" --tokenizer train:8192 | tee -a "$OUT/experiment.log"
fi

run() {
    local precision=$1 dir="$OUT/$1" start=$SECONDS
    if [ -f "$dir/latest" ] && grep -q "step-0*$STEPS.ckpt" "$dir/latest"; then log "$precision: done, skipped"; return; fi
    if [ -f "$dir/latest" ]; then
        log "$precision: resuming"
        nice -n 19 "$ELLE" train --out "$dir" --resume --threads "$THREADS" >>"$dir/train.log" 2>&1
    else
        log "$precision: training $STEPS updates"
        mkdir -p "$dir"
        nice -n 19 "$ELLE" train --data "$OUT/data" --out "$dir" --layers 6 --width 384 --heads 6 --seq 128 --batch 16 \
            --steps "$STEPS" --lr 6e-4 --warmup 100 --eval-every 50 --eval-batches 40 --checkpoint-every 100 --seed "$SEED" \
            --threads "$THREADS" --precision "$precision" >>"$dir/train.log" 2>&1
    fi
    log "$precision: finished in $((SECONDS - start)) s"
}

run fp32 & run bf16 & wait
"$PY" scripts/plot_precision.py "$OUT/fp32" "$OUT/bf16" "$OUT/precision.png" | tee "$OUT/summary.md"
