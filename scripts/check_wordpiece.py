"""Full-corpus check (run by hand; result in docs/INTEROP.md): elle's WordPiece encoding of every
file equals Hugging Face `tokenizers`' with the same tokenizer.json (a BERT one, e.g. bert-base-
uncased's; truncation and padding are turned off here). elle writes a token count and XXH64 per
file:

    .build/release/elle bench tokenizer --text corpora/text --tokenizer TOKENIZER.json --repeats 1 --hashes runs/elle-wordpiece.tsv
    .venv/bin/python scripts/check_wordpiece.py TOKENIZER.json runs/elle-wordpiece.tsv

Exits non-zero and names the files (and the first differing token) when any differ.
"""
import struct
import sys

import xxhash
from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
tok.no_truncation()
tok.no_padding()
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[2], encoding="utf-8") if line.strip()]
texts = [open(path, encoding="utf-8").read() for path, _, _ in rows]
bad, tokens = [], 0
for (path, count, digest), enc in zip(rows, tok.encode_batch(texts, add_special_tokens=False)):
    ids = enc.ids
    tokens += len(ids)
    mine = xxhash.xxh64(struct.pack(f"<{len(ids)}I", *ids)).hexdigest().lstrip("0") or "0"
    if len(ids) != int(count) or mine != digest.lstrip("0"):
        bad.append((path, int(count), len(ids)))
print(f"{len(rows)} files, {sum(len(t.encode()) for t in texts) / 1e6:.1f} MB, {tokens} tokens: "
      f"{len(rows) - len(bad)} identical, {len(bad)} different")
for path, elle, hf in bad[:20]:
    print(f"  DIFFERENT {path}: elle {elle} tokens, tokenizers {hf}")
sys.exit(1 if bad else 0)
