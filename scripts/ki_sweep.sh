#!/usr/bin/env bash
# Knowledge-inheritance sweep (issue 26; docs/KI.md "Defaults", results in docs/RESULTS.md).
#
# On two of the project's domains, a GPT student (4/256) trained 300 updates from scratch and with
# KI from a 2/128 teacher, one factor at a time around a base setting (the paper's: tau 2, linear
# a_t over the whole run, a teacher clearly better than the student):
#   temperature 1 | 2 | 4,  schedule linear | constant | switch,  T_kd a quarter | half | all,
#   teacher clearly worse than the student's final perplexity | about equal | clearly better,
# plus tau 1 with the early end alone and the defaults (no --kd-* flag at all) with each teacher. Then a smaller BERT sweep on one
# domain. Every cell runs with every seed in SEEDS; the student's seed fixes its initialization and
# data order, so each KI run is paired with the scratch run of its seed. Teachers: seed 1.
#
# Resumable: a finished run is skipped, an interrupted one is trained again from the start (runs
# take well under a minute). Each finished run appends a row to OUT/runs.tsv with its wall time,
# the load average when it ended and the elle commit it ran with. Never run by CI. About 70 min
# on a quiet 2-core machine. Summary, tables and plots: scripts/ki_sweep.py OUT.
#
#   scripts/ki_sweep.sh [OUT]         # default OUT: runs/ki-sweep
#   PARTS="gpt bert" SEEDS="1 2" DOMAINS="literature legal" ELLE=.build/release/elle
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-runs/ki-sweep}
ELLE=${ELLE:-.build/release/elle}
RAW=${RAW:-corpora/text}
DOMAINS=${DOMAINS:-literature legal}
BERT_DOMAIN=${BERT_DOMAIN:-literature}
SEEDS=${SEEDS:-1 2}
PARTS=${PARTS:-gpt bert}
THREADS=${THREADS:-2}
PRECISION=${PRECISION:-bf16}
STEPS=300
# Teachers (2/128) trained these many updates: perplexity clearly above, about at and clearly
# below the 4/256 student's after 300 updates from scratch (calibrated per domain: the "equal"
# teacher needs more updates on literature, where the student ends higher).
teacher_steps() {  # STRENGTH DOMAIN
    case $1 in
        worse) echo 60 ;;
        equal) case $2 in literature) echo 450 ;; *) echo 350 ;; esac ;;
        better) echo 1500 ;;
    esac
}

[ -x "$ELLE" ] || swift build -c release
mkdir -p "$OUT"
COMMIT=${ELLE_COMMIT:-$(git rev-parse --short HEAD)}  # the commit $ELLE was built from
[ -f "$OUT/runs.tsv" ] || printf 'run\tseconds\tload1\tload5\tcommit\n' >"$OUT/runs.tsv"
log() { echo "[ki_sweep $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/sweep.log"; }

# run NAME ARGS...: trains OUT/NAME (skipped when it finished before).
run() {
    local name=$1; shift
    local dir="$OUT/$name"
    if grep -q '"valid_perplexity"' "$dir/metrics.jsonl" 2>/dev/null && [ -f "$dir/DONE" ]; then return; fi
    rm -rf "$dir"; mkdir -p "$dir"
    local start=$SECONDS
    nice -n 10 "$ELLE" train --data "$OUT/data" --out "$dir" --threads "$THREADS" --precision "$PRECISION" \
        --seq 64 --batch 16 --dropout 0 --checkpoint-every 100000 --log-every 25 "$@" >"$dir/train.log" 2>&1 \
        || { log "$name FAILED, see $dir/train.log"; return 1; }
    touch "$dir/DONE"
    local load; load=$(cut -d' ' -f1,2 /proc/loadavg)
    printf '%s\t%d\t%s\t%s\t%s\n' "$name" $((SECONDS - start)) "${load% *}" "${load#* }" "$COMMIT" >>"$OUT/runs.tsv"
    log "$name: $((SECONDS - start)) s, load ${load% *}"
}

if [ ! -f "$OUT/data/manifest.json" ]; then
    log "preparing $RAW ($DOMAINS) with a trained 4096-token BPE"
    "$ELLE" data prepare --raw "$RAW" --domains "$(echo $DOMAINS | tr ' ' ,)" --out "$OUT/data" \
        --tokenizer train:4096 --train-mb 4 --threads "$THREADS" | tee -a "$OUT/sweep.log"
fi

STUDENT="--steps $STEPS --lr 1.5e-3 --warmup 20 --eval-every 25 --eval-batches 16"

# sweep MODEL DOMAIN CELLS...: teachers, then every cell with every seed. A cell is
# NAME:TEACHER:FLAGS (FLAGS with commas for spaces; "scratch" has no teacher).
sweep() {
    local model=$1 domain=$2; shift 2
    local arch="--layers 4 --width 256 --heads 4"
    [ "$model" = bert ] && arch="--model bert $arch"
    for strength in worse equal better; do
        run "$model-$domain/teacher-$strength" --domain "$domain" ${arch%--layers*} --layers 2 --width 128 --heads 2 \
            --steps "$(teacher_steps $strength $domain)" --lr 3e-3 --warmup 30 --seed 1 --eval-every 0 --eval-batches 16
    done
    for seed in $SEEDS; do
        for cell in "$@"; do
            local name=${cell%%:*} rest=${cell#*:}
            local teacher=${rest%%:*} flags=${rest#*:}
            local kd=()
            [ "$teacher" != none ] && kd=(--teacher "$OUT/$model-$domain/teacher-$teacher")
            run "$model-$domain/$name-s$seed" --domain "$domain" $arch $STUDENT --seed "$seed" "${kd[@]}" ${flags//,/ }
        done
    done
}

GPT_CELLS=(
    "scratch:none:"
    "base:better:--kd-temperature,2,--kd-schedule,linear,--kd-steps,300"
    "tau1:better:--kd-temperature,1,--kd-schedule,linear,--kd-steps,300"
    "tau4:better:--kd-temperature,4,--kd-schedule,linear,--kd-steps,300"
    "constant:better:--kd-temperature,2,--kd-schedule,constant,--kd-weight,0.5,--kd-steps,300"
    "switch:better:--kd-temperature,2,--kd-schedule,switch,--kd-steps,300"
    "kd-quarter:better:--kd-temperature,2,--kd-schedule,linear,--kd-steps,75"
    "kd-half:better:--kd-temperature,2,--kd-schedule,linear,--kd-steps,150"
    "teacher-worse:worse:--kd-temperature,2,--kd-schedule,linear,--kd-steps,300"
    "teacher-equal:equal:--kd-temperature,2,--kd-schedule,linear,--kd-steps,300"
)
# tau 1 with only the early end (the defaults before the start gate existed), with each teacher.
END_RULE_CELLS=(
    "end-rule-worse:worse:--kd-temperature,1,--kd-until,teacher,--kd-start,first"
    "end-rule-equal:equal:--kd-temperature,1,--kd-until,teacher,--kd-start,first"
    "end-rule-better:better:--kd-temperature,1,--kd-until,teacher,--kd-start,first"
)
# The defaults (no --kd-* flag) with each teacher (docs/KI.md "Defaults").
DEFAULT_CELLS=(
    "defaults-worse:worse:"
    "defaults-equal:equal:"
    "defaults-better:better:"
)
BERT_CELLS=(
    "scratch:none:"
    "base:better:--kd-temperature,2,--kd-schedule,linear,--kd-steps,300"
    "tau1:better:--kd-temperature,1,--kd-schedule,linear,--kd-steps,300"
    "kd-half:better:--kd-temperature,2,--kd-schedule,linear,--kd-steps,150"
    "teacher-worse:worse:--kd-temperature,2,--kd-schedule,linear,--kd-steps,300"
)

for part in $PARTS; do
    case $part in
        gpt) for d in $DOMAINS; do sweep gpt "$d" "${GPT_CELLS[@]}"; done ;;
        gpt-defaults) for d in $DOMAINS; do sweep gpt "$d" "${END_RULE_CELLS[@]}" "${DEFAULT_CELLS[@]}"; done ;;
        bert) sweep bert "$BERT_DOMAIN" "${BERT_CELLS[@]}" ;;
        bert-defaults) sweep bert "$BERT_DOMAIN" "${END_RULE_CELLS[@]}" "${DEFAULT_CELLS[@]}" ;;
        *) echo "unknown part $part (gpt, gpt-defaults, bert, bert-defaults)" >&2; exit 2 ;;
    esac
done
log "done: $(($(wc -l <"$OUT/runs.tsv") - 1)) runs in $OUT/runs.tsv; summary: .venv/bin/python scripts/ki_sweep.py $OUT"
