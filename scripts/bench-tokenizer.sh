#!/usr/bin/env bash
# Every tokenizer figure of docs/PERFORMANCE.md on the same text (default: the fetched corpora):
# elle with GPT-2's vocabulary and with a 16k vocabulary trained on 20 MB of it (training time
# too), beside tiktoken's gpt2 and Hugging Face `tokenizers` (on the same tokenizer.json files),
# each at 1 and 2 threads. Run by hand; needs scripts/fetch-corpora.sh, scripts/fetch-gpt2.sh, a
# release build and .venv (scripts/setup.sh --python: tiktoken, tokenizers) (Python figures: one timed pass;
# Hugging Face tokenizers runs at about 1 MB/s per thread, so they take minutes). The machine is
# shared: repeat.
set -euo pipefail
cd "$(dirname "$0")/.."
text=${1:-corpora/text}
python=${PYTHON:-.venv/bin/python}
mkdir -p runs
elle=.build/release/elle
$elle bench tokenizer --text "$text" --tokenizer gpt2 --thread-counts 1,2 --repeats 3 --save runs/gpt2-tokenizer.json
$elle bench tokenizer --text "$text" --tokenizer train:16384 --train-mb 20 --thread-counts 1,2 --repeats 3 --save runs/trained-16k.json
for threads in 1 2; do
    "$python" scripts/bench_tokenizers.py --text "$text" --threads $threads --repeats 1 --hf runs/gpt2-tokenizer.json
    "$python" scripts/bench_tokenizers.py --text "$text" --threads $threads --repeats 1 --hf runs/trained-16k.json --no-tiktoken
done
