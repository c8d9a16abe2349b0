#!/usr/bin/env bash
# Does the bf16 gradient exchange train as well as float32? (docs/SCALING.md, "The bf16
# exchange"). Two ranks, the same run with --allreduce-dtype fp32 and bf16, per seed; prints the
# validation losses side by side. Run by hand after `swift build -c release`.
#
#   scripts/allreduce_dtype_check.sh [--data DIR] [--domain NAME] [--steps 1000] [--seeds 1,2]
#                                    [--out runs/allreduce-dtype] [-- extra elle train flags]
#
# The default data is runs/experiment-data (scripts/fetch-corpora.sh, then
# `elle data prepare --raw corpora/text --out runs/experiment-data --tokenizer train:4096 --train-mb 10`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
elle="$repo/.build/release/elle"
data="$repo/runs/experiment-data" domain=literature steps=1000 seeds=1,2 out="$repo/runs/allreduce-dtype"
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) data="$2"; shift 2 ;;
        --domain) domain="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --seeds) seeds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "allreduce_dtype_check.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -x "$elle" ]] || { echo "allreduce_dtype_check.sh: build first (swift build -c release)" >&2; exit 1; }
root=(); [[ "$(id -u)" -eq 0 ]] && root=(--allow-run-as-root)
mkdir -p "$out"
for seed in ${seeds//,/ }; do
    for dtype in fp32 bf16; do
        run="$out/seed$seed-$dtype"
        [[ -f "$run/step-$(printf %08d "$steps").ckpt" ]] && continue  # done (resumable)
        rm -rf "$run"
        echo "[$(date +%H:%M:%S)] seed $seed, $dtype exchange (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
        mpirun "${root[@]}" --bind-to none -n 2 "$elle" train --data "$data" --domain "$domain" --out "$run" \
            --layers 4 --width 256 --heads 4 --seq 128 --batch 8 --steps "$steps" --lr 1e-3 --warmup 100 \
            --eval-every 100 --eval-batches 20 --log-every 100 --threads 1 --seed "$seed" --allreduce-dtype "$dtype" \
            "${extra[@]}" > "$run.log" 2>&1
    done
done
python3 - "$out" "$seeds" "$steps" <<'PY'
import json, sys
out, seeds, steps = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
def valid(path):
    return {r["step"]: r["valid_loss"] for r in map(json.loads, open(path + "/metrics.jsonl")) if "valid_loss" in r}
print("| seed | step | valid loss, fp32 exchange | valid loss, bf16 exchange | bf16 / fp32 - 1 |")
print("|---|---|---|---|---|")
finals = []
for seed in seeds:
    a, b = valid(f"{out}/seed{seed}-fp32"), valid(f"{out}/seed{seed}-bf16")
    for step in sorted(a):
        if step in b and (step % (steps // 5) == 0 or step == steps):
            print(f"| {seed} | {step} | {a[step]:.5f} | {b[step]:.5f} | {100 * (b[step] / a[step] - 1):+.4f}% |")
    finals.append(b[steps] / a[steps] - 1)
print(f"\nfinal validation loss, bf16 against fp32 exchange: " + ", ".join(f"{100 * f:+.4f}%" for f in finals))
PY
