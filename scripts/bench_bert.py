#!/usr/bin/env python3
"""`elle bench --model bert` beside the PyTorch BertForMaskedLM anchor, alternating, several rounds.

Run by hand (needs torch + transformers for the anchor, and a release build):
    OPENBLAS_CORETYPE=Haswell python3 scripts/bench_bert.py [--rounds 5] [--shape 6/384/6/16384/128/8]

Each round runs `elle bench --model bert --json` and then scripts/torch_bert_bench.py right after
it, on the same shape and thread count, so both see about the same load on a shared machine.
Prints one line per round (tokens/s of each and their ratio) and the range of each column; the
markdown row at the end is what docs/PERFORMANCE.md holds. OPENBLAS_CORETYPE is taken from the
environment as it is (set it in the command, never in the script).
"""
import argparse, json, os, re, subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def elle(shape, threads, steps):
    L, D, H, V, T, B = shape
    cmd = [os.path.join(ROOT, ".build", "release", "elle"), "bench", "--model", "bert", "--layers", str(L),
           "--width", str(D), "--heads", str(H), "--vocab", str(V), "--seq", str(T), "--batch", str(B),
           "--threads", str(threads), "--steps", str(steps), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def torch(python, shape, threads, steps):
    cmd = [python, os.path.join(ROOT, "scripts", "torch_bert_bench.py")] + [str(x) for x in shape + (threads, steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"step=([\d.]+)ms tok/s=(\d+) GFLOP/s=([\d.]+)", out)
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--torch", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv", "bin", "python"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--shape", default="6/384/6/16384/128/8", help="L/D/H/V/T/B")
    args = p.parse_args()
    shape = tuple(int(x) for x in args.shape.split("/"))
    rows, kernel = [], None
    for k in range(args.rounds):
        e = elle(shape, args.threads, args.steps)
        kernel = e["blas_kernel"]
        t_ms, t_tok, t_gf = torch(args.torch, shape, args.threads, args.steps)
        rows.append((e["step_ms"], e["tokens_per_second"], e["gflops"], t_ms, t_tok, t_gf, e["tokens_per_second"] / t_tok))
        print(f"round {k + 1}: elle {e['step_ms']:.0f} ms, {e['tokens_per_second']:.0f} tok/s, {e['gflops']:.1f} GFLOP/s "
              f"(gemm {e['gemm_ms']:.0f} / attention {e['attention_ms']:.0f} / optimizer {e['optimizer_ms']:.0f} / elementwise "
              f"{e['elementwise_ms']:.0f} ms, {e['blas_kernel']}) | torch {t_ms:.0f} ms, {t_tok:.0f} tok/s, {t_gf:.1f} GFLOP/s "
              f"| ratio {e['tokens_per_second'] / t_tok:.2f}", flush=True)
    def span(i, fmt):
        values = [r[i] for r in rows]
        return f"{fmt.format(min(values))}-{fmt.format(max(values))}"
    print(f"| {args.shape} | {args.threads} | {kernel} | {span(0, '{:.0f}')} | {span(1, '{:.0f}')} "
          f"| {span(2, '{:.1f}')} | {span(3, '{:.0f}')} | {span(4, '{:.0f}')} | {span(5, '{:.1f}')} | **{span(6, '{:.2f}')}** |")


if __name__ == "__main__":
    main()
