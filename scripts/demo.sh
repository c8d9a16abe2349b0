#!/usr/bin/env bash
# The main job on the bundled data: sets up, trains a small GPT on the bundled Shakespeare for
# a few minutes (falling loss printed as it goes), then samples from the trained model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
out=${ELLE_DEMO_OUT:-runs/demo}
rm -rf "$out"
.build/release/elle train --data data/sample/literature --out "$out" \
    --layers 4 --width 192 --heads 4 --seq 128 --batch 16 --steps 600 \
    --lr 3e-3 --warmup 60 --min-lr 3e-4 --dropout 0.05 --log-every 25 --eval-every 200
.build/release/elle sample --checkpoint "$out" --prompt "ROMEO." --tokens 300
