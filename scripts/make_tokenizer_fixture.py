"""Writes Tests/Fixtures/gpt2-tiktoken.json: tiktoken `gpt2` encodings (encode_ordinary) of
Tests/Fixtures/bpe-edge-cases.txt (whole and line by line) and of excerpts of the bundled sample
(data/sample: public domain and CC-BY text only). elle's BPE with GPT-2's files must reproduce
every one exactly (Tests/CorpusTests/BPETests.swift).

    scripts/fetch-gpt2.sh && .venv/bin/python scripts/make_tokenizer_fixture.py
"""
import glob, json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiktoken_gpt2 import ROOT, gpt2_encoding

EXCERPT = 6000  # characters per sample file

enc = gpt2_encoding()
cases = []
edge = open(os.path.join(ROOT, "Tests/Fixtures/bpe-edge-cases.txt"), encoding="utf-8", newline="").read()
cases.append(("edge-cases", edge))
for k, line in enumerate(edge.split("\n")):
    cases.append((f"edge-cases:line{k + 1}", line))
def spread(paths, k=4):
    """At most k files, evenly spaced in sorted order."""
    paths = sorted(paths)
    return paths if len(paths) <= k else [paths[i * len(paths) // k] for i in range(k)]


samples = [p for d in sorted(glob.glob(os.path.join(ROOT, "data/sample/*/"))) for p in spread(glob.glob(d + "*.txt"))]
for path in samples:
    text = open(path, encoding="utf-8").read()
    cut = text.rfind("\n", 0, EXCERPT)
    name = os.path.relpath(path, ROOT)
    cases.append((name, text[: cut + 1 if cut > 0 else EXCERPT]))
    # A second excerpt from the middle, cut mid-line (pieces at the edges must still match).
    middle = len(text) // 2
    cases.append((name + ":middle", text[middle : middle + EXCERPT // 3]))
fixture = {
    "source": "tiktoken " + __import__("tiktoken").__version__ + " gpt2 encode_ordinary; text: Tests/Fixtures/bpe-edge-cases.txt and data/sample (see data/sample/NOTICE.md)",
    "cases": [{"name": n, "text": t, "tokens": enc.encode_ordinary(t)} for n, t in cases],
}
out = os.path.join(ROOT, "Tests/Fixtures/gpt2-tiktoken.json")
with open(out, "w", encoding="utf-8") as f:
    json.dump(fixture, f, ensure_ascii=False, separators=(",", ":"))
print(f"{out}: {len(cases)} cases, {sum(len(c['tokens']) for c in fixture['cases'])} tokens")
