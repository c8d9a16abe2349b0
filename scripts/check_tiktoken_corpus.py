"""Full-corpus check (run by hand; result in docs/DATA.md): elle's GPT-2 encoding of every file
equals tiktoken's gpt2 encode_ordinary. elle writes a token count and XXH64 per file:

    .build/release/elle bench tokenizer --text corpora/text --tokenizer gpt2 --repeats 1 --hashes runs/elle-gpt2.tsv
    .venv/bin/python scripts/check_tiktoken_corpus.py runs/elle-gpt2.tsv

Exits non-zero and names the files (and first differing token) when any differ.
"""
import os, struct, sys
import xxhash
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiktoken_gpt2 import gpt2_encoding

enc = gpt2_encoding()
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
bad, tokens, total_bytes = [], 0, 0
for path, count, digest in rows:
    text = open(path, encoding="utf-8").read()
    ids = enc.encode_ordinary(text)
    tokens += len(ids)
    total_bytes += len(text.encode())
    mine = xxhash.xxh64(struct.pack(f"<{len(ids)}I", *ids)).hexdigest().lstrip("0") or "0"
    if len(ids) != int(count) or mine != digest.lstrip("0"):
        bad.append((path, int(count), len(ids)))
print(f"{len(rows)} files, {total_bytes / 1e6:.1f} MB, {tokens} tiktoken tokens: "
      f"{len(rows) - len(bad)} identical, {len(bad)} different")
for path, elle, tik in bad[:20]:
    print(f"  DIFFERENT {path}: elle {elle} tokens, tiktoken {tik}")
sys.exit(1 if bad else 0)
