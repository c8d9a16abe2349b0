#!/usr/bin/env bash
# The main job on the bundled data: set up, then the ELLE lifelong demo. A tiny GPT learns the
# sample's three domains in turn (literature -> legal -> biomedical), growing before the second
# and third with a short warmup after each, replaying earlier domains, one prompt token per
# domain; on 2 local MPI ranks (one process if MPI cannot start). It ends with the perplexity
# matrix, AP and AP+ (also in runs/demo/report.md) and a sample per domain. The run folder also
# holds TensorBoard event files (`.venv/bin/tensorboard --logdir runs` shows the curves).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
elle=.build/release/elle
out=${ELLE_DEMO_OUT:-runs/demo}

# BPE vocabulary of 2048 trained on the sample, and train/valid/memory shards per domain.
$elle data prepare --raw data/sample --out runs/demo-data --tokenizer train:2048
rm -rf "$out"
if cluster/launch.sh -n 2 -- /bin/true >/dev/null 2>&1; then
    echo "demo: 2 MPI ranks (cluster/launch.sh)"
    cluster/launch.sh -n 2 -- $elle train --config plans/demo.yaml --out "$out" --tensorboard "$out"
else
    echo "demo: mpirun could not start 2 ranks here; running as one process"
    $elle train --config plans/demo.yaml --out "$out" --tensorboard "$out"
fi
for domain in literature legal biomedical; do
    echo "--- sample ($domain prompt) ---"
    $elle sample --checkpoint "$out" --domain "$domain" --prompt "" --tokens 80 --seed 3
done
echo "TensorBoard event files in $out: scripts/setup.sh --python, then .venv/bin/tensorboard --logdir $(dirname "$out")"
