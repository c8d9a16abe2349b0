#!/usr/bin/env python3
"""elle bench beside the PyTorch anchor on the same shapes, one right after the other.

Run by hand on a quiet machine (needs torch + transformers for the anchor):
    python3 scripts/bench_gpt.py [--torch .venv/bin/python] [--threads 2] [--steps 5] [--rounds 3]

For each shape (L/D/H/V/T/B) it runs `elle bench --json` with OpenBLAS's default kernel (the
environment as it is), then with the AVX-512 kernel OpenBLAS picks for the host (OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset, in that command only), then ../shared/anchors/torch_gpt_bench.py, and
repeats that --rounds times (PyTorch's step time moves by up to 1.6x between identical
runs on a shared machine) and prints a markdown table of medians: tokens/s of each, their ratio, elle's GFLOP/s as a share of the SGEMM
rate elle measured in the same run at the step's shapes, the phase split and peak memory.
"""
import argparse, json, os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHOR = os.path.join(ROOT, "..", "shared", "anchors", "torch_gpt_bench.py")
SHAPES = [(4, 256, 4, 8192, 128, 8), (6, 384, 6, 16384, 128, 8), (12, 768, 12, 16384, 128, 4)]


def elle(shape, threads, steps, avx512):
    L, D, H, V, T, B = shape
    env = dict(os.environ)
    if avx512:
        # As the issue says: unset both, so OpenBLAS picks the host's own kernel (SkylakeX on
        # the Intel hosts, Cooperlake on the AMD EPYC one); the table names the kernel that ran.
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    cmd = [os.path.join(ROOT, ".build", "release", "elle"), "bench", "--layers", str(L), "--width", str(D),
           "--heads", str(H), "--vocab", str(V), "--seq", str(T), "--batch", str(B),
           "--threads", str(threads), "--steps", str(steps), "--json"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    if avx512 and r["blas_kernel"] in ("Prescott", "Core2", "Nehalem"):
        # OpenBLAS did not recognize the CPU (new Xeons under some hypervisors): name the kernel.
        env["OPENBLAS_CORETYPE"] = "SkylakeX"
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
    return r


def torch(python, shape, threads, steps):
    L, D, H, V, T, B = shape
    cmd = [python, ANCHOR] + [str(x) for x in (L, D, H, V, T, B, threads, steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"tok/s=(\d+).*GFLOP/s=([\d.]+)", out)
    return float(m.group(1)), float(m.group(2)), out.strip()


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--torch", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv", "bin", "python"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per shape; the table gives medians")
    p.add_argument("--shapes", default="all", help="comma-separated indexes into the shape list")
    args = p.parse_args()
    shapes = SHAPES if args.shapes == "all" else [SHAPES[int(i)] for i in args.shapes.split(",")]
    table = []
    for shape in shapes:
        # One round = elle (default kernel), elle (AVX-512), torch, back to back; rounds alternate
        # so a load change on the shared machine hits both sides.
        rounds = {"default": [], "AVX-512": []}
        for k in range(args.rounds):
            runs = [("default", elle(shape, args.threads, args.steps, False)),
                    ("AVX-512", elle(shape, args.threads, args.steps, True))]
            ttok, tgf, tline = torch(args.torch, shape, args.threads, args.steps)
            for kernel, r in runs:
                rounds[kernel].append((r, ttok))
            print(f"{'/'.join(map(str, shape))} round {k + 1}: elle {runs[0][1]['tokens_per_second']:.0f} "
                  f"({runs[0][1]['blas_kernel']}) / {runs[1][1]['tokens_per_second']:.0f} ({runs[1][1]['blas_kernel']}) "
                  f"tok/s, {tline}", file=sys.stderr, flush=True)
        for kernel, rs in rounds.items():
            ratios = [r["tokens_per_second"] / t for r, t in rs]
            med = lambda key: median([r[key] for r, _ in rs])
            phases = "/".join(f"{med(k):.0f}" for k in ("gemm_ms", "attention_ms", "optimizer_ms", "elementwise_ms"))
            table.append(f"| {'/'.join(map(str, shape))} | {kernel} ({rs[0][0]['blas_kernel']}) | {med('tokens_per_second'):.0f} "
                         f"| {median([t for _, t in rs]):.0f} | **{median(ratios):.2f}** ({min(ratios):.2f}-{max(ratios):.2f}) "
                         f"| {med('gflops'):.1f} | {med('sgemm_step_shapes_gflops'):.1f} | {100 * med('share_of_sgemm'):.0f}% "
                         f"| {phases} | {med('peak_rss_mb'):.0f} / {rs[0][0]['model_state_mb']:.0f} |")
    print(f"Medians over {args.rounds} alternating round(s); ratio range in brackets.")
    print("| shape L/D/H/V/T/B | kernel | elle tok/s | torch tok/s | ratio | elle GFLOP/s | SGEMM at step shapes | share | phases gemm/attn/optim/elementwise ms | peak RSS / state MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
