#!/usr/bin/env python3
"""Tables and plots of the growth-policy stream runs (issue 22; scripts/elle_experiment.sh policy-x4 policy-x16).

    .venv/bin/python scripts/policy_stream_report.py [BUDGET...]     # default: policy-x4 policy-x16

For every budget (runs/experiment/BUDGET/METHOD-sSEED): every run's final AP and AP+, training
FLOPs and growths (stage, update, size); then per method the mean over seeds. Writes
docs/results/growth-policy-stream.md and docs/results/growth-policy-BUDGET.png (validation
perplexity of the domain being trained against training FLOPs, seed 1, growths marked).
"""
import glob
import json
import os
import re
import sys
from collections import defaultdict

from plot_elle_experiment import read  # noqa: E402  (the same record reader: last of each record after a resume)

ROOT = "runs/experiment"
OUT = "docs/results"
ORDER = ["replay-prompts", "elle-fp", "elle-fp-late", "stack", "policy", "policy-ramp", "scratch-final"]


def load(budget):
    runs = {}
    for folder in sorted(glob.glob(os.path.join(ROOT, budget, "*-s*"))):
        m = re.match(r"(.+)-s(\d+)$", os.path.basename(folder))
        path = os.path.join(folder, "metrics.jsonl")
        if not m or not os.path.exists(path):
            continue
        records = read(path)
        ends = [r for r in records if r.get("event") == "stage_end"]
        runs[(m.group(1), int(m.group(2)))] = dict(records=records, ends=ends,
                                                     growths=[r for r in records if r.get("event") == "growth"])
    return runs


def size(config):
    m = re.search(r"L(\d+) D(\d+)", config)
    return f"{m.group(1)}/{m.group(2)}" if m else config


def table(budget, runs, stages):
    lines = [f"### {budget}", "",
             "| method | seed | AP | AP+ | training FLOPs | growths (stage:update -> size) |", "|---|---|---|---|---|---|"]
    summary = defaultdict(list)
    for method in sorted({m for m, _ in runs}, key=lambda m: ORDER.index(m) if m in ORDER else 99):
        for seed in sorted(s for m, s in runs if m == method):
            run = runs[(method, seed)]
            if len(run["ends"]) < stages:
                lines.append(f"| {method} | {seed} | (running: {len(run['ends'])} of {stages} stages) | | | |")
                continue
            end = run["ends"][-1]
            growths = ", ".join(f"{g['stage']}:{g.get('update', 0)} -> {size(g['config'])}" for g in run["growths"]) or "-"
            lines.append(f"| {method} | {seed} | {end['ap']:.2f} | {end['ap_plus']:.2f} | {end['flops']:.3e} | {growths} |")
            summary[method].append((end["ap"], end["ap_plus"]))
    lines += ["", "| method | mean AP | mean AP+ | seeds |", "|---|---|---|---|"]
    for method, values in sorted(summary.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 99):
        aps = [v[0] for v in values]
        lines.append(f"| {method} | {sum(aps) / len(aps):.2f} ({min(aps):.2f}-{max(aps):.2f}) | "
                     f"{sum(v[1] for v in values) / len(values):.2f} | {len(values)} |")
    return lines, summary


def plot(budget, runs):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no plot (scripts/setup.sh --python, then .venv/bin/python)")
        return
    fig, ax = plt.subplots(figsize=(9, 5))
    for method in ORDER:
        run = runs.get((method, 1))
        if not run:
            continue
        xs, ys = [], []
        for r in run["records"]:
            if r.get("event") == "eval" and r.get("phase") == "main" and r.get("perplexities"):
                xs.append(r["flops"])
                ys.append(r["perplexities"][r["stage"]])
        line, = ax.plot(xs, ys, label=method, linewidth=1.2)
        for g in run["growths"]:
            ax.axvline(g["flops"], color=line.get_color(), alpha=0.35, linestyle=":")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("validation perplexity of the domain in training")
    ax.set_title(f"{budget}: encyclopedic -> literature -> legal from 1/64 (seed 1; dotted: growths)")
    ax.legend(fontsize=8)
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"growth-{budget}.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print("plot:", path)


def main():
    budgets = sys.argv[1:] or ["policy-x4", "policy-x16"]
    out = ["<!-- written by scripts/policy_stream_report.py from runs/experiment/policy-*/*/metrics.jsonl -->", ""]
    for budget in budgets:
        runs = load(budget)
        if not runs:
            continue
        lines, _ = table(budget, runs, stages=3)
        out += lines + [""]
        plot(budget, runs)
    text = "\n".join(out) + "\n"
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "growth-policy-stream.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
