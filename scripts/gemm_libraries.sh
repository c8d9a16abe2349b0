#!/usr/bin/env bash
# float32 products on OpenBLAS against oneDNN's float32 matmul at a GPT step's shapes, one thread
# each (docs/PERFORMANCE.md, "bf16": why float32 stays on OpenBLAS). Needs scripts/setup.sh's packages.
#   scripts/gemm_libraries.sh [L D V T B]      default 6 384 16384 128 8
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .build
gcc -O2 -o .build/gemm_libraries scripts/gemm_libraries.c -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas -ldnnl -lgomp
[ $# -gt 0 ] || set -- 6 384 16384 128 8
OMP_NUM_THREADS=1 .build/gemm_libraries "$@"
