#!/usr/bin/env bash
# The "Fine-tuning with domain prompts" experiment of docs/RESULTS.md, end to end and resumable
# (every step skips what is already done; never run in CI):
#   1. prepare biomedical, legal and technical text (corpora/ from scripts/fetch-corpora.sh) with
#      an 8192-token BPE vocabulary into runs/ft-data;
#   2. build the three tasks (scripts/make_finetune_tasks.py) into runs/tasks;
#   3. pre-train the ELLE BERT (plans/finetune-elle.yaml) and the naive-continual BERT
#      (plans/finetune-naive.yaml) side by side, one thread each (a stopped run resumes);
#   4. fine-tune each final checkpoint on each task, 3 seeds: ELLE with its domain prompt, ELLE
#      without, naive (no prompt: it never trained one), two runs at a time;
#   5. average into runs/ft-results/summary.md.
# usage: scripts/finetune-experiment.sh   (from the repository root, after swift build -c release)
set -euo pipefail
cd "$(dirname "$0")/.."
ELLE=${ELLE:-.build/release/elle}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
RESULTS=runs/ft-results
mkdir -p runs "$RESULTS"
start=$(date +%s)
log() { echo "[$(date -u +%H:%M:%S) +$(( $(date +%s) - start ))s] $*"; }

if [ ! -f runs/ft-data/manifest.json ]; then
  log "preparing runs/ft-data"
  nice -n 5 "$ELLE" data prepare --raw corpora/text --out runs/ft-data --tokenizer train:8192 \
    --domains biomedical,legal,technical --train-mb 8
fi
if [ ! -f runs/tasks/technical-man/test.jsonl ]; then
  log "building runs/tasks"
  python3 scripts/make_finetune_tasks.py --corpora corpora --out runs/tasks
fi

pretrain() {  # plan name
  local out=runs/ft-$1
  [ -f "$out/stage-02-technical.ckpt" ] && return 0
  local resume=()
  [ -f "$out/latest" ] && resume=(--resume)
  nice -n 5 "$ELLE" train --config plans/finetune-$1.yaml --out "$out" --threads 1 "${resume[@]}" > "$out.log" 2>&1
}
log "pre-training (see runs/ft-elle.log, runs/ft-naive.log)"
pretrain elle & a=$!
pretrain naive & b=$!
wait $a; wait $b
log "pre-training done"

# One fine-tuning run: TASK DOMAIN CONFIG SEED
finetune() {
  local task=$1 domain=$2 config=$3 seed=$4
  local result=$RESULTS/$task-$config-s$seed.json
  [ -f "$result" ] && return 0
  local checkpoint prompt
  case $config in
    elle-prompt) checkpoint=runs/ft-elle/stage-02-technical.ckpt; prompt=(--domain "$domain") ;;
    elle-noprompt) checkpoint=runs/ft-elle/stage-02-technical.ckpt; prompt=(--no-prompt) ;;
    naive) checkpoint=runs/ft-naive/stage-02-technical.ckpt; prompt=(--no-prompt) ;;
  esac
  nice -n 5 "$ELLE" finetune --checkpoint "$checkpoint" --task runs/tasks/$task "${prompt[@]}" --seed "$seed" \
    --seq 64 --batch 16 --epochs 3 --patience 2 --lr 3e-4 --warmup 0.1 --threads 1 \
    --result "$result.tmp" > "$RESULTS/$task-$config-s$seed.log" 2>&1
  mv "$result.tmp" "$result"
  echo "$task $config seed $seed: $(tail -n 1 "$RESULTS/$task-$config-s$seed.log")"
}
export -f finetune
export ELLE RESULTS
log "fine-tuning: 3 tasks x 3 configurations x 3 seeds, 2 at a time"
for seed in 1 2 3; do
  for config in elle-prompt elle-noprompt naive; do
    for pair in biomedical-go:biomedical legal-license:legal technical-man:technical; do
      echo "${pair%%:*} ${pair##*:} $config $seed"
    done
  done
done | xargs -P 2 -L 1 bash -c 'finetune "$@"' _
log "fine-tuning done"

python3 - "$RESULTS" <<'PY'
import glob, json, os, statistics, sys
folder = sys.argv[1]
rows = {}
for path in glob.glob(os.path.join(folder, "*.json")):
    r = json.load(open(path))
    name = os.path.basename(path)[:-5]
    task, rest = name.split("-", 1)[0] + "-" + name.split("-")[1], name.split("-", 2)[2]
    config = rest.rsplit("-s", 1)[0]
    rows.setdefault((task, config), []).append((r["test"]["accuracy"], r["test"]["macroF1"], r["updates"], r["seconds"]))
names = {"elle-prompt": "ELLE, with its domain prompt", "elle-noprompt": "ELLE, without prompt", "naive": "naive continual (no prompt)"}
lines = ["| task | checkpoint | seeds | test accuracy | test macro-F1 | updates | seconds/run |", "|---|---|---|---|---|---|---|"]
def fmt(xs):
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"
for task in ["biomedical-go", "legal-license", "technical-man"]:
    for config in ["elle-prompt", "elle-noprompt", "naive"]:
        r = rows.get((task, config))
        if not r: continue
        lines.append(f"| {task} | {names[config]} | {len(r)} | {fmt([x[0] for x in r])} | {fmt([x[1] for x in r])} | "
                     f"{statistics.mean([x[2] for x in r]):.0f} | {statistics.mean([x[3] for x in r]):.0f} |")
open(os.path.join(folder, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
log "wrote $RESULTS/summary.md"
