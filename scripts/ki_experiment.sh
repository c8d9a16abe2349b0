#!/usr/bin/env bash
# Knowledge Inheritance experiment (issue 13; docs/KI.md, results in docs/RESULTS.md).
#
# A GPT teacher (4 layers, width 256) trained on one real domain, then a GPT student (6/384)
# trained twice on the same domain with the same seed, data order and schedule: from scratch,
# and with KI from the teacher (linear a_t over the first half of the run, tau 2). Reports the
# steps and FLOPs (student, and student + teacher forward passes) the KI run needs to reach the
# from-scratch run's final validation perplexity, and plots both runs (scripts/plot_ki.py).
#
# Resumable: a finished run is skipped, an interrupted one continues from its last checkpoint.
# Never run by CI. Sized for about 30 minutes of a shared 2-core machine; scale with the
# variables below (e.g. STUDENT_STEPS=2000 TEACHER_STEPS=4000 for a longer run).
#
#   scripts/ki_experiment.sh [OUT]        # default OUT: runs/ki
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-runs/ki}
ELLE=${ELLE:-.build/release/elle}
PY=${PY:-.venv/bin/python}
RAW=${RAW:-corpora/text}
DOMAIN=${DOMAIN:-literature}
VOCAB=${VOCAB:-8192}
SEQ=${SEQ:-128}
BATCH=${BATCH:-4}
TEACHER_STEPS=${TEACHER_STEPS:-500}
STUDENT_STEPS=${STUDENT_STEPS:-200}
KD_STEPS=${KD_STEPS:-$((STUDENT_STEPS / 2))}
EVAL_EVERY=${EVAL_EVERY:-20}
EVAL_BATCHES=${EVAL_BATCHES:-8}
THREADS=${THREADS:-2}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}

[ -x "$ELLE" ] || swift build -c release
mkdir -p "$OUT"
log() { echo "[ki_experiment $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/experiment.log"; }

# Steps a run folder's newest checkpoint holds (0 when none).
done_steps() {
    local latest="$1/latest"
    [ -f "$latest" ] || { echo 0; return; }
    sed -E 's/step-0*([0-9]+)\.ckpt/\1/; s/^$/0/' "$latest"
}

# run NAME STEPS ARGS...: trains runs/NAME unless it already holds STEPS updates; resumes a
# partial run.
run() {
    local name=$1 steps=$2; shift 2
    local dir="$OUT/$name" have
    have=$(done_steps "$dir")
    if [ "$have" -ge "$steps" ]; then log "$name: done ($have updates), skipped"; return; fi
    local start=$SECONDS
    if [ "$have" -gt 0 ]; then
        log "$name: resuming at update $have of $steps"
        nice -n 5 "$ELLE" train --out "$dir" --resume --threads "$THREADS" >>"$dir/train.log" 2>&1
    else
        log "$name: training $steps updates"
        rm -rf "$dir"; mkdir -p "$dir"
        nice -n 5 "$ELLE" train --data "$OUT/data" --domain "$DOMAIN" --out "$dir" --steps "$steps" \
            --seq "$SEQ" --batch "$BATCH" --dropout 0 --seed 1 --threads "$THREADS" \
            --eval-every "$EVAL_EVERY" --eval-batches "$EVAL_BATCHES" --checkpoint-every 50 --log-every 10 \
            "$@" >>"$dir/train.log" 2>&1
    fi
    log "$name: finished in $((SECONDS - start)) s"
}

if [ ! -f "$OUT/data/manifest.json" ]; then
    log "preparing $RAW/$DOMAIN with a trained $VOCAB-token BPE"
    nice -n 5 "$ELLE" data prepare --raw "$RAW" --domains "$DOMAIN" --out "$OUT/data" \
        --tokenizer "train:$VOCAB" --train-mb 4 --threads "$THREADS" | tee -a "$OUT/experiment.log"
fi

run teacher "$TEACHER_STEPS" --layers 4 --width 256 --heads 4 --lr 2e-3 --warmup 30 --min-lr 1e-4
run scratch "$STUDENT_STEPS" --layers 6 --width 384 --heads 6 --lr 1.5e-3 --warmup 20 --min-lr 1e-4
run ki "$STUDENT_STEPS" --layers 6 --width 384 --heads 6 --lr 1.5e-3 --warmup 20 --min-lr 1e-4 \
    --teacher "$OUT/teacher" --kd-steps "$KD_STEPS" --kd-temperature 2 --kd-schedule linear --kd-until steps

"$PY" scripts/plot_ki.py "$OUT" | tee "$OUT/summary.md"
log "summary in $OUT/summary.md, plot $OUT/ki.png"
