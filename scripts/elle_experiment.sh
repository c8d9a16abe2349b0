#!/usr/bin/env bash
# The ELLE experiment of issue 12 on the five real domains (docs/RESULTS.md, "ELLE on a stream of
# real domains"): every plan under plans/experiment/BUDGET/ (naive continual, replay only, growth
# without replay, final size from scratch, ELLE as published, ELLE function-preserving, ...) at
# equal training FLOPs, for each budget, then the plots and tables.
#
#   scripts/elle_experiment.sh [BUDGET...]        # default: short long
#   scripts/elle_experiment.sh bert-short bert-long   # the BERT half (plans: make_experiment_plans.py 4096 --architecture bert)
#   scripts/elle_experiment.sh payoff             # where growth pays off (two domains, stage budgets x1..x64)
#   JOBS=1 THREADS=2 PRECISION=bf16 scripts/elle_experiment.sh ki   # KI on the stream (issue 26)
#   scripts/elle_experiment.sh policy-x4 policy-x16   # growth policy on a 3-domain stream (issue 22)
#
# Resumable: a run whose report.md exists is skipped; a run stopped part way continues from its
# newest checkpoint (`elle train --resume`). Runs go JOBS (default 2) at a time with THREADS
# (default 1) threads each, niced. Long: never run it in CI or tests.
# Data: corpora/text (scripts/fetch-corpora.sh) prepared once with one shared tokenizer (BPE of
# 4096 learned on 10 MB spread over the domains) into runs/experiment-data.
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
elle=${ELLE:-.build/release/elle}   # ELLE=path runs a copy while the tree is rebuilt
jobs=${JOBS:-2}
threads=${THREADS:-1}
precision=${PRECISION:-}   # PRECISION=bf16: mixed precision (the KI runs of issue 26); default: the plan's
budgets=("$@")
[ ${#budgets[@]} -gt 0 ] || budgets=(short long)

[ -x "$elle" ] || swift build -c release
[ -f corpora/text/manifest.json ] || { echo "elle_experiment: corpora/text is missing: run scripts/fetch-corpora.sh" >&2; exit 1; }
if [ ! -f runs/experiment-data/manifest.json ]; then
    nice -n 5 $elle data prepare --raw corpora/text --out runs/experiment-data --tokenizer train:4096 --train-mb 10
fi

run_one() {   # plan file -> runs/experiment/BUDGET/METHOD
    local plan=$1 budget method out
    budget=$(basename "$(dirname "$plan")"); method=$(basename "$plan" .yaml)
    out=runs/experiment/$budget/$method
    if [ -f "$out/report.md" ]; then echo "skip $budget/$method (done)"; return 0; fi
    mkdir -p "$out"
    # one driver per run: a second invocation running at the same time leaves it alone
    exec 9> "$out/.lock"
    if ! flock -n 9; then echo "skip $budget/$method (running in another invocation)"; return 0; fi
    local resume=()
    [ -f "$out/latest" ] && resume=(--resume)
    echo "start $budget/$method $(date -u +%H:%M:%S)"
    local start=$SECONDS load
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    if nice -n 5 $elle train --config "$plan" --out "$out" --threads "$threads" ${precision:+--precision "$precision"} "${resume[@]}" >> "$out/log.txt" 2>&1; then
        echo "done  $budget/$method in $((SECONDS - start)) s"
        echo "$((SECONDS - start))" >> "$out/wall-seconds.txt"
        # every run with its machine's load average (start and end) and the commit it ran
        printf '%s\t%s\t%s\t%s\t%s\n' "$budget/$method" "$((SECONDS - start))" "$load" "$(cut -d' ' -f1-3 /proc/loadavg)" \
            "$(git rev-parse --short HEAD)" >> runs/experiment/runs.tsv
    else
        echo "FAILED $budget/$method (see $out/log.txt)" >&2
        return 1
    fi
}
export -f run_one
export elle threads precision

order="elle-fp elle-pub replay naive scratch-final grow-noreplay replay-prompts elle-pub-gentle"
status=0
for budget in "${budgets[@]}"; do
    ls plans/experiment/"$budget"/*.yaml >/dev/null || { echo "elle_experiment: no plans in plans/experiment/$budget" >&2; exit 1; }
    # the ELLE variants and the baselines they must beat first, then the rest (any other plan last)
    { for m in $order; do [ -f "plans/experiment/$budget/$m.yaml" ] && echo "plans/experiment/$budget/$m.yaml"; done
      # any other plan, cheapest first when the names end in -xN (payoff: stage budget N)
      for p in plans/experiment/"$budget"/*.yaml; do case " $order " in *" $(basename "$p" .yaml) "*) ;; *) echo "$p";; esac; done |
          awk '{ n = $0; sub(/\.yaml$/, "", n); sub(/.*-x/, "", n); print (n ~ /^[0-9]+$/ ? n : 0) "\t" $0 }' | sort -s -n -k1,1 | cut -f2
    } | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {} || status=1
done
plain=(); policy=()
for budget in "${budgets[@]}"; do case $budget in policy-*) policy+=("$budget");; *) plain+=("$budget");; esac; done
[ ${#plain[@]} -eq 0 ] || .venv/bin/python scripts/plot_elle_experiment.py "${plain[@]}" || status=1
[ ${#policy[@]} -eq 0 ] || .venv/bin/python scripts/policy_stream_report.py "${policy[@]}" || status=1
exit $status
