#!/usr/bin/env python3
"""Plots and tables of the ELLE experiment (scripts/elle_experiment.sh) from each run's metrics.jsonl.

    .venv/bin/python scripts/plot_elle_experiment.py [BUDGET...]      # default: short long

Writes docs/results/elle-BUDGET-domains.png (perplexity of every domain over training FLOPs),
docs/results/NAME-ap-flops.png (AP after each stage against cumulative training FLOPs, every
budget), NAME-diagonal.png and NAME-tables.md (AP/AP+ per budget, perplexity matrices, growth
effects), which docs/RESULTS.md quotes. NAME is `elle` for the GPT budgets and `elle-bert` when
every budget given is a BERT one (bert-short, bert-long), so one family never overwrites the
other. The families `payoff` and `payoff-tiny` (two-domain runs at growing stage budgets) get
their own table and figure: docs/results/elle-FAMILY.{md,png}.
"""
import json
import math
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

ROOT = "runs/experiment"
OUT = "docs/results"
ORDER = ["naive", "replay", "replay-prompts", "grow-noreplay", "scratch-final", "elle-pub", "elle-fp"]


def read(path):
    """Metrics records; a resumed run repeats the records after its checkpoint, so keep the last of each."""
    records = {}
    with open(path) as f:
        for n, line in enumerate(f):
            r = json.loads(line)
            key = (r.get("event", "log"), r.get("stage"), r.get("phase"), r.get("update"))
            records[key] = (n, r)
    return [r for _, r in sorted(records.values(), key=lambda x: x[0])]


def methods(budget):
    folder = os.path.join(ROOT, budget)
    found = [m for m in os.listdir(folder) if os.path.exists(os.path.join(folder, m, "metrics.jsonl"))] if os.path.isdir(folder) else []
    return sorted(found, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))


def load(budget, method):
    folder = os.path.join(ROOT, budget, method)
    recs = read(os.path.join(folder, "metrics.jsonl"))
    ends = [r for r in recs if r.get("event") == "stage_end"]
    wall = None
    wp = os.path.join(folder, "wall-seconds.txt")
    if os.path.exists(wp):
        wall = sum(int(x) for x in open(wp).read().split())
    return dict(recs=recs, ends=ends, wall=wall, done=os.path.exists(os.path.join(folder, "report.md")))


def curve_points(run):
    """(flops, [perplexity per seen domain], kind) in run order: evaluations, growths, warmups, stage ends."""
    pts = []
    for r in run["recs"]:
        e = r.get("event")
        if e == "eval" or e == "stage_end" or e == "warmup_end":
            pts.append((r["flops"], r["perplexities"], e))
        elif e == "growth" and "flops" in r:
            pts.append((r["flops"], r["before"], "before_growth"))
            pts.append((r["flops"], r["after"], "after_growth"))
    return pts


def domains_of(run):
    return [r["domain"] for r in run["ends"]]


def plot_domains(budget, runs, domain_names):
    """One panel per domain (its perplexity from the stage it arrives), and one of AP over the seen domains."""
    cols = 3
    rows = (len(domain_names) + 1 + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), sharex=True)
    axes = axes.ravel()
    for m, run in runs.items():
        pts = curve_points(run)
        color = None
        for d in range(len(domain_names)):
            xs = [p[0] for p in pts if len(p[1]) > d]
            ys = [p[1][d] for p in pts if len(p[1]) > d]
            if xs:
                color = axes[d].plot(xs, ys, label=m, lw=1.2, color=color)[0].get_color()
        axes[len(domain_names)].plot([p[0] for p in pts], [sum(p[1]) / len(p[1]) for p in pts], label=m, lw=1.2, color=color)
    for d, ax in enumerate(axes):
        if d > len(domain_names):
            ax.axis("off")
            continue
        ax.set_title(domain_names[d] if d < len(domain_names) else "mean over seen domains (AP)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        if d >= len(axes) - cols:
            ax.set_xlabel("cumulative training FLOPs")
        if d % cols == 0:
            ax.set_ylabel("validation perplexity")
    axes[len(domain_names)].legend(fontsize=7)
    fig.suptitle(f"ELLE experiment, {budget} budget: validation perplexity over training FLOPs\n"
                 "(points: evaluations, growths, warmup ends, stage ends; a vertical step at one FLOP count is a growth or FRW)")
    fig.tight_layout()
    path = os.path.join(OUT, f"elle-{budget}-domains.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_ap(all_runs, name):
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"short": "-o", "long": "--s", "bert-short": "-o", "bert-long": "--s"}
    colors = {}
    for budget, runs in all_runs.items():
        for m, run in runs.items():
            xs = [r["flops"] for r in run["ends"]]
            ys = [r["ap"] for r in run["ends"]]
            line = ax.plot(xs, ys, styles.get(budget, ":"), color=colors.get(m), ms=3, lw=1.2,
                           label=f"{m} ({budget})")[0]
            colors.setdefault(m, line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("cumulative training FLOPs (counted by elle)")
    ax.set_ylabel("AP after each stage (mean perplexity of seen domains)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("AP against training FLOPs; points are stage ends (equal FLOPs per stage across methods)")
    fig.tight_layout()
    path = os.path.join(OUT, f"{name}-ap-flops.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    # How well each method learns the new domain with the same FLOPs: P[i][i] per stage.
    fig, ax = plt.subplots(figsize=(8, 5))
    for budget, runs in all_runs.items():
        for m, run in runs.items():
            ys = [r["perplexities"][r["stage"]] for r in run["ends"]]
            ax.plot(range(len(ys)), ys, styles.get(budget, ":"), color=colors.get(m), ms=3, lw=1.2, label=f"{m} ({budget})")
    names = max((domains_of(r) for runs in all_runs.values() for r in runs.values()), key=len)
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set_ylabel("perplexity of the domain just learned, P[i][i]")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Each new domain at the end of its stage (same FLOPs per stage for every method)")
    fig.tight_layout()
    print(path)
    path = os.path.join(OUT, f"{name}-diagonal.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fmt(x):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def tables(budget, runs, domain_names):
    out = [f"### Budget `{budget}`", ""]
    out += ["| method | AP | AP+ | training FLOPs | wall time (s) |", "|---|---|---|---|---|"]
    for m, run in runs.items():
        if not run["ends"]:
            continue
        last = run["ends"][-1]
        status = "" if run["done"] else f" (stopped after stage {last['stage']})"
        out.append(f"| {m}{status} | {fmt(last['ap'])} | {fmt(last['ap_plus'])} | {last['flops']:.3e} | {run['wall'] or '-'} |")
    out.append("")
    out.append("Perplexity matrices (row: after training on that stage's domain; column: domain evaluated).")
    out.append("")
    for m, run in runs.items():
        if not run["ends"]:
            continue
        out += [f"`{m}`:", "", "| after \\ on | " + " | ".join(domain_names) + " |",
                "|---" * (len(domain_names) + 1) + "|"]
        for r in run["ends"]:
            cells = [fmt(p) for p in r["perplexities"]] + [""] * (len(domain_names) - len(r["perplexities"]))
            out.append(f"| {r['domain']} | " + " | ".join(cells) + " |")
        out.append("")
    growth = [(m, run) for m, run in runs.items() if any(r.get("event") == "growth" for r in run["recs"])]
    if growth:
        out += ["Growth effects: perplexity of every seen domain right before each growth, right after it, "
                "after the warmup (FRW; `-` when none), and at the end of the stage that follows.", "",
                "| method | stage | grown to | domain | before | after growth | after FRW | stage end |", "|---|---|---|---|---|---|---|---|"]
        for m, run in growth:
            warm = {r["stage"]: r["perplexities"] for r in run["recs"] if r.get("event") == "warmup_end"}
            ends = {r["stage"]: r["perplexities"] for r in run["ends"]}
            for r in run["recs"]:
                if r.get("event") != "growth":
                    continue
                s = r["stage"]
                shape = r["config"].split(" dropout")[0]
                for k, name in enumerate(domain_names[: len(r["before"])]):
                    w = warm.get(s, [None] * 9)[k]
                    e = ends.get(s, [None] * 9)[k]
                    out.append(f"| {m} | {s} | {shape} | {name} | {fmt(r['before'][k])} | {fmt(r['after'][k])} | {fmt(w)} | {fmt(e)} |")
        out.append("")
    return out


def payoff(folder="payoff"):
    """Stage 2 of the two-domain runs: each shape's end-of-stream perplexities per stage budget."""
    runs = {}
    for m in methods(folder):
        shape, factor = m.rsplit("-x", 1)
        run = load(folder, m)
        if len(run["ends"]) == 2:
            runs.setdefault(shape, {})[int(factor)] = run
    if not runs:
        return
    lines = [f"<!-- written by scripts/plot_elle_experiment.py from runs/experiment/{folder}/*/metrics.jsonl -->", "",
             "| stage-2 budget (x long stage) | run | stage-2 FLOPs | literature | encyclopedic (new) | AP | AP+ |",
             "|---|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for shape, by_factor in sorted(runs.items()):
        xs, new, ap = [], [], []
        for factor, run in sorted(by_factor.items()):
            first, last = run["ends"]
            stage_flops = last["flops"] - first["flops"]
            lit, enc = last["perplexities"]
            lines.append(f"| {factor} | {shape} | {stage_flops:.3e} | {fmt(lit)} | {fmt(enc)} | {fmt(last['ap'])} | {fmt(last['ap_plus'])} |")
            xs.append(stage_flops); new.append(enc); ap.append(last["ap"])
        axes[0].plot(xs, new, "-o", ms=4, label=shape)
        axes[1].plot(xs, ap, "-o", ms=4, label=shape)
    for ax, title in zip(axes, ["encyclopedic (the new domain) at the end", "AP (literature, encyclopedic) at the end"]):
        ax.set_xscale("log"); ax.set_yscale("log"); ax.grid(alpha=0.3, which="both"); ax.legend(fontsize=8)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("FLOPs of the second stage (equal for every run at one budget)")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("validation perplexity")
    fig.suptitle(f"Where growth pays off ({folder}): the small model kept, or grown before the second domain, at equal FLOPs")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, f"elle-{folder}.png"), dpi=100)
    plt.close(fig)
    with open(os.path.join(OUT, f"elle-{folder}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(os.path.join(OUT, f"elle-{folder}.png"))


def main():
    budgets = sys.argv[1:] or ["short", "long"]
    os.makedirs(OUT, exist_ok=True)
    for family in [b for b in budgets if b.startswith("payoff")]:
        budgets.remove(family)
        payoff(family)
    if not budgets:
        return
    name = "elle-bert" if all(b.startswith("bert-") for b in budgets) else "elle"
    all_runs, lines = {}, ["<!-- written by scripts/plot_elle_experiment.py from runs/experiment/*/*/metrics.jsonl -->", ""]
    for budget in budgets:
        runs = {m: load(budget, m) for m in methods(budget)}
        runs = {m: r for m, r in runs.items() if r["ends"]}
        if not runs:
            continue
        all_runs[budget] = runs
        names = max((domains_of(r) for r in runs.values()), key=len)
        print(plot_domains(budget, runs, names))
        lines += tables(budget, runs, names)
    if all_runs:
        print(plot_ap(all_runs, name))
    with open(os.path.join(OUT, f"{name}-tables.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(os.path.join(OUT, f"{name}-tables.md"))


if __name__ == "__main__":
    main()
