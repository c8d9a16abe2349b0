"""Reference encode throughput on the same text as `elle bench tokenizer` (run by hand, for
docs/PERFORMANCE.md): tiktoken's gpt2 and Hugging Face `tokenizers` (a tokenizer.json, e.g.
GPT-2's as written by elle, or a trained one from `elle bench tokenizer --save`).

    .venv/bin/python scripts/bench_tokenizers.py --text corpora/text --threads 1
    .venv/bin/python scripts/bench_tokenizers.py --text corpora/text --threads 2 --hf runs/gpt2-tokenizer.json

Thread counts: tiktoken's encode_ordinary_batch uses a thread pool of --threads; tokenizers'
encode_batch uses Rayon, limited by RAYON_NUM_THREADS (set here before it is imported).
Each file is one document, as in elle's bench; best of --repeats.
"""
import argparse, glob, json, os, sys, time

p = argparse.ArgumentParser()
p.add_argument("--text", default="data/sample")
p.add_argument("--threads", type=int, default=1)
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--hf", help="tokenizer.json for Hugging Face tokenizers (skip if absent)")
p.add_argument("--no-tiktoken", action="store_true")
args = p.parse_args()
os.environ["RAYON_NUM_THREADS"] = str(args.threads)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

files = [args.text] if os.path.isfile(args.text) else sorted(glob.glob(os.path.join(args.text, "**/*.txt"), recursive=True))
texts = [open(f, encoding="utf-8").read() for f in files]
total = sum(len(t.encode()) for t in texts)
result = {"text": args.text, "files": len(files), "bytes": total, "threads": args.threads}


def best(fn):
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


if not args.no_tiktoken:
    from tiktoken_gpt2 import gpt2_encoding
    enc = gpt2_encoding()
    if args.threads == 1:
        seconds, out = best(lambda: [enc.encode_ordinary(t) for t in texts])
    else:
        seconds, out = best(lambda: enc.encode_ordinary_batch(texts, num_threads=args.threads))
    result["tiktoken_mb_per_s"] = total / seconds / 1e6
    result["tiktoken_tokens"] = sum(len(o) for o in out)
if args.hf:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(args.hf)
    seconds, out = best(lambda: tok.encode_batch(texts, add_special_tokens=False))
    result["hf_tokenizers_mb_per_s"] = total / seconds / 1e6
    result["hf_tokenizers_tokens"] = sum(len(o.ids) for o in out)
print(json.dumps(result))
