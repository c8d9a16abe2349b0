#!/usr/bin/env python3
"""Training steps of elle beside the PyTorch anchors, alternating, several rounds: the engine of
scripts/bench_gpt.py and scripts/bench_bert.py (run those).

Each round runs every entry of --runs once on each shape (in the opposite order every other round,
so a load change on a shared machine hits all sides alike):
  elle-fp32, elle-bf16   `elle bench --precision P --json` (the environment as it is)
  before-fp32            the same with an older elle binary (--before PATH; it has no --precision)
  torch-fp32, torch-bf16 the anchor with ANCHOR_MODE=fp32 / bf16 (torch.autocast("cpu", bfloat16))
and prints a markdown table of medians with ranges: tokens/s, each elle run's ratio to the torch run
of the same precision (per round, then median), elle's GFLOP/s, the GEMM rate elle measured at the
step's own shapes in the same process, the GEMM phase's share of that rate, the step against the
bound of that run's phase table, the phases and the memory. The load average is recorded per round.
"""
import argparse, json, os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# GPT's anchor is the shared one (--anchors); BERT's is the repository's copy, which masks as elle's bench does.
ANCHORS = {"gpt": lambda shared: os.path.join(shared, "torch_gpt_bench.py"),
           "bert": lambda shared: os.path.join(ROOT, "scripts", "torch_bert_bench.py")}
SHAPES = {"gpt": ["6/384/6/16384/128/8", "12/768/12/16384/128/4", "4/256/4/8192/128/8"],
          "bert": ["6/384/6/16384/128/8"]}
DEFAULT_SHAPES = {"gpt": "0,1", "bert": "0"}


def run_elle(binary, model, shape, threads, steps, precision):
    L, D, H, V, T, B = shape
    cmd = [binary, "bench", "--model", model, "--layers", str(L), "--width", str(D), "--heads", str(H),
           "--vocab", str(V), "--seq", str(T), "--batch", str(B), "--threads", str(threads), "--steps", str(steps), "--json"]
    if precision:
        cmd += ["--precision", precision]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_torch(python, anchor, shape, threads, steps, mode):
    env = dict(os.environ, ANCHOR_MODE=mode)
    out = subprocess.run([python, anchor] + [str(x) for x in shape + (threads, steps)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return {"tokens_per_second": float(re.search(r"tok/s=(\d+)", out).group(1)), "line": out.strip()}


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def span(values, fmt="{:.0f}"):
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main(model):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--torch", default=os.path.join(ROOT, ".venv", "bin", "python"), help="python with torch + transformers")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--shapes", default=DEFAULT_SHAPES[model],
                   help=f"indexes into {SHAPES[model]} or L/D/H/V/T/B shapes, comma-separated")
    p.add_argument("--runs", default="elle-fp32,elle-bf16,torch-fp32,torch-bf16")
    p.add_argument("--before", help="an older elle binary: adds its fp32 run (before-fp32) to every round")
    p.add_argument("--elle", default=os.path.join(ROOT, ".build", "release", "elle"))
    p.add_argument("--anchors", default=os.path.join(ROOT, "..", "shared", "anchors"), help="the shared anchors folder")
    args = p.parse_args()
    runs = args.runs.split(",") + (["before-fp32"] if args.before else [])
    shapes = [tuple(int(x) for x in (SHAPES[model][int(s)] if s.isdigit() else s).split("/")) for s in args.shapes.split(",")]
    results = {}  # (shape, run) -> list of per-round results
    loads = []
    for k in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for shape in shapes:
            order = runs if k % 2 == 0 else list(reversed(runs))
            line = []
            for run in order:
                kind, precision = run.rsplit("-", 1)
                if kind == "torch":
                    r = run_torch(args.torch, ANCHORS[model](args.anchors), shape, args.threads, args.steps, precision)
                else:
                    binary = args.before if kind == "before" else args.elle
                    r = run_elle(binary, model, shape, args.threads, args.steps, None if kind == "before" else precision)
                results.setdefault((shape, run), []).append(r)
                line.append(f"{run} {r['tokens_per_second']:.0f}")
            print(f"{'/'.join(map(str, shape))} round {k + 1} (load {loads[-1]:.2f}): " + ", ".join(line) + " tok/s",
                  file=sys.stderr, flush=True)
    loads.append(os.getloadavg()[0])

    print(f"{model.upper()}, {args.threads} threads, {args.steps} steps per run, medians over {args.rounds} alternating "
          f"round(s), range in brackets; 1-minute load average {min(loads):.2f}-{max(loads):.2f}.")
    print("| shape L/D/H/V/T/B | run | tok/s | vs torch (same precision) | GFLOP/s | GEMM at step shapes | "
          "GEMM phase share | step / bound | phases gemm/attn/optim/conv/elementwise ms | peak RSS / activations MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for shape in shapes:
        name = "/".join(map(str, shape))
        for run in runs:
            rs = results[(shape, run)]
            tok = [r["tokens_per_second"] for r in rs]
            if run.startswith("torch"):
                print(f"| {name} | {run} | {span(tok)} | | | | | | | |")
                continue
            precision = run.rsplit("-", 1)[1]
            torch_runs = results.get((shape, f"torch-{precision}"))
            ratio = span([a / b["tokens_per_second"] for a, b in zip(tok, torch_runs)], "{:.2f}") if torch_runs else ""
            get = lambda key: [r[key] for r in rs if key in r]
            def cell(key, fmt="{:.0f}", scale=1):
                values = [v * scale for v in get(key)]
                return fmt.format(median(values)) if values else "-"
            rate_key = "gemm_step_shapes_gflops" if "gemm_step_shapes_gflops" in rs[0] else "sgemm_step_shapes_gflops"
            bound = [r["step_ms"] / r["bound_ms"] for r in rs if "bound_ms" in r]
            phases = "/".join(cell(f"{ph}_ms") for ph in ("gemm", "attention", "optimizer", "conversion", "elementwise"))
            print(f"| {name} | {run} | {span(tok)} | {ratio} | {cell('gflops', '{:.1f}')} | {cell(rate_key, '{:.1f}')} "
                  f"| {cell('gemm_phase_share', '{:.0f}%', 100)} | {span(bound, '{:.2f}') if bound else '-'} | {phases} "
                  f"| {cell('peak_rss_mb')} / {cell('activation_mb')} |")
        if args.before and "elle-fp32" in runs:
            after = [r["tokens_per_second"] for r in results[(shape, "elle-fp32")]]
            before = [r["tokens_per_second"] for r in results[(shape, "before-fp32")]]
            print(f"| {name} | fp32 after / before | {span([a / b for a, b in zip(after, before)], '{:.2f}')} | | | | | | | |")
    impl = sorted({i for rs in results.values() for r in rs for i in r.get("onednn_implementations", [])})
    features = next((r["cpu_features"] for rs in results.values() for r in rs if "cpu_features" in r), [])
    print(f"\noneDNN implementations: {', '.join(impl) or '-'}; CPU features: {' '.join(features) or '-'}")
