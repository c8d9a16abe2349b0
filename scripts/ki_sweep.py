#!/usr/bin/env python3
"""Tables and plots of the knowledge-inheritance sweep (scripts/ki_sweep.sh; issue 26).

Usage: ki_sweep.py [OUT] [--plots DIR]     (default OUT runs/ki-sweep, DIR docs/results)

For every model and domain (OUT/MODEL-DOMAIN/): the teachers' final validation perplexity, then
one row per cell: final perplexity (mean over seeds, min-max), the ratio to the from-scratch run
of the same seed (paired: same initialization and data order), and the FLOPs-to-target saving:
1 - F / F_scratch, where F is the student + teacher-forward FLOPs at which the KI run first
reaches the scratch run's final perplexity (linear in log perplexity between evaluations) and
F_scratch the scratch run's FLOPs. "-" when a seed never reaches it. Verdict, paired by seed:
"better" when every seed ends more than 1% below its scratch run, "worse" when every seed ends
more than 1% above it, "same" when every seed is within 1%, "mixed" otherwise; the summary lists every cell with any seed more than
1% above scratch (the bar the defaults must clear).
"""
import argparse
import glob
import json
import math
import os
import re
from collections import defaultdict


def evals(folder):
    """[(step, flops incl. teacher, perplexity)] of a run, plus its distillation_end step."""
    by_step, end = {}, None
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("event") == "distillation_end":
                end = r["step"]
            if "valid_perplexity" in r:
                by_step[r["step"]] = (r["step"], r.get("total_flops", r["flops"]), r["valid_perplexity"])
    return [by_step[s] for s in sorted(by_step)], end


def flops_to(curve, target):
    """FLOPs at which `curve` first reaches perplexity `target` (None if never)."""
    prev = None
    for step, flops, ppl in curve:
        if ppl <= target:
            if prev is None:
                return flops
            f0, p0 = prev
            x = (math.log(p0) - math.log(target)) / (math.log(p0) - math.log(ppl))
            return f0 + x * (flops - f0)
        prev = (flops, ppl)
    return None


def mean(xs):
    return sum(xs) / len(xs)


def spread(xs, fmt):
    return fmt.format(mean(xs)) + (f" ({fmt.format(min(xs))}-{fmt.format(max(xs))})" if len(xs) > 1 else "")


def summarize(root):
    """{group: {"teachers": {...}, "cells": {cell: {seed: (curve, end)}}}} from OUT/MODEL-DOMAIN."""
    groups = {}
    for group in sorted(glob.glob(os.path.join(root, "*-*/"))):
        name = os.path.basename(group.rstrip("/"))
        if not re.match(r"(gpt|bert)-", name):
            continue
        g = {"teachers": {}, "cells": defaultdict(dict)}
        for run in sorted(glob.glob(os.path.join(group, "*"))):
            if not os.path.exists(os.path.join(run, "DONE")):
                continue
            base = os.path.basename(run)
            curve, end = evals(run)
            if re.fullmatch(r"teacher-(worse|equal|better)", base):
                g["teachers"][base[len("teacher-"):]] = curve[-1]
            else:
                m = re.match(r"(.+)-s(\d+)$", base)
                g["cells"][m.group(1)][int(m.group(2))] = (curve, end)
        groups[name] = g
    return groups


CELL_ORDER = ["scratch", "base", "tau1", "tau4", "constant", "switch", "kd-quarter", "kd-half",
              "teacher-worse", "teacher-equal", "end-rule-worse", "end-rule-equal", "end-rule-better",
              "defaults-worse", "defaults-equal", "defaults-better"]
CELL_TEXT = {
    "scratch": ("-", "from scratch"),
    "base": ("better", "tau 2, linear, T_kd = run (the paper's)"),
    "tau1": ("better", "**tau 1**, linear, T_kd = run"),
    "tau4": ("better", "**tau 4**, linear, T_kd = run"),
    "constant": ("better", "tau 2, **constant a = 0.5**, T_kd = run"),
    "switch": ("better", "tau 2, **switch**, T_kd = run"),
    "kd-quarter": ("better", "tau 2, linear, **T_kd = 1/4**"),
    "kd-half": ("better", "tau 2, linear, **T_kd = 1/2**"),
    "teacher-worse": ("**worse**", "tau 2, linear, T_kd = run"),
    "teacher-equal": ("**equal**", "tau 2, linear, T_kd = run"),
    "end-rule-worse": ("worse", "tau 1, linear, T_kd = run, **ends when passed**"),
    "end-rule-equal": ("equal", "tau 1, linear, T_kd = run, **ends when passed**"),
    "end-rule-better": ("better", "tau 1, linear, T_kd = run, **ends when passed**"),
    "defaults-worse": ("worse", "**the defaults**"),
    "defaults-equal": ("equal", "**the defaults**"),
    "defaults-better": ("better", "**the defaults**"),
}


def table(name, g):
    scratch = g["cells"].get("scratch", {})
    lines = [f"#### {name}", ""]
    final = {s: c[-1][2] for s, (c, _) in scratch.items()}
    if final:
        lines.append(f"Student 4/256 from scratch, final validation perplexity {spread(list(final.values()), '{:.1f}')} "
                     f"over seeds {sorted(final)}. Teachers (2/128): "
                     + ", ".join(f"{k} {v[2]:.1f} ({v[0]} updates)" for k, v in sorted(g["teachers"].items(), key=lambda kv: -kv[1][2]))
                     + ".")
    lines += ["", "| cell | teacher | setting | final PPL | vs scratch (same seed) | FLOPs-to-target saving | KI ended by the rule at | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    verdicts = {}
    for cell in sorted(g["cells"], key=lambda c: CELL_ORDER.index(c) if c in CELL_ORDER else 99):
        runs = g["cells"][cell]
        teacher, setting = CELL_TEXT.get(cell, ("?", cell))
        ppl = [c[-1][2] for c, _ in runs.values()]
        paired = [runs[s][0][-1][2] / final[s] for s in runs if s in final]
        savings = []
        for s in runs:
            if s in final and cell != "scratch":
                f = flops_to(runs[s][0], final[s])
                savings.append(None if f is None else 1 - f / scratch[s][0][-1][1])
        ends = [runs[s][1] for s in sorted(runs)]
        verdict = ""
        if cell != "scratch" and paired:
            verdict = ("**worse**" if all(r > 1.01 for r in paired) else "better" if all(r < 0.99 for r in paired)
                       else "same" if all(abs(r - 1) <= 0.01 for r in paired) else "mixed")
            verdicts[cell] = (verdict, max(paired))
        saving = "-" if cell == "scratch" else ", ".join("-" if x is None else f"{100 * x:+.0f}%" for x in savings)
        lines.append(f"| {cell} | {teacher} | {setting} | {spread(ppl, '{:.1f}')} | "
                     f"{'-' if cell == 'scratch' else spread(paired, '{:.3f}')} | {saving} | "
                     f"{', '.join('-' if e is None else str(e) for e in ends) if any(e is not None for e in ends) else '-'} | {verdict} |")
    return lines, verdicts


def plot(groups, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [n for n in groups if groups[n]["cells"].get("scratch")]
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        g = groups[name]
        final = {s: c[-1][2] for s, (c, _) in g["cells"]["scratch"].items()}
        cells = [c for c in CELL_ORDER if c in g["cells"] and c != "scratch"]
        for y, cell in enumerate(cells):
            runs = g["cells"][cell]
            ratios = [runs[s][0][-1][2] / final[s] for s in runs if s in final]
            colour = "tab:green" if cell.startswith("defaults") else "tab:blue"
            ax.scatter(ratios, [y] * len(ratios), color=colour, s=22, zorder=3)
        ax.axvline(1.0, color="black", lw=1)
        ax.set_yticks(range(len(cells)))
        ax.set_yticklabels(cells, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("final perplexity / scratch (same seed)")
        ax.set_title(name, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("KI sweep: every seed; left of the line = better than training from scratch", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_curves(groups, name, path, seed=1):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    g = groups[name]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for cell in ["scratch", "base", "tau1", "teacher-worse", "end-rule-worse", "defaults-better", "defaults-worse"]:
        if seed in g["cells"].get(cell, {}):
            curve, end = g["cells"][cell][seed]
            line, = ax.plot([f for _, f, _ in curve], [p for _, _, p in curve], label=cell,
                            lw=2 if cell in ("scratch", "defaults-better") else 1)
            if end is not None:
                at = next(c for c in curve if c[0] == end)
                ax.scatter([at[1]], [at[2]], color=line.get_color(), marker="x", zorder=3)
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs (student + teacher forward)")
    ax.set_ylabel("validation perplexity")
    ax.set_title(f"{name}, seed {seed} (x: the rule ended distillation)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def stream_table(root):
    """AP, AP+ and FLOPs of the KI-on-the-stream runs (root/METHOD-sSEED, scripts/elle_experiment.sh ki)."""
    rows = []
    for run in sorted(glob.glob(os.path.join(root, "*-s[0-9]"))):
        report = os.path.join(run, "report.md")
        if not os.path.exists(report):
            continue
        m = re.search(r"Final: AP ([0-9.]+), AP\+ ([0-9.]+); training FLOPs ([0-9.]+e\+[0-9]+)", open(report).read())
        teacher, ends = defaultdict(float), []
        with open(os.path.join(run, "metrics.jsonl")) as f:
            for line in f:
                r = json.loads(line)
                if "stage_teacher_flops" in r:
                    teacher[r["stage"]] = max(teacher[r["stage"]], r["stage_teacher_flops"])
                if r.get("event") == "distillation_end":
                    ends.append(f"{r['stage']}:{r['update']}")
        student, t = float(m.group(3)), sum(teacher.values())
        wall = open(os.path.join(run, "wall-seconds.txt")).read().split()[-1] if os.path.exists(os.path.join(run, "wall-seconds.txt")) else "?"
        rows.append(f"| {os.path.basename(run)} | {m.group(1)} | {m.group(2)} | {student:.3e} | {t:.3e} | {student + t:.3e} | "
                    f"{', '.join(ends) if ends else '-'} | {wall} |")
    by_method = defaultdict(list)
    for row in rows:
        cells = row.split(" | ")
        by_method[re.sub(r"-s\d+$", "", cells[0][2:])].append((float(cells[1]), float(cells[2]), float(cells[5])))
    means = [f"| **{m}** (mean of {len(v)}) | {mean([a for a, _, _ in v]):.2f} | {mean([b for _, b, _ in v]):.2f} | | | "
             f"{mean([f for _, _, f in v]):.3e} | | |" for m, v in by_method.items()]
    return ["| run | AP | AP+ | student FLOPs | teacher FLOPs | total | rule ended KI at (stage:update) | wall (s) |",
            "|---|---|---|---|---|---|---|---|", *rows, *means]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", nargs="?", default="runs/ki-sweep")
    p.add_argument("--plots", default="docs/results")
    p.add_argument("--stream", help="also tabulate the KI-on-the-stream runs in this folder (runs/experiment/ki)")
    args = p.parse_args()
    if args.stream:
        print("\n".join(stream_table(args.stream)) + "\n")
    groups = summarize(args.out)
    print(f"<!-- written by scripts/ki_sweep.py from {args.out} -->\n")
    worse = []
    for name, g in groups.items():
        lines, verdicts = table(name, g)
        print("\n".join(lines) + "\n")
        worse += [f"{name}/{c} ({100 * (m - 1):+.1f}%)" for c, (v, m) in verdicts.items() if m > 1.01]
    print("Cells with a seed more than 1% above its scratch run (worst seed): " + (", ".join(worse) if worse else "none") + ".")
    runs = os.path.join(args.out, "runs.tsv")
    if os.path.exists(runs):
        rows = [l.split("\t") for l in open(runs).read().splitlines()[1:] if l]
        seconds = sum(int(r[1]) for r in rows)
        loads = [float(r[2]) for r in rows]
        print(f"\n{len(rows)} runs, {seconds / 60:.0f} min of machine time, load average 1 min "
              f"{min(loads):.2f}-{max(loads):.2f} (median {sorted(loads)[len(loads) // 2]:.2f}) at their ends.")
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        plot(groups, os.path.join(args.plots, "ki-sweep.png"))
        if "gpt-literature" in groups:
            plot_curves(groups, "gpt-literature", os.path.join(args.plots, "ki-sweep-curves.png"))


if __name__ == "__main__":
    main()
